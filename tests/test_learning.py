"""M2SNet learns: the from-scratch recipe's network, trained for a few hundred steps on generated 2D and 3D toy
data (no shared data), segments held-out toy images far better than any constant output can.

A constant network predicts every pixel alike: its best Dice is the all-foreground one, 2p / (1 + p) for a
foreground fraction p (all-background gives 0). The test asks for that plus a clear margin, on images it never
saw. About a minute on 2 CPU cores.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fake_plans import ISOTROPIC, arch_kwargs
from fake_plans import plans_config as _config

from m2s_nnunet.cpu_bf16 import cpu_computes_bf16
from m2s_nnunet.network.from_plans import build_m2snet
from m2s_nnunet.settings import settings_for
from m2s_nnunet.training import M2SNetTrainer_scratch

MARGIN = 0.25
# four levels on a 16x24x16 patch: the deepest maps are 2 voxels thick, thinner than a 3x3x3 kernel
FOUR_STAGE_3D = {"patch_size": [16, 24, 16], "architecture": {"arch_kwargs": arch_kwargs(ISOTROPIC[:4])}}


def toy_batch(n: int, shape: tuple[int, ...], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with one or two bright blobs (the foreground) and a dim one (a distractor) in noise."""
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    images, masks = torch.zeros(n, 1, *shape), torch.zeros(n, *shape, dtype=torch.long)
    for i in range(n):
        lesions = 1 + int(torch.randint(0, 2, (1,), generator=generator))
        for kind in ["distractor"] + ["lesion"] * lesions:  # lesions drawn last: they cover the distractor
            centre = [float(torch.randint(3, s - 3, (1,), generator=generator)) for s in shape]
            radius = float(torch.empty(1).uniform_(min(shape) / 8, min(shape) / 4, generator=generator))
            inside = sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius**2
            images[i, 0][inside] = 1.0 if kind == "lesion" else 0.45
            if kind == "lesion":
                masks[i][inside] = 1
        images[i] += 0.35 * torch.randn(shape, generator=generator)
    return images, masks


def dice(prediction: torch.Tensor, mask: torch.Tensor) -> float:
    tp = (prediction * mask).sum().item()
    return 2 * tp / max(prediction.sum().item() + mask.sum().item(), 1)


def train_and_score(configuration: dict, steps: int, batch: int, seed: int = 0,
                    bf16: bool = False) -> tuple[float, float, float]:
    """(held-out Dice of the trained network, best Dice of a constant output, Dice of its bf16 prediction against
    its fp32 one) for the recipe on these plans, trained as a new run trains."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    settings = settings_for(M2SNetTrainer_scratch, configuration, 1)
    net = build_m2snet(settings, configuration, 1, 2, deep_supervision=True).train()
    net.cpu_bf16 = bf16
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-4)
    shape = tuple(configuration["patch_size"])
    for _ in range(steps):
        images, masks = toy_batch(batch, shape, generator)
        outputs = net(images)
        loss = 0.0
        for weight, logits in zip((1.0, 0.5, 0.25, 0.125), outputs):
            target = masks if logits.shape[2:] == masks.shape[1:] else F.interpolate(
                masks[:, None].float(), size=logits.shape[2:], mode="nearest")[:, 0].long()
            probability = logits.softmax(1)[:, 1]
            soft_dice = 1 - 2 * (probability * target).sum() / (probability.sum() + target.sum() + 1e-5)
            loss = loss + weight * (F.cross_entropy(logits, target) + soft_dice)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval().deep_supervision = False  # one output, as nnU-Net's predictor builds it
    images, masks = toy_batch(16, shape, torch.Generator().manual_seed(seed + 1000))  # never seen in training
    with torch.no_grad():
        net.cpu_bf16 = False
        prediction = net(images).argmax(1)
        net.cpu_bf16 = True  # bf16 prediction, emulated where the CPU lacks it: the numerics are the same
        prediction_bf16 = net(images).argmax(1)
    fraction = masks.float().mean().item()
    return dice(prediction, masks), 2 * fraction / (1 + fraction), dice(prediction_bf16, prediction)


def test_the_recipe_learns_2d_toy_segmentation():
    score, constant, bf16_agreement = train_and_score(_config("2d"), steps=200, batch=4)
    assert score >= constant + MARGIN, f"held-out Dice {score:.3f}, a constant output reaches {constant:.3f}"
    assert bf16_agreement >= 0.99, f"bf16 prediction against fp32: Dice {bf16_agreement:.4f}"


@pytest.mark.skipif(not cpu_computes_bf16(), reason="this CPU emulates bf16 (slow); cpu_bf16 is for CPUs that have it")
def test_the_recipe_learns_2d_toy_segmentation_in_bf16():
    score, constant, _ = train_and_score(_config("2d"), steps=200, batch=4, bf16=True)
    assert score >= constant + MARGIN, f"held-out Dice {score:.3f}, a constant output reaches {constant:.3f}"


def test_the_recipe_learns_3d_toy_segmentation():
    score, constant, bf16_agreement = train_and_score(FOUR_STAGE_3D, steps=200, batch=2)
    assert score >= constant + MARGIN, f"held-out Dice {score:.3f}, a constant output reaches {constant:.3f}"
    assert bf16_agreement >= 0.99, f"bf16 prediction against fp32: Dice {bf16_agreement:.4f}"


@pytest.mark.skipif(not cpu_computes_bf16(), reason="this CPU emulates bf16 (slow); cpu_bf16 is for CPUs that have it")
def test_the_recipe_learns_3d_toy_segmentation_in_bf16():
    """oneDNN's bf16 weight gradient on the 2-voxel-thick deepest maps sent every weight to NaN (Dice 0 on three
    seeds) until those convolutions ran in float32 (m2s_nnunet/network/thin_conv3d.py)."""
    score, constant, _ = train_and_score(FOUR_STAGE_3D, steps=200, batch=2, bf16=True)
    assert score >= constant + MARGIN, f"held-out Dice {score:.3f}, a constant output reaches {constant:.3f}"
