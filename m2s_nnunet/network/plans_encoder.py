"""A 2D/3D encoder that follows nnU-Net's plans: ``dynamic_network_architectures``' residual encoder.

Built from a configuration's kernel sizes, strides and widths (anisotropic strides for thick-slice CT
included), so every patch size the plans produce works without padding tricks. No ImageNet weights:
it trains from scratch. Used by 3D M2SNet, and optionally in 2D as an alternative to the timm backbone.
"""

from __future__ import annotations

import pydoc
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from dynamic_network_architectures.building_blocks.residual import StackedResidualBlocks
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from torch import nn

from m2s_nnunet.network.blocks import NORM_TYPES, network_config
from m2s_nnunet.network.encoder_protocol import EncoderFeatures, FeatureLevel
from m2s_nnunet.settings import LEVEL_MAPPINGS, deeper_moves_pyramid

# Residual blocks per stage when the plans (PlainConvUNet) give none: two per stage after the first, about
# the depth of the plain U-Net encoder the plans were made for (nnU-Net's ResEnc plans bring their own).
DEFAULT_BLOCKS = (1, 2, 2, 2, 2, 2, 2, 2)


def _locate(value):
    if isinstance(value, str):
        found = pydoc.locate(value)
        if found is None:
            raise ValueError(f"cannot import '{value}' named in the plans")
        return found
    return value


def level_indices(n_stages: int, mapping: str = "last4") -> tuple[int, int, int, int, int]:
    """Which encoder stage gives X1..X5 (index ``n_stages`` is the extra bottleneck stage, see below).

    "last4": X5..X2 are the last four stages, X1 the stage before X2, or X2 itself with only four
    stages. "deeper" (the from-scratch recipe's) is the same except that X2 is never the full-resolution
    stage: with four stages (nnU-Net plans them for small 3D patches, e.g. Hippocampus 40x56x40) X2..X4
    are stages 1..3 and X5 is one extra stride-1 residual stage on the bottleneck, so seven of the ten
    subtraction units run on one voxel in eight (the measurements behind it: bench/RESULTS.md 6.5 and 6.7).

    As in the paper (where X1 is the ResNet stem after its max-pool), X1 is max-pooled to X2's resolution.
    """
    if mapping not in LEVEL_MAPPINGS:
        raise ValueError(f"level_mapping must be one of {LEVEL_MAPPINGS}, got '{mapping}'")
    if n_stages < 4:
        raise ValueError(f"M2SNet needs an encoder with at least 4 stages, the plans have {n_stages}")
    if mapping == "deeper" and deeper_moves_pyramid(n_stages):
        return (0, 1, 2, 3, 4)
    x2 = n_stages - 4
    return (max(x2 - 1, 0), x2, x2 + 1, x2 + 2, x2 + 3)


def blocks_per_stage(arch_kwargs: dict, override: int | list[int] | tuple[int, ...] | None = None) -> list[int]:
    """Residual blocks per stage: an override (one number for every stage, or a list), else the plans' own
    (nnU-Net's ResEnc presets bring them), else ``DEFAULT_BLOCKS``."""
    n_stages = int(arch_kwargs["n_stages"])
    if override is None:
        return list(arch_kwargs.get("n_blocks_per_stage") or DEFAULT_BLOCKS[:n_stages])
    blocks = [int(override)] * n_stages if isinstance(override, int) else [int(b) for b in override]
    if len(blocks) != n_stages or min(blocks) < 1:
        raise ValueError(f"encoder_blocks must be a positive number or {n_stages} positive numbers (one per stage "
                         f"of the plans), got {override}")
    return blocks


class PlansEncoder(nn.Module):
    """nnU-Net's residual encoder returning [X1, ..., X5], described with their per-axis strides in ``feature_info``.

    ``n_blocks_per_stage`` overrides the depth (see ``blocks_per_stage``); ``norm`` ("instance" or "batch")
    overrides the plans' normalisation (nnU-Net plans InstanceNorm); ``level_mapping`` picks the stages of
    X1..X5 (see ``level_indices``).
    """

    def __init__(self, in_channels: int, arch_kwargs: dict,
                 n_blocks_per_stage: int | list[int] | tuple[int, ...] | None = None,
                 norm: str | None = None, level_mapping: str = "last4") -> None:
        super().__init__()
        n_stages = int(arch_kwargs["n_stages"])
        conv_op = _locate(arch_kwargs["conv_op"])
        dim = convert_conv_op_to_dim(conv_op)
        blocks = blocks_per_stage(arch_kwargs, n_blocks_per_stage)
        norm_op, norm_kwargs = _locate(arch_kwargs.get("norm_op")), arch_kwargs.get("norm_op_kwargs")
        if norm is not None:
            if norm not in NORM_TYPES:
                raise ValueError(f"encoder norm must be one of {sorted(NORM_TYPES)}, got '{norm}'")
            norm_op, norm_kwargs = network_config(dim, norm)["norm_op"], {"eps": 1e-5, "affine": True}
        self.blocks = tuple(blocks)
        self.body = ResidualEncoder(
            input_channels=in_channels,
            n_stages=n_stages,
            features_per_stage=arch_kwargs["features_per_stage"],
            conv_op=conv_op,
            kernel_sizes=arch_kwargs["kernel_sizes"],
            strides=arch_kwargs["strides"],
            n_blocks_per_stage=blocks,
            conv_bias=bool(arch_kwargs.get("conv_bias", True)),
            norm_op=norm_op,
            norm_op_kwargs=norm_kwargs,
            nonlin=_locate(arch_kwargs.get("nonlin")),
            nonlin_kwargs=arch_kwargs.get("nonlin_kwargs"),
            return_skips=True,
        )
        self.name = f"plans-residual-encoder-{dim}d"
        self.in_channels = in_channels
        self.level_mapping = level_mapping
        self.indices = level_indices(n_stages, level_mapping)
        features = list(arch_kwargs["features_per_stage"])
        stage_strides = np.array(arch_kwargs["strides"], dtype=int).reshape(n_stages, -1)
        self.extra_stage: nn.Module | None = None
        if self.indices[-1] == n_stages:  # X5: one more stage of the last one's kind, without a stride
            self.extra_stage = StackedResidualBlocks(
                blocks[-1], conv_op, features[-1], features[-1], arch_kwargs["kernel_sizes"][-1], 1,
                conv_bias=bool(arch_kwargs.get("conv_bias", True)), norm_op=norm_op, norm_op_kwargs=norm_kwargs,
                nonlin=_locate(arch_kwargs.get("nonlin")), nonlin_kwargs=arch_kwargs.get("nonlin_kwargs"))
            features.append(features[-1])
            stage_strides = np.concatenate([stage_strides, np.ones_like(stage_strides[:1])])
        reductions = [tuple(int(s) for s in r) for r in np.cumprod(stage_strides, axis=0)]
        x2 = reductions[self.indices[1]]
        self.x1_pool = tuple(b // a for a, b in zip(reductions[self.indices[0]], x2))  # X1 -> X2 resolution
        # stages finer than X2 (coarse to fine: stride 2, then 1) for M2SNet's optional refinement path
        self.fine_indices = tuple(range(self.indices[1] - 1, -1, -1))

        def level(stage: int) -> FeatureLevel:
            module = "extra_stage" if stage == n_stages else f"body.stages.{stage}"
            return FeatureLevel(features[stage], reductions[stage], module)

        x1 = replace(level(self.indices[0]), reduction=x2)  # pooled to X2's resolution in ``features``
        self.feature_info = EncoderFeatures((x1, *(level(i) for i in self.indices[1:])),
                                            tuple(level(i) for i in self.fine_indices))
        self.first_conv = ""  # no pretrained weights to adapt
        # nnU-Net's residual blocks need sizes divisible by the strides (its patches always are)
        self.requires_divisible_input = True

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """([X1..X5], [stages finer than X2, coarse to fine])."""
        skips = self.body(x)
        if self.extra_stage is not None:
            skips = [*skips, self.extra_stage(skips[-1])]
        levels = [skips[i] for i in self.indices]
        if any(k > 1 for k in self.x1_pool):
            pool = F.max_pool3d if self.feature_info.dim == 3 else F.max_pool2d
            levels[0] = pool(levels[0], kernel_size=self.x1_pool, stride=self.x1_pool)
        return levels, [skips[i] for i in self.fine_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.features(x)[0]
