"""The image encoder: any timm CNN, mapped onto M2SNet's five levels X1..X5 through its ``feature_info``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

with warnings.catch_warnings():  # timm's import trips a torch.jit deprecation warning that users cannot act on
    warnings.simplefilter("ignore", FutureWarning)
    import timm

from m2s_nnunet.network.encoder_protocol import EncoderFeatures, FeatureLevel
from m2s_nnunet.settings import DEFAULT_ENCODER, LIGHT_ENCODER  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class LevelMap:
    """Which timm feature index feeds each M2SNet level, and whether X1 needs a stride-2 max-pool."""

    indices: tuple[int, int, int, int, int]  # timm feature indices for X1..X5
    pool_x1: bool  # X1 comes from a stride-2 map and is max-pooled to stride 4 (ResNet stem before its pool)
    channels: tuple[int, int, int, int, int]


def map_levels(reductions: list[int], channels: list[int], encoder_name: str = "encoder") -> LevelMap:
    """Choose X1..X5 from an encoder's feature reductions.

    X2..X5 are the last features at strides 4, 8, 16 and 32. X1 is the feature just before X2: at stride 2
    it is max-pooled to stride 4 (exactly what a ResNet stem does next), at stride 4 it is used as is.
    Encoders with only four levels (e.g. ConvNeXt: strides 4..32) reuse the stride-4 level for X1.
    """
    wanted = {}
    for stride in (4, 8, 16, 32):
        hits = [i for i, r in enumerate(reductions) if r == stride]
        if not hits:
            raise ValueError(
                f"encoder '{encoder_name}' has feature strides {reductions}; M2SNet needs levels at strides "
                "4, 8, 16 and 32 (plus one at stride 2 or 4 for X1). Pick a CNN encoder such as res2net50d, "
                "resnet18/50, efficientnet_b0 or convnext_tiny."
            )
        wanted[stride] = hits[-1]
    x2 = wanted[4]
    before = [i for i in range(x2) if reductions[i] in (2, 4)]
    x1 = before[-1] if before else x2
    indices = (x1, x2, wanted[8], wanted[16], wanted[32])
    return LevelMap(
        indices=indices,
        pool_x1=reductions[x1] == 2,
        channels=tuple(channels[i] for i in indices),  # type: ignore[arg-type]
    )


def _submodule_name(body: nn.Module, name: str) -> str:
    """timm's feature module name as a path in the encoder (``FeatureListNet`` flattens 'stages.0' to 'stages_0')."""
    modules = dict(body.named_modules())
    found = next((n for n in (name, name.replace(".", "_")) if n in modules), name)
    return f"body.{found}"


class TimmEncoder(nn.Module):
    """A timm ``features_only`` model returning [X1, X2, X3, X4, X5] (X1 and X2 at stride 4)."""

    def __init__(self, name: str = DEFAULT_ENCODER, in_channels: int = 3) -> None:
        super().__init__()
        self.name = name
        self.in_channels = in_channels
        try:
            # Pretrained weights are loaded separately (m2s_nnunet.weights) so that building the network
            # never touches the network or a cache, e.g. at nnU-Net predict time.
            self.body = timm.create_model(name, features_only=True, pretrained=False, in_chans=in_channels)
        except RuntimeError as err:  # timm raises RuntimeError for unknown names
            raise ValueError(f"unknown timm encoder '{name}': {err}") from err
        info = self.body.feature_info
        self.level_map = map_levels(list(info.reduction()), list(info.channels()), name)
        all_reductions = list(info.reduction())
        x2_reduction = all_reductions[self.level_map.indices[1]]
        # features finer than X2 (coarse to fine) for M2SNet's optional refinement path; for ResNets the
        # stride-2 stem before its max-pool
        finer = sorted({r for r in all_reductions if r < x2_reduction}, reverse=True)
        self.fine_indices = tuple(max(i for i, r in enumerate(all_reductions) if r == f) for f in finer)

        def level(index: int, reduction: int) -> FeatureLevel:
            return FeatureLevel(info.channels()[index], (reduction, reduction),
                                _submodule_name(self.body, info.module_name()[index]))

        # X1 is max-pooled to X2's stride when it comes from a finer map, so it has X2's reduction
        levels = [level(self.level_map.indices[0], x2_reduction)]
        levels += [level(i, all_reductions[i]) for i in self.level_map.indices[1:]]
        fine = tuple(level(i, all_reductions[i]) for i in self.fine_indices)
        self.feature_info = EncoderFeatures(tuple(levels), fine)
        self.requires_divisible_input = False  # timm CNNs pad odd sizes themselves

    @property
    def first_conv(self) -> str:
        """Name of the first convolution in timm's pretrained config (adapted for non-RGB inputs)."""
        return self.body.pretrained_cfg.get("first_conv", "")

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """([X1..X5], [features finer than X2, coarse to fine])."""
        feats = self.body(x)
        levels = [feats[i] for i in self.level_map.indices]
        if self.level_map.pool_x1:
            levels[0] = F.max_pool2d(levels[0], kernel_size=3, stride=2, padding=1)
        return levels, [feats[i] for i in self.fine_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.features(x)[0]
