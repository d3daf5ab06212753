"""m2s-nnunet plan: M2SNetPlans.json from nnU-Net's plans, with the memory model."""

from __future__ import annotations

import json

import pytest

from m2s_nnunet.planning import (
    MemoryModel,
    PlanningError,
    choose_batch_size,
    m2snet_configuration,
    measure_memory_model,
    plan_m2snet,
    round_up,
)
from m2s_nnunet.settings import M2SNetSettings

RESNET18 = M2SNetSettings(dim=2, encoder="resnet18")
PLANS_3D = M2SNetSettings(dim=3, encoder="plans", width=32, decoder_norm="instance")

ARCH_3D = {"n_stages": 4, "features_per_stage": [8, 16, 24, 32], "conv_op": "torch.nn.modules.conv.Conv3d",
           "kernel_sizes": [[3, 3, 3]] * 4, "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
           "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
           "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "nonlin": "torch.nn.LeakyReLU",
           "nonlin_kwargs": {"inplace": True}}


def _fake_preprocessed(root, patch=(80, 112), median=(80, 112), n=200, channels=3):
    folder = root / "Dataset777_Fake"
    folder.mkdir(parents=True)
    plans = {"dataset_name": folder.name, "plans_name": "nnUNetPlans",
             "configurations": {"2d": {"data_identifier": "nnUNetPlans_2d", "patch_size": list(patch),
                                       "batch_size": 12, "median_image_size_in_voxels": list(median)},
                                "3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres", "patch_size": [40, 96, 80],
                                               "batch_size": 2, "median_image_size_in_voxels": [40, 100, 90],
                                               "architecture": {"arch_kwargs": ARCH_3D}},
                                "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}}}
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {str(i): "c" for i in range(channels)}, "labels": {"background": 0, "polyp": 1},
        "numTraining": n, "file_ending": ".png"}))
    return folder


def test_round_up_to_the_encoder_stride():
    assert [round_up(v) for v in (1, 32, 33, 80, 112, 384)] == [32, 32, 64, 96, 128, 384]


def test_batch_size_follows_memory_and_nnunet_caps():
    model = MemoryModel(static_bytes=1e9, activation_bytes_per_pixel=1e4, lossnet_bytes_per_map=1e8)
    # 8 GB: (8e9 - 1e9) / ((1e4 * 352^2 + 1e8) * 0.6 * 1.3) = 6.7 -> 6 samples fit
    assert choose_batch_size(model, [352, 352], 1, 8.0, dataset_pixels=1e12) == 6
    assert choose_batch_size(model, [352, 352], 1, 8.0, dataset_pixels=352 * 352 * 60) == 3  # 5 % cap
    assert choose_batch_size(model, [352, 352], 1, 1.0, dataset_pixels=1e12) == 2  # never below 2


def test_patch_shrinks_until_two_samples_fit():
    model = MemoryModel(static_bytes=1e9, activation_bytes_per_pixel=1e5, lossnet_bytes_per_map=0)
    config = m2snet_configuration({"patch_size": [1024, 512]}, model, 1, 4.0, 1e12, RESNET18)
    assert all(p % 32 == 0 for p in config["patch_size"]) and config["patch_size"][0] < 1024
    assert model.bytes_for(2, config["patch_size"], 1) <= 4e9
    config3d = m2snet_configuration({"patch_size": [64, 256, 256], "architecture": {"arch_kwargs": ARCH_3D}},
                                    model, 1, 4.0, 1e12, PLANS_3D)
    assert [p % m for p, m in zip(config3d["patch_size"], (4, 8, 8))] == [0, 0, 0]
    assert model.bytes_for(2, config3d["patch_size"], 1) <= 4e9


def _leaf_output_bytes_per_pixel(settings: M2SNetSettings, size: int = 128) -> float:
    """An independent count: the bytes of every leaf module's output in one forward pass, per input pixel.
    Autograd saves at least these (each output is some op's saved input) and a few times more at most (the
    subtraction units' element-wise inputs)."""
    import torch

    from m2s_nnunet.network.from_plans import build_m2snet

    net = build_m2snet(settings, {"patch_size": [size, size]}, 3, 2).train()
    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output.numel() * output.element_size()

    for module in net.modules():
        if not list(module.children()):
            module.register_forward_hook(count)
    net(torch.randn(1, 3, size, size))
    return total / size**2


def test_measured_model_is_plausible():
    from m2s_nnunet.network.from_plans import build_m2snet
    from m2s_nnunet.planning import CONTEXT_BYTES

    model = measure_memory_model(RESNET18, {"patch_size": [64, 64]}, 3, 2)
    leaves = _leaf_output_bytes_per_pixel(RESNET18)
    assert leaves <= model.activation_bytes_per_pixel <= 4 * leaves  # measured 5065 against 1871 B per pixel
    params = sum(p.numel() for p in build_m2snet(RESNET18, {"patch_size": [64, 64]}, 3, 2).parameters())
    vgg_params = 7_635_264  # the VGG16 layers LossNet keeps (conv1_1 to conv4_3)
    assert model.static_bytes == pytest.approx(params * 16 + CONTEXT_BYTES + vgg_params * 4, rel=0.01)
    assert 1e7 < model.lossnet_bytes_per_map < 1e9  # VGG16's saved activations at 224x224


def test_plan_writes_m2snet_plans_and_keeps_preprocessing(tmp_path, monkeypatch):
    folder = _fake_preprocessed(tmp_path)
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    path = plan_m2snet("777", encoder="resnet18", gpu_memory_gb=24)
    plans = json.loads(path.read_text())
    assert path.name == "M2SNetPlans.json" and plans["plans_name"] == "M2SNetPlans"
    config = plans["configurations"]["2d"]
    assert list(plans["configurations"]) == ["2d", "3d_fullres", "3d_cascade_fullres"]
    assert config["data_identifier"] == "nnUNetPlans_2d"
    c3d = plans["configurations"]["3d_fullres"]
    assert c3d["m2snet"]["memory_model"]["encoder"] == "plans" and "encoder" not in c3d["m2snet"]
    assert c3d["data_identifier"] == "nnUNetPlans_3d_fullres"
    assert c3d["patch_size"] == [40, 96, 80]  # divisible by the total stride (4, 8, 8): kept
    assert c3d["batch_size"] >= 2
    assert plans["configurations"]["3d_cascade_fullres"] == {"inherits_from": "3d_fullres",
                                                            "previous_stage": "3d_lowres"}
    assert config["patch_size"] == [96, 128]
    assert config["batch_size"] >= 2 and config["m2snet"]["encoder"] == "resnet18"
    with pytest.raises(PlanningError, match="--overwrite"):
        plan_m2snet("777")
    assert json.loads((folder / "nnUNetPlans.json").read_text())["plans_name"] == "nnUNetPlans"  # untouched


def test_plan_needs_nnunet_plans_first(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    with pytest.raises(PlanningError, match="nnUNetv2_plan_and_preprocess -d 778"):
        plan_m2snet("778")


def test_encoder_is_pinned_only_when_asked(tmp_path, monkeypatch):
    _fake_preprocessed(tmp_path)
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    config = json.loads(plan_m2snet("777").read_text())["configurations"]["2d"]
    assert "encoder" not in config["m2snet"]  # the trainer variant (e.g. _resnet18) keeps its encoder
    assert config["m2snet"]["memory_model"]["encoder"] == "res2net50d"


def test_2d_patch_multiples_suit_both_the_timm_and_the_plans_encoder():
    from m2s_nnunet.planning import patch_multiples

    seven_stages = {"patch_size": [352, 352],
                    "architecture": {"arch_kwargs": {"strides": [[1, 1]] + [[2, 2]] * 6}}}  # total stride 64
    paper, plans_2d = M2SNetSettings(dim=2), M2SNetSettings(dim=2, encoder="plans", decoder_norm="instance")
    assert patch_multiples(seven_stages, paper) == [64, 64]
    assert patch_multiples(seven_stages, plans_2d) == [64, 64]
    five_stages = {"patch_size": [64, 64], "architecture": {"arch_kwargs": {"strides": [[1, 1]] + [[2, 2]] * 4}}}
    assert patch_multiples(five_stages, paper) == [32, 32]
    assert patch_multiples({"patch_size": [64, 64]}, RESNET18) == [32, 32]
    three_d = {"patch_size": [40, 56, 40], "architecture": {"arch_kwargs": ARCH_3D}}
    assert patch_multiples(three_d, PLANS_3D) == [4, 8, 8]


def test_memory_model_measures_autograds_backward_of_the_subtraction_units(monkeypatch):
    """Training keeps less since the compact backward of the units, but the planner measures what 0.9.0 measured,
    so a dataset planned again gets the same batch and patch."""
    import m2s_nnunet.network.blocks as blocks

    planned = measure_memory_model(RESNET18, {"patch_size": [64, 64]}, 3, 2).activation_bytes_per_pixel
    monkeypatch.setattr(blocks, "set_compact_backward", lambda net, enabled: None)  # keep the compact backward
    compact = measure_memory_model(RESNET18, {"patch_size": [64, 64]}, 3, 2).activation_bytes_per_pixel
    assert compact < 0.9 * planned
