"""What M2SNet needs from an encoder: the contract both the timm and the plans encoder implement."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class M2SEncoder(Protocol):
    """An image encoder giving M2SNet's five levels X1..X5 (``TimmEncoder``, ``PlansEncoder``).

    ``level_strides[i]`` is the per-axis stride of level i (X1 is pooled to X2's stride, as in the paper);
    ``fine_channels`` are the channels of the features finer than X2 (coarse to fine) that the optional
    refinement path uses; ``requires_divisible_input`` says whether inputs must be multiples of the total
    stride; ``level_mapping`` names which encoder stages give the levels (checkpoints record it implicitly).
    """

    name: str
    dim: int
    in_channels: int
    channels: tuple[int, ...]
    level_strides: tuple[tuple[int, ...], ...]
    fine_channels: tuple[int, ...]
    requires_divisible_input: bool
    level_mapping: str
    first_conv: str

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """([X1..X5], [features finer than X2, coarse to fine])."""
        ...

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[X1..X5]."""
        ...
