"""Plans for the network, training and settings tests.

The tiny real nnU-Net plans in ``tests/data/tiny_plans`` (nnU-Net 2.8.1's planner on a synthetic CT set, 2d and an
anisotropic 3d_fullres configuration) with helpers to take one configuration or a dataset.json from them, and
hand-written ``arch_kwargs`` for the plans encoder with the builder the trainer uses.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from m2s_nnunet.network import M2SNet
from m2s_nnunet.network.from_plans import build_m2snet
from m2s_nnunet.settings import M2SNetSettings

PLANS_DIR = Path(__file__).parent / "data" / "tiny_plans"
PLANS = json.loads((PLANS_DIR / "nnUNetPlans.json").read_text())
DATASET = json.loads((PLANS_DIR / "dataset.json").read_text())


def dataset_json(channels: int, foreground: int = 1) -> dict:
    ds = copy.deepcopy(DATASET)
    ds["channel_names"] = {str(i): "CT" if channels == 1 else "rgb_to_0_1" for i in range(channels)}
    ds["labels"] = {"background": 0, **{f"class{i}": i for i in range(1, foreground + 1)}}
    return ds


def plans_config(name: str, m2snet: dict | None = None) -> dict:
    """A copy of one configuration of the tiny plans, with ``m2snet`` as its M2SNet block if given."""
    config = copy.deepcopy(PLANS["configurations"][name])
    if m2snet is not None:
        config["m2snet"] = m2snet
    return config


def build(config: dict, in_channels: int, classes: int, encoder: str = "plans", deep_supervision: bool = False,
          **values) -> M2SNet:
    """The one builder, with the settings given (the trainer's rules are tested through ``settings_for``)."""
    dim = len(config["patch_size"])
    values.setdefault("decoder_norm", "instance" if encoder == "plans" else "batch")
    return build_m2snet(M2SNetSettings(dim=dim, encoder=encoder, **values), config, in_channels, classes,
                        deep_supervision)


def arch_kwargs(strides, features=(16, 32, 48, 64, 80), dim=3):
    """nnU-Net ``arch_kwargs`` of a residual encoder with these strides (3x3 kernels, InstanceNorm, LeakyReLU)."""
    conv = "torch.nn.modules.conv.Conv3d" if dim == 3 else "torch.nn.modules.conv.Conv2d"
    norm = f"torch.nn.modules.instancenorm.InstanceNorm{dim}d"
    return {"n_stages": len(strides), "features_per_stage": list(features[: len(strides)]), "conv_op": conv,
            "kernel_sizes": [[3] * dim] * len(strides), "strides": strides, "conv_bias": True, "norm_op": norm,
            "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True}}


ISOTROPIC = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
ANISOTROPIC = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]  # thick slices: no early z pooling


def calibrate_batch_norm(net: M2SNet, channels: int, patch: list[int], batches: int = 2) -> M2SNet:
    """BatchNorm running statistics of real activations (random inputs), in eval mode: a randomly initialised
    network with default statistics gives logits too large for nnU-Net's fp16 accumulation."""
    import torch

    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for module in norms:
        module.momentum = None  # the plain mean over the batches
    with torch.no_grad():
        for _ in range(batches):
            net.train()(torch.randn(2, channels, *patch))
    for module, momentum in zip(norms, momenta):
        module.momentum = momentum  # as built (None would make torch.compile break the graph on .item())
    return net.eval()
