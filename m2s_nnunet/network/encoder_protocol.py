"""What M2SNet needs from an encoder: the contract both the timm and the plans encoder implement.

An encoder describes its outputs once, in ``feature_info`` (in the spirit of timm's: channels, reduction and
producing module per feature), and M2SNet derives everything else from it (dimension, widths, side-head
scales, the smallest input). The description is validated when it is made, so a wrong one fails at build
time with a message instead of as a shape error deep in the decoder.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

N_LEVELS = 5  # X1..X5 (Zhao et al. 2023, arXiv 2303.10894)


@dataclass(frozen=True)
class FeatureLevel:
    """One encoder feature: its channels, its per-axis stride w.r.t. the input, and the submodule giving it."""

    channels: int
    reduction: tuple[int, ...]
    module: str

    def __post_init__(self) -> None:  # accept lists and numpy integers (not floats); compare as plain tuples
        object.__setattr__(self, "channels", operator.index(self.channels))
        object.__setattr__(self, "reduction", tuple(operator.index(r) for r in self.reduction))


def _finer_or_equal(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b))


@dataclass(frozen=True)
class EncoderFeatures:
    """M2SNet's five levels X1..X5 and the features finer than X2 (``fine``, coarse to fine).

    X1 has X2's reduction because M2SNet pools it to X2's resolution (the paper's X1 is the ResNet stem after
    its max-pool); ``fine`` feeds the optional refinement path and may be empty.
    """

    levels: tuple[FeatureLevel, ...]
    fine: tuple[FeatureLevel, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "fine", tuple(self.fine))
        if len(self.levels) != N_LEVELS:
            raise ValueError(f"an M2SNet encoder gives exactly {N_LEVELS} levels X1..X5, got {len(self.levels)}")
        every = [(f"X{i + 1}", f) for i, f in enumerate(self.levels)]
        every += [(f"fine[{i}]", f) for i, f in enumerate(self.fine)]
        dim = len(self.levels[0].reduction)
        if dim not in (2, 3):
            raise ValueError(f"reductions must have 2 or 3 entries (the spatial dimension), X1 has "
                             f"{self.levels[0].reduction}")
        for name, feature in every:
            if len(feature.reduction) != dim:
                raise ValueError(f"every reduction must have {dim} entries like X1's, {name} has "
                                 f"{feature.reduction}")
            if feature.channels < 1:
                raise ValueError(f"{name} must have at least 1 channel, got {feature.channels}")
            if min(feature.reduction) < 1:
                raise ValueError(f"reductions must be at least 1 on every axis, {name} has {feature.reduction}")
        x2 = self.levels[1].reduction
        if self.levels[0].reduction != x2:
            raise ValueError(f"X1's reduction must equal X2's (X1 is pooled to X2's resolution), got "
                             f"{self.levels[0].reduction} and {x2}")
        for i in range(1, N_LEVELS - 1):
            finer, coarser = self.levels[i].reduction, self.levels[i + 1].reduction
            if not _finer_or_equal(finer, coarser):
                raise ValueError(f"X2..X5 reductions must not decrease on any axis, X{i + 1} has {finer} and "
                                 f"X{i + 2} {coarser}")
        previous, previous_name = x2, "X2"
        for name, feature in every[N_LEVELS:]:
            r = feature.reduction
            # equal to X2 is allowed: plans with a stride-1 stage after the first built such networks before
            if not _finer_or_equal(r, x2):
                raise ValueError(f"fine features must not be coarser than X2 on any axis: {name} has {r}, X2 {x2}")
            if not _finer_or_equal(r, previous):
                raise ValueError(f"fine features must be ordered coarse to fine: {name} has {r}, coarser on some "
                                 f"axis than {previous_name} {previous}")
            previous, previous_name = r, name

    @property
    def dim(self) -> int:
        """The spatial dimension (2 or 3)."""
        return len(self.levels[0].reduction)

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of X1..X5."""
        return tuple(f.channels for f in self.levels)

    @property
    def reductions(self) -> tuple[tuple[int, ...], ...]:
        """Per-axis strides of X1..X5."""
        return tuple(f.reduction for f in self.levels)

    @property
    def fine_channels(self) -> tuple[int, ...]:
        """Channels of the features finer than X2, coarse to fine."""
        return tuple(f.channels for f in self.fine)


@runtime_checkable
class M2SEncoder(Protocol):
    """An image encoder giving M2SNet's five levels X1..X5 (``TimmEncoder``, ``PlansEncoder``).

    ``feature_info`` describes the levels and the finer features; ``requires_divisible_input`` says whether
    inputs must be multiples of the total stride; ``first_conv`` names the first convolution that pretrained
    weights adapt for another channel count ("" without pretrained weights).
    """

    name: str
    in_channels: int
    feature_info: EncoderFeatures
    requires_divisible_input: bool
    first_conv: str

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """([X1..X5], [features finer than X2, coarse to fine])."""
        ...

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[X1..X5]."""
        ...
