"""The boxes of M2SNet after the encoder: the subtraction pyramid, the level aggregation, the top-down
decoder, the optional refinement path and the segmentation heads.

Box names follow the paper's figure (Zhao et al. 2023, arXiv 2303.10894). The container types
(``ModuleDict``/``ModuleList``) and their indices keep the checkpoint layout of every earlier version
(``pyramid.d54``, ``aggregate.0`` = L3, ``decode.0`` = O4), so old checkpoints load; the named accessors
below are what code should use.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from dynamic_network_architectures.building_blocks.helper import convert_dim_to_conv_op
from torch import nn

from m2s_nnunet.network.blocks import ConvNormAct, MultiScaleFilters, MultiScaleSubtractionUnit, resize_to

PYRAMID_UNITS = ("d54", "d43", "d32", "d21", "d543", "d432", "d321", "d5432", "d4321", "d54321")


class SubtractionPyramid(nn.ModuleDict):
    """The multi-scale subtraction module: ten MSSUs in four orders over the reduced levels.

    First order D54, D43, D32, D21 compare neighbouring levels; each higher order compares two neighbouring
    units of the order below, up to D54321. The shared fixed filters and the extra conv unit before the last
    MSSU are owned by ``M2SNet`` (their checkpoint keys are ``filters.*`` and ``pre_d54321.*``) and passed in.
    """

    def __init__(self, width: int, dim: int, norm: str) -> None:
        super().__init__({name: MultiScaleSubtractionUnit(width, dim, norm) for name in PYRAMID_UNITS})

    def forward(self, r5: torch.Tensor, r4: torch.Tensor, r3: torch.Tensor, r2: torch.Tensor, x1: torch.Tensor,
                filters: MultiScaleFilters, pre_last: Callable[[torch.Tensor], torch.Tensor],
                ) -> dict[str, torch.Tensor]:
        def unit(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self[name](a, b, filters)

        d = {"d54": unit("d54", r5, r4), "d43": unit("d43", r4, r3), "d32": unit("d32", r3, r2),
             "d21": unit("d21", r2, x1)}
        d["d543"], d["d432"], d["d321"] = (unit("d543", d["d54"], d["d43"]), unit("d432", d["d43"], d["d32"]),
                                           unit("d321", d["d32"], d["d21"]))
        d["d5432"], d["d4321"] = unit("d5432", d["d543"], d["d432"]), unit("d4321", d["d432"], d["d321"])
        d["d54321"] = unit("d54321", pre_last(d["d5432"]), d["d4321"])
        return d


class LevelAggregation(nn.ModuleList):
    """L4..L1: per scale, the sum of every pyramid unit at that scale (L4 = D54 needs no conv unit).

    Index 0 is L3, 1 is L2, 2 is L1 (the checkpoint layout); use ``forward``.
    """

    def __init__(self, width: int, dim: int, norm: str) -> None:
        super().__init__([ConvNormAct(width, width, dim, norm=norm) for _ in range(3)])

    def forward(self, d: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        l3_unit, l2_unit, l1_unit = self
        return (d["d54"], l3_unit(d["d43"] + d["d543"]), l2_unit(d["d32"] + d["d432"] + d["d5432"]),
                l1_unit(d["d21"] + d["d321"] + d["d4321"] + d["d54321"]))


class M2SDecoder(nn.ModuleList):
    """The top-down decoder O4, O3, O2: each upsamples the coarser output, adds its level and convolves.

    Index 0 is O4, 1 is O3, 2 is O2 (the checkpoint layout). O1 (the sum at L1's scale) is formed by
    ``M2SNet``, because its head or the refinement path consumes it.
    """

    def __init__(self, width: int, dim: int, norm: str) -> None:
        super().__init__([ConvNormAct(width, width, dim, norm=norm) for _ in range(3)])

    def forward(self, t: torch.Tensor, l4: torch.Tensor, l3: torch.Tensor,
                l2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        o4_unit, o3_unit, o2_unit = self
        o4 = o4_unit(resize_to(t, l4) + l4)
        o3 = o3_unit(resize_to(o4, l3) + l3)
        o2 = o2_unit(resize_to(o3, l2) + l2)
        return o4, o3, o2


class RefineStage(nn.Module):
    """One step of the optional refinement path: upsample to a finer encoder feature, concatenate, conv unit.

    Not in the paper (its decoder ends at stride 4 and is upsampled x4); this is how U-Nets recover the
    full resolution, added as an option for training from scratch.
    """

    def __init__(self, in_channels: int, skip_channels: int, dim: int, norm: str) -> None:
        super().__init__()
        self.fuse = ConvNormAct(in_channels + skip_channels, skip_channels, dim, norm=norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([resize_to(x, skip), skip], dim=1))


class SegmentationHeads(nn.Module):
    """Main head on O1 (3x3 conv) plus optional 1x1 side heads on O2, O3, O4.

    Named ``seg_layers`` like nnU-Net's decoders, so ``nnUNetv2_train -pretrained_weights`` skips them when
    fine-tuning on a dataset with other classes. ``main_channels``: input channels of the main head when it
    sits on the refinement path instead of O1 (default: ``width``).
    """

    def __init__(self, width: int, num_classes: int, side_heads: bool, dim: int = 2,
                 main_channels: int | None = None) -> None:
        super().__init__()
        conv = convert_dim_to_conv_op(dim)
        layers = [conv(main_channels or width, num_classes, 3, padding=1)]
        if side_heads:
            layers += [conv(width, num_classes, 1) for _ in range(3)]
        self.seg_layers = nn.ModuleList(layers)

    @property
    def has_side_heads(self) -> bool:
        return len(self.seg_layers) > 1

    def forward(self, main: torch.Tensor, output_size: tuple[int, ...],
                sides: tuple[torch.Tensor, ...] = (), side_sizes: tuple[tuple[int, ...], ...] = ()
                ) -> torch.Tensor | list[torch.Tensor]:
        """Logits at ``output_size``; with ``sides`` (O2, O3, O4) also the side heads' logits at their sizes."""
        out = resize_to(self.seg_layers[0](main), output_size)
        if not sides:
            return out
        return [out, *(resize_to(head(o), size) for head, o, size in zip(self.seg_layers[1:], sides, side_sizes))]
