"""The one builder: M2SNet from ``M2SNetSettings`` and a plans configuration.

Used by the trainer (training and ``nnUNetv2_predict``), the planner's memory model, ``flops`` and the
benchmarks, so they all build the same network from the same settings (``m2s_nnunet/settings.py``).
"""

from __future__ import annotations

from m2s_nnunet.cpu_bf16 import network_predicts_in_cpu_bf16, network_uses_cpu_bf16
from m2s_nnunet.network.m2snet import M2SNet
from m2s_nnunet.network.plans_encoder import PlansEncoder
from m2s_nnunet.settings import M2SNetSettings


def build_m2snet(settings: M2SNetSettings, configuration: dict, in_channels: int, num_classes: int,
                 deep_supervision: bool = False) -> M2SNet:
    """M2SNet for one plans configuration (``patch_size`` and ``architecture.arch_kwargs`` are read).

    A timm encoder (2D, the paper's) or nnU-Net's residual encoder from the configuration's kernel sizes
    and strides; ``deep_supervision`` returns the side heads' outputs too (needs ``settings.side_heads``).
    Never loads weights: this also runs at predict time.
    """
    if len(configuration["patch_size"]) != settings.dim:
        raise ValueError(f"settings for {settings.dim}D, configuration with patch {configuration['patch_size']}")
    if settings.uses_timm_encoder:
        encoder = settings.encoder
    else:
        if "architecture" not in configuration:
            raise ValueError("the plans encoder needs the configuration's 'architecture' (kernel sizes, strides)")
        encoder = PlansEncoder(in_channels, configuration["architecture"]["arch_kwargs"],
                               n_blocks_per_stage=settings.encoder_blocks, norm=settings.encoder_norm,
                               level_mapping=settings.level_mapping)
    net = M2SNet(in_channels, num_classes, encoder=encoder, width=settings.width, side_heads=settings.side_heads,
                 deep_supervision=deep_supervision and settings.side_heads, norm=settings.decoder_norm,
                 refine=settings.refine, fast_filters=settings.fast_filters,
                 cpu_bf16=network_uses_cpu_bf16(settings.cpu_bf16),
                 cpu_bf16_eval=network_predicts_in_cpu_bf16(settings.cpu_bf16))
    patch = list(configuration["patch_size"])
    if any(p < m for p, m in zip(patch, net.min_input_size)):
        raise ValueError(f"patch size {patch} is smaller than M2SNet's minimum input {list(net.min_input_size)} "
                         "(the encoder's total stride); use `m2s-nnunet plan` or a larger patch_size")
    # what a checkpoint that does not fit is compared with (M2SNet.load_state_dict names the settings that differ)
    net.built_with, net.plans_configuration = settings, configuration
    return net
