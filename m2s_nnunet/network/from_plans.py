"""Build M2SNet for one nnU-Net configuration (shared by the trainer, the planner and the benchmarks)."""

from __future__ import annotations

from m2s_nnunet.network.m2snet import M2SNet
from m2s_nnunet.network.plans_encoder import PlansEncoder

PLANS_ENCODER = "plans"  # encoder name that selects nnU-Net's residual encoder built from the plans


def uses_timm_encoder(configuration: dict, encoder: str) -> bool:
    """2D configurations use the (ImageNet) timm encoder unless the plans ask for ``"plans"``; 3D never does."""
    return len(configuration["patch_size"]) == 2 and encoder != PLANS_ENCODER


def build_m2snet(configuration: dict, in_channels: int, num_classes: int, encoder: str, width: int = 64,
                 side_heads: bool = False, deep_supervision: bool = False, refine: bool = False,
                 decoder_norm: str | None = None, encoder_norm: str | None = None,
                 encoder_blocks: int | list[int] | None = None, level_mapping: str = "last4") -> M2SNet:
    """M2SNet for a plans configuration dict (``patch_size`` and ``architecture.arch_kwargs`` are read).

    2D: the timm encoder and BatchNorm, as in the paper. 3D (or encoder "plans"): nnU-Net's residual
    encoder from the configuration's kernel sizes and strides, and InstanceNorm in the decoder, because
    3D batches hold 2 samples and batch statistics would be noise. ``decoder_norm`` overrides that choice;
    ``encoder_norm``, ``encoder_blocks`` (residual blocks per stage) and ``level_mapping`` (which stages give
    X1..X5, see ``plans_encoder.level_indices``) apply to the plans encoder only.
    """
    patch = list(configuration["patch_size"])
    if uses_timm_encoder(configuration, encoder):
        if encoder_norm is not None or encoder_blocks is not None or level_mapping != "last4":
            raise ValueError("encoder_norm, encoder_blocks and level_mapping apply to the plans encoder only, "
                             f"not to '{encoder}'")
        net = M2SNet(in_channels, num_classes, encoder=encoder, width=width, side_heads=side_heads,
                     deep_supervision=deep_supervision, norm=decoder_norm or "batch", refine=refine)
    else:
        plans_encoder = PlansEncoder(in_channels, configuration["architecture"]["arch_kwargs"],
                                     n_blocks_per_stage=encoder_blocks, norm=encoder_norm,
                                     level_mapping=level_mapping)
        net = M2SNet(in_channels, num_classes, encoder=plans_encoder, width=width, side_heads=side_heads,
                     deep_supervision=deep_supervision, norm=decoder_norm or "instance", refine=refine)
    if any(p < m for p, m in zip(patch, net.min_input_size)):
        raise ValueError(f"patch size {patch} is smaller than M2SNet's minimum input {list(net.min_input_size)} "
                         "(the encoder's total stride); use `m2s-nnunet plan` or a larger patch_size")
    return net
