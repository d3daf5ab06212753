"""The plans encoder (nnU-Net's residual encoder from plans): level strides, anisotropy, level mapping,
the refinement stages it offers, depth and norm overrides."""

from __future__ import annotations

import pytest
import torch
from fake_plans import ANISOTROPIC, ISOTROPIC, build
from fake_plans import arch_kwargs as _arch

from m2s_nnunet.network import M2SNet
from m2s_nnunet.network.layout import LayoutError
from m2s_nnunet.network.plans_encoder import PlansEncoder, level_indices


def test_anisotropic_level_strides_and_ds_scales():
    enc = PlansEncoder(1, _arch(ANISOTROPIC))
    assert enc.feature_info.reductions == ((1, 2, 2), (1, 2, 2), (2, 4, 4), (4, 8, 8), (4, 16, 16))  # X1 pooled
    assert enc.x1_pool == (1, 2, 2)
    net = M2SNet(1, 2, encoder=enc, width=16, norm="instance")
    assert net.side_head_scales == [[1.0, 0.5, 0.5], [0.5, 0.25, 0.25], [0.25, 0.125, 0.125]]
    assert net.min_input_size == (4, 16, 16)
    with torch.no_grad():
        assert net(torch.randn(1, 1, 12, 48, 32)).shape == (1, 2, 12, 48, 32)
    with pytest.raises(ValueError, match="at least"):
        net(torch.randn(1, 1, 2, 48, 48))
    with pytest.raises(ValueError, match="divisible by"):
        net(torch.randn(1, 1, 12, 48, 40))


def test_level_indices():
    assert level_indices(6) == (1, 2, 3, 4, 5)
    assert level_indices(5) == (0, 1, 2, 3, 4)
    assert level_indices(4) == (0, 0, 1, 2, 3)
    assert level_indices(6, "deeper") == (1, 2, 3, 4, 5)  # only 4-stage plans change
    assert level_indices(4, "deeper") == (0, 1, 2, 3, 4)  # index 4: the extra bottleneck stage
    with pytest.raises(ValueError, match="at least 4 stages"):
        level_indices(3)
    with pytest.raises(ValueError, match="level_mapping must be one of"):
        level_indices(5, "auto")


def test_deeper_level_mapping_keeps_the_decoder_off_full_resolution():
    """Hippocampus-like plans (4 stages), "deeper": X2 at stride 2, X5 an extra stride-1 stage."""
    four = {"patch_size": [16, 24, 16], "architecture": {"arch_kwargs": _arch(ISOTROPIC[:4])}}
    net = build(four, 1, 3, encoder="plans", width=8, side_heads=True, deep_supervision=True,
                       level_mapping="deeper")
    enc = net.encoder
    assert enc.extra_stage is not None and enc.feature_info.channels == (16, 32, 48, 64, 64)
    assert enc.feature_info.reductions == ((2, 2, 2), (2, 2, 2), (4, 4, 4), (8, 8, 8), (8, 8, 8))
    assert [f.module for f in enc.feature_info.levels] == ["body.stages.0", "body.stages.1", "body.stages.2",
                                                           "body.stages.3", "extra_stage"]
    assert net.side_head_scales == [[0.5] * 3, [0.25] * 3, [0.125] * 3]
    outputs = net(torch.randn(2, 1, 16, 24, 16))
    assert [tuple(o.shape[2:]) for o in outputs] == [(16, 24, 16), (8, 12, 8), (4, 6, 4), (2, 3, 2)]
    sum(o.pow(2).mean() for o in outputs).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    # the subtraction units see one voxel in eight of what the default mapping gives them
    seen = {}
    hook = net.pyramid["d21"].register_forward_hook(lambda m, i, o: seen.update(d21=o.shape[2:]))
    with torch.no_grad():
        net(torch.randn(1, 1, 16, 24, 16))
    hook.remove()
    assert tuple(seen["d21"]) == (8, 12, 8)
    # the refinement path now has a finer stage to go to
    assert build(four, 1, 2, encoder="plans", width=8, refine=True, level_mapping="deeper").refine
    # the default network; a checkpoint of one mapping loaded into the other names the setting to use
    default = build(four, 1, 3, encoder="plans", width=8, side_heads=True)
    assert default.encoder.extra_stage is None and default.encoder.feature_info.reductions[1] == (1, 1, 1)
    build(four, 1, 3, encoder="plans", width=8, side_heads=True).load_state_dict(default.state_dict())
    with pytest.raises(LayoutError, match="level_mapping 'last4' \\(this network: 'deeper'\\)"):
        build(four, 1, 3, encoder="plans", width=8, side_heads=True,
                     level_mapping="deeper").load_state_dict(default.state_dict())
    with pytest.raises(LayoutError, match="level_mapping 'deeper' \\(this network: 'last4'\\)"):
        default.load_state_dict(net.state_dict())
    with pytest.raises(ValueError, match="plans encoder only"):
        build({"patch_size": [64, 64]}, 3, 2, encoder="resnet18", level_mapping="deeper")


def test_the_recipe_on_4_stage_plans_refines_back_to_full_resolution():
    """What M2SNetTrainer_scratch builds for Hippocampus-like plans: shapes, gradients, the refinement step."""
    from m2s_nnunet.network.from_plans import build_m2snet
    from m2s_nnunet.settings import settings_for
    from m2s_nnunet.training import M2SNetTrainer_scratch

    four = {"patch_size": [16, 24, 16], "architecture": {"arch_kwargs": _arch(ISOTROPIC[:4])}}
    net = build_m2snet(settings_for(M2SNetTrainer_scratch, four, 1), four, 1, 3, deep_supervision=True)
    assert net.refine and len(net.refine_stages) == 1 and net.encoder.extra_stage is not None
    seen = {}
    net.refine_stages[0].register_forward_hook(lambda m, i, o: seen.update(refined=o.shape[2:]))
    outputs = net(torch.randn(2, 1, 16, 24, 16))
    assert tuple(seen["refined"]) == (16, 24, 16)  # the head sits on the full-resolution stage
    assert [tuple(o.shape[2:]) for o in outputs] == [(16, 24, 16), (8, 12, 8), (4, 6, 4), (2, 3, 2)]
    sum(o.pow(2).mean() for o in outputs).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_a_checkpoint_with_the_other_refine_setting_names_the_fix():
    four = {"patch_size": [16, 24, 16], "architecture": {"arch_kwargs": _arch(ISOTROPIC[:4])}}
    refined = build(four, 1, 2, encoder="plans", width=8, refine=True, level_mapping="deeper")
    plain = build(four, 1, 2, encoder="plans", width=8, level_mapping="deeper")
    with pytest.raises(LayoutError, match=r"refine False \(this network: True\)"):
        refined.load_state_dict(plain.state_dict())
    with pytest.raises(LayoutError, match=r"refine True \(this network: False\)"):
        plain.load_state_dict(refined.state_dict())
    build(four, 1, 2, encoder="plans", width=8, refine=True, level_mapping="deeper").load_state_dict(
        refined.state_dict())


def test_refinement_path_uses_the_finer_plans_stages():
    strides2d = [[1, 1], [2, 2], [2, 2], [2, 2], [2, 2], [2, 2]]
    config = {"patch_size": [64, 64], "architecture": {"arch_kwargs": _arch(strides2d, (8, 16, 24, 32, 40, 48), 2)}}
    net = build(config, 1, 3, encoder="plans", width=16, refine=True, side_heads=True, deep_supervision=True)
    fine = net.encoder.feature_info.fine
    assert [(f.channels, f.reduction) for f in fine] == [(16, (2, 2)), (8, (1, 1))]  # stride 2, then 1
    assert len(net.refine_stages) == 2
    outputs = net(torch.randn(2, 1, 64, 64))
    assert outputs[0].shape == (2, 3, 64, 64)
    sum(o.pow(2).mean() for o in outputs).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    # 3D, five stages: X1 is the full-resolution stage pooled to X2, and it is also the one refinement step
    config3d = {"patch_size": [32, 32, 32], "architecture": {"arch_kwargs": _arch(ISOTROPIC)}}
    net3d = build(config3d, 1, 2, encoder="plans", width=8, refine=True)
    assert net3d.encoder.feature_info.fine_channels == (16,)
    with torch.no_grad():
        assert net3d(torch.randn(1, 1, 32, 32, 32)).shape == (1, 2, 32, 32, 32)
    # four stages, default mapping: X2 is already at full resolution, nothing to refine (the option is a no-op)
    four = {"patch_size": [16, 16, 16], "architecture": {"arch_kwargs": _arch(ISOTROPIC[:4])}}
    assert not build(four, 1, 2, encoder="plans", width=8, refine=True).refine


def test_plans_encoder_depth_and_norm_overrides():
    arch = _arch(ISOTROPIC)
    assert PlansEncoder(1, arch).blocks == (1, 2, 2, 2, 2)
    assert PlansEncoder(1, arch, n_blocks_per_stage=1).blocks == (1, 1, 1, 1, 1)
    assert PlansEncoder(1, {**arch, "n_blocks_per_stage": [1, 3, 4, 6, 6]}).blocks == (1, 3, 4, 6, 6)  # ResEnc plans
    with pytest.raises(ValueError, match="one per stage"):
        PlansEncoder(1, arch, n_blocks_per_stage=[1, 2])
    bn = PlansEncoder(1, arch, norm="batch")
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in bn.modules())
    assert not any(isinstance(m, torch.nn.InstanceNorm3d) for m in bn.modules())
    with pytest.raises(ValueError, match="encoder norm"):
        PlansEncoder(1, arch, norm="group")
    config = {"patch_size": [32, 32, 32], "architecture": {"arch_kwargs": arch}}
    with pytest.raises(ValueError, match="plans encoder only"):
        build({"patch_size": [64, 64], "architecture": {"arch_kwargs": arch}}, 3, 2, "resnet18",
                     encoder_blocks=1)
    net = build(config, 1, 2, encoder="plans", width=8, decoder_norm="batch", encoder_norm="batch")
    assert not any(isinstance(m, torch.nn.InstanceNorm3d) for m in net.modules())
