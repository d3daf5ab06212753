"""The one builder (``build_m2snet``): 3D M2SNet with nnU-Net's residual encoder from plans (shapes,
gradients, DS scales), the 2D plans encoder option, and patches smaller than the encoder's stride."""

from __future__ import annotations

import pytest
import torch
from fake_plans import ANISOTROPIC, ISOTROPIC, build
from fake_plans import arch_kwargs as _arch

from m2s_nnunet.network.from_plans import build_m2snet
from m2s_nnunet.network.plans_encoder import PlansEncoder
from m2s_nnunet.settings import M2SNetSettings, SettingsError, settings_for
from m2s_nnunet.training import M2SNetTrainer


@pytest.mark.parametrize("strides,patch,channels", [(ISOTROPIC, (32, 32, 32), 1), (ANISOTROPIC, (32, 64, 64), 3)])
def test_3d_shapes_and_gradients(strides, patch, channels):
    """What M2SNetTrainer builds for 3D plans (the plans encoder: no 3D timm encoders exist), trained one step."""
    torch.manual_seed(0)
    config = {"patch_size": list(patch), "architecture": {"arch_kwargs": _arch(strides)}, "m2snet": {"width": 16}}
    settings = settings_for(M2SNetTrainer, config, channels)  # 3 channels: only the 3D rule decides
    assert settings.encoder == "plans" and settings.side_heads
    net = build_m2snet(settings, config, channels, 3, deep_supervision=True)
    assert net.dim == 3 and isinstance(net.encoder, PlansEncoder)
    with pytest.raises(SettingsError, match="3D configurations use the plans encoder"):
        M2SNetSettings(dim=3, encoder="res2net50d")
    outputs = net(torch.randn(2, channels, *patch))
    expected = [patch] + [tuple(round(p * f) for p, f in zip(patch, s)) for s in net.side_head_scales]
    assert [tuple(o.shape[2:]) for o in outputs] == expected
    assert all(o.shape[:2] == (2, 3) for o in outputs)
    sum(o.pow(2).mean() for o in outputs).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"
    assert not any(b.requires_grad for b in net.buffers())


def test_2d_plans_encoder_option():
    strides = [[1, 1], [2, 2], [2, 2], [2, 2], [2, 2], [2, 2]]
    config = {"patch_size": [64, 64], "architecture": {"arch_kwargs": _arch(strides, (8, 16, 24, 32, 40, 48), 2)}}
    net = build(config, 3, 2, encoder="plans", width=16)
    assert net.dim == 2 and isinstance(net.encoder, PlansEncoder)
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)


def test_patch_smaller_than_stride_is_refused():
    config = {"patch_size": [8, 16, 16], "architecture": {"arch_kwargs": _arch(ISOTROPIC)}}
    with pytest.raises(ValueError, match="smaller than M2SNet's minimum input"):
        build(config, 1, 2)
