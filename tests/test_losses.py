"""LossNet and the structure loss."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from m2s_nnunet.envflags import EnvFlagError
from m2s_nnunet.losses import LossNet, structure_loss
from m2s_nnunet.losses.lossnet import VGG16_BLOCKS


@pytest.fixture(scope="module")
def lossnet():
    torch.manual_seed(0)
    return LossNet(pretrained=False)  # random VGG: enough to test the plumbing, not the paper's loss


def test_lossnet_is_zero_for_identical_maps(lossnet):
    x = torch.rand(2, 3, 40, 56)
    assert float(lossnet(x, x.clone())) == pytest.approx(0.0, abs=1e-12)


def test_lossnet_grows_with_the_difference(lossnet):
    torch.manual_seed(1)
    target = (torch.rand(1, 1, 64, 64) > 0.5).float()
    noise = torch.rand_like(target)
    values = [float(lossnet((1 - a) * target + a * noise, target)) for a in (0.0, 0.1, 0.3, 0.6, 1.0)]
    assert values[0] == pytest.approx(0.0, abs=1e-12)
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_lossnet_averages_channels(lossnet):
    torch.manual_seed(2)
    pred, target = torch.rand(2, 3, 48, 48), (torch.rand(2, 3, 48, 48) > 0.5).float()
    per_channel = [float(lossnet(pred[:, c : c + 1], target[:, c : c + 1])) for c in range(3)]
    assert float(lossnet(pred, target)) == pytest.approx(np.mean(per_channel), rel=1e-5)


def test_lossnet_has_no_trainable_parameters_and_stays_in_eval(lossnet):
    assert all(not p.requires_grad for p in lossnet.parameters())
    lossnet.train()
    assert not lossnet.training and not any(m.training for m in lossnet.modules())
    assert [len(b) for b in lossnet.blocks] == [b - a for a, b in VGG16_BLOCKS]


def test_gradient_flows_to_prediction_only(lossnet):
    pred = torch.rand(1, 1, 32, 32, requires_grad=True)
    target = torch.rand(1, 1, 32, 32, requires_grad=True)
    lossnet(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None
    assert all(p.grad is None for p in lossnet.parameters())


def test_lossnet_resizes_down_to_224_and_never_up(lossnet):
    assert lossnet.size == 224
    assert lossnet.input_size((352, 352)) == (224, 224)  # the paper's resize
    assert lossnet.input_size((128, 128)) == (128, 128)  # nnU-Net's small 2D patches: native size
    assert lossnet.input_size((100, 384)) == (100, 224)  # per side
    seen = []
    hook = lossnet.blocks[0].register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    lossnet(torch.rand(1, 2, 128, 96), torch.rand(1, 2, 128, 96))
    lossnet(torch.rand(1, 1, 352, 352), torch.rand(1, 1, 352, 352))
    hook.remove()
    assert seen == [(2, 3, 128, 96)] * 2 + [(1, 3, 224, 224)] * 2  # target, then prediction


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_native_size_lossnet_keeps_the_gradient_direction_of_the_224_upsampling(seed):
    """0.3.0 upsampled 128 px maps to 224 before VGG16; the native size must pull the prediction the same way.

    Random VGG16 weights (no ImageNet file offline), smooth predictions as a network gives them: the gradient
    w.r.t. the prediction agrees in direction (measured cosine 0.92-0.96) and both reduce |prediction - mask|.
    """
    import torch.nn.functional as F

    torch.manual_seed(seed)
    net = LossNet(pretrained=False)
    yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    mask = (((yy - 60) ** 2 + (xx - 70) ** 2) < 30**2).float()[None, None]
    pred = torch.sigmoid(F.avg_pool2d(torch.randn(1, 1, 128, 128) * 4 + (mask * 2 - 1) * 2, 9, 1, 4))
    native = pred.clone().requires_grad_()
    net(native, mask).backward()
    upsampled = pred.clone().requires_grad_()
    up = partial(F.interpolate, size=(224, 224), mode="bilinear", align_corners=False)
    net(up(upsampled), up(mask)).backward()
    g_native, g_up = native.grad.flatten(), upsampled.grad.flatten()
    assert float(F.cosine_similarity(g_native, g_up, dim=0)) > 0.85
    error = (pred - mask).flatten()
    assert float(F.cosine_similarity(g_native, error, dim=0)) > 0.5  # descending it moves towards the mask
    assert float(F.cosine_similarity(g_up, error, dim=0)) > 0.5


def test_cpu_bf16_lossnet_matches_fp32_and_is_opt_out(monkeypatch):
    import torch.nn.functional as F

    from m2s_nnunet.losses.lossnet import CPU_BF16_ENV, cpu_bf16_wanted

    torch.manual_seed(0)
    fp32 = LossNet(pretrained=False, cpu_bf16=False)
    bf16 = LossNet(pretrained=False, cpu_bf16=True)
    bf16.load_state_dict(fp32.state_dict())
    target = (torch.rand(2, 1, 64, 64) > 0.5).float()
    pred32 = torch.rand(2, 1, 64, 64, requires_grad=True)
    pred16 = pred32.detach().clone().requires_grad_()
    loss32, loss16 = fp32(pred32, target), bf16(pred16, target)
    assert loss16.dtype == torch.float32
    assert float(loss16.detach()) == pytest.approx(float(loss32.detach()), rel=0.03)
    loss32.backward()
    loss16.backward()
    assert float(F.cosine_similarity(pred32.grad.flatten(), pred16.grad.flatten(), dim=0)) > 0.99
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's autocast stays on inside LossNet
        assert torch.isfinite(fp32(pred32.detach().to(torch.bfloat16), target))
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert cpu_bf16_wanted() is False and LossNet(pretrained=False).cpu_bf16 is False
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert cpu_bf16_wanted() is True
    monkeypatch.setenv(CPU_BF16_ENV, "sometimes")
    with pytest.raises(EnvFlagError, match=f"{CPU_BF16_ENV}='sometimes' is neither yes nor no"):
        cpu_bf16_wanted()


def test_lossnet_shape_errors(lossnet):
    with pytest.raises(ValueError, match="equal shapes"):
        lossnet(torch.rand(1, 1, 32, 32), torch.rand(1, 2, 32, 32))


def _structure_loss_reference(logits: np.ndarray, mask: np.ndarray) -> float:
    """Direct re-computation with explicit loops over the 31x31 window (zero padding, divide by 961)."""
    from scipy.ndimage import uniform_filter

    total = 0.0
    for z, m in zip(logits[:, 0], mask[:, 0]):
        # uniform_filter with mode constant = zero-padded mean, as avg_pool2d(count_include_pad=True)
        w = 1 + 5 * np.abs(uniform_filter(m, size=31, mode="constant", cval=0.0) - m)
        p = 1 / (1 + np.exp(-z))
        bce = -(m * np.log(p) + (1 - m) * np.log(1 - p))
        wbce = (w * bce).sum() / w.sum()
        inter = (p * m * w).sum()
        union = ((p + m) * w).sum()
        total += wbce + 1 - (inter + 1) / (union - inter + 1)
    return total / len(logits)


def test_structure_loss_matches_direct_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (3, 1, 40, 36))
    mask = np.zeros((3, 1, 40, 36))
    mask[0, 0, 10:25, 8:20] = 1
    mask[1, 0, 30:, :] = 1
    expected = _structure_loss_reference(logits, mask)
    got = float(structure_loss(torch.from_numpy(logits), torch.from_numpy(mask)))
    assert got == pytest.approx(expected, rel=1e-9)


def test_structure_loss_hand_example():
    # constant mask: no boundary, w = 1 everywhere; logits 0 -> p = 0.5
    mask = torch.ones(1, 1, 40, 40)
    logits = torch.zeros(1, 1, 40, 40)
    # avgpool of a constant 1 with zero padding is < 1 near the border, so use the interior-only check:
    w = 1 + 5 * torch.abs(torch.nn.functional.avg_pool2d(mask, 31, 1, 15) - mask)
    bce = np.log(2.0)
    inter, union = float((0.5 * w).sum()), float((1.5 * w).sum())
    expected = bce + 1 - (inter + 1) / (union - inter + 1)
    assert float(structure_loss(logits, mask)) == pytest.approx(expected, rel=1e-6)


def test_structure_loss_on_two_softmax_logits_is_the_binary_loss_on_their_difference():
    from m2s_nnunet.losses import StructureLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 2, 40, 36, dtype=torch.float64)
    target = (torch.rand(2, 1, 40, 36) > 0.6).double()
    expected = structure_loss(logits[:, 1:2] - logits[:, 0:1], target)
    torch.testing.assert_close(StructureLoss()(logits, target), expected)


def test_structure_loss_ignores_ignore_label_pixels_and_works_in_3d():
    from m2s_nnunet.losses import StructureLoss

    torch.manual_seed(0)
    loss = StructureLoss(ignore_label=2)
    logits = torch.randn(1, 2, 8, 24, 24, requires_grad=True)
    target = torch.randint(0, 2, (1, 1, 8, 24, 24))
    target[..., :6] = 2
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and logits.grad[..., :6].abs().sum() == 0  # ignored pixels get no gradient
    changed = logits.detach().clone()
    changed[..., :6] += 5.0
    assert float(loss(changed, target)) == pytest.approx(value.item(), rel=1e-6)


def test_structure_loss_for_regions_and_refusal_of_multiclass_softmax():
    from m2s_nnunet.losses import StructureLoss

    logits = torch.randn(2, 3, 16, 16)
    regions = (torch.rand(2, 3, 16, 16) > 0.5).float()
    torch.testing.assert_close(StructureLoss(regions=True)(logits, regions), structure_loss(logits, regions))
    with pytest.raises(ValueError, match="binary"):
        StructureLoss()(logits, torch.zeros(2, 1, 16, 16))
