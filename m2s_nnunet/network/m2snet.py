"""M2SNet: encoder -> multi-scale subtraction pyramid -> top-down decoder -> segmentation head(s).

Box names follow the paper's figure (Zhao et al. 2023, arXiv 2303.10894) and ``M2SNET_SPEC.md``:
R2..R5 are the reduced encoder levels, Dxy the subtraction units of the pyramid, L1..L4 the per-scale
aggregations, T the top conv on X5, O4..O1 the decoder stages.
"""

from __future__ import annotations

import torch
from torch import nn

from m2s_nnunet.network.blocks import (
    ConvNormAct,
    MultiScaleFilters,
    MultiScaleSubtractionUnit,
    resize_to,
)
from m2s_nnunet.network.encoder import DEFAULT_ENCODER, TimmEncoder

# Strides of the decoder stages O2, O3, O4 relative to the input; the side heads live there.
SIDE_HEAD_STRIDES = (4, 8, 16)
_PYRAMID = ("d54", "d43", "d32", "d21", "d543", "d432", "d321", "d5432", "d4321", "d54321")


class SegmentationHeads(nn.Module):
    """Main head on O1 (3x3 conv) plus optional 1x1 side heads on O2, O3, O4.

    Named ``seg_layers`` like nnU-Net's decoders, so ``nnUNetv2_train -pretrained_weights`` skips them when
    fine-tuning on a dataset with other classes.
    """

    def __init__(self, width: int, num_classes: int, side_heads: bool) -> None:
        super().__init__()
        layers = [nn.Conv2d(width, num_classes, 3, padding=1)]
        if side_heads:
            layers += [nn.Conv2d(width, num_classes, 1) for _ in SIDE_HEAD_STRIDES]
        self.seg_layers = nn.ModuleList(layers)


class M2SNet(nn.Module):
    """Multi-scale in multi-scale subtraction network (2D).

    Args:
        in_channels: image channels (1 for CT/ultrasound/MRI, 3 for RGB, more for multi-modal).
        num_classes: output channels; the network returns logits, never probabilities.
        encoder: a timm CNN name; the default is the paper's deep-stem Res2Net-50.
        width: decoder channels (64 in the paper).
        side_heads: build extra heads on O2..O4 for deep supervision. Off: the heads do not exist.
        deep_supervision: with side heads, return ``[full, 1/4, 1/8, 1/16]`` logits instead of one tensor.
        fast_filters: compute the fixed all-ones filters as channel-sum box filters (same result, faster).

    Input (B, in_channels, H, W) with H, W >= 32 (any size, not only multiples of 32);
    output (B, num_classes, H, W) logits, or a list of them with deep supervision on.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        encoder: str = DEFAULT_ENCODER,
        width: int = 64,
        side_heads: bool = False,
        deep_supervision: bool = False,
        fast_filters: bool = True,
    ) -> None:
        super().__init__()
        if deep_supervision and not side_heads:
            raise ValueError("deep_supervision=True needs side_heads=True (the heads it would use)")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.deep_supervision = deep_supervision
        self.encoder = TimmEncoder(encoder, in_channels)
        c1, c2, c3, c4, c5 = self.encoder.channels

        # X1 already has 64 channels in ResNet-family encoders (identity, as in the paper).
        self.reduce_x1 = nn.Identity() if c1 == width else ConvNormAct(c1, width)
        self.reduce = nn.ModuleList([ConvNormAct(c, width) for c in (c2, c3, c4, c5)])  # R2..R5
        self.filters = MultiScaleFilters(width, fast_path=fast_filters)
        self.pyramid = nn.ModuleDict(
            {name: MultiScaleSubtractionUnit(width, self.filters) for name in _PYRAMID}
        )
        self.pre_d54321 = ConvNormAct(width, width)  # the extra conv on D5432 before the last MSSU
        self.aggregate = nn.ModuleList([ConvNormAct(width, width) for _ in range(3)])  # L3, L2, L1
        self.top = ConvNormAct(c5, width)  # T
        self.decode = nn.ModuleList([ConvNormAct(width, width) for _ in range(3)])  # O4, O3, O2
        self.head = SegmentationHeads(width, num_classes, side_heads)

    @property
    def has_side_heads(self) -> bool:
        return len(self.head.seg_layers) > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"M2SNet was built for (B, {self.in_channels}, H, W) inputs but got {tuple(x.shape)}. "
                f"With nnU-Net this means the images have a different channel count than the training "
                f"data (e.g. grey vs RGB PNGs, RGBA PNGs, or a missing/extra _000X channel file); convert them to "
                f"{self.in_channels} channel(s)."
            )
        if min(x.shape[2:]) < 32:
            raise ValueError(f"M2SNet needs inputs of at least 32 px per side (stride 32), got {tuple(x.shape)}")
        x1, x2, x3, x4, x5 = self.encoder(x)
        x1 = self.reduce_x1(x1)
        r2, r3, r4, r5 = (reduce(f) for reduce, f in zip(self.reduce, (x2, x3, x4, x5)))

        p = self.pyramid
        d54, d43, d32, d21 = p["d54"](r5, r4), p["d43"](r4, r3), p["d32"](r3, r2), p["d21"](r2, x1)
        d543, d432, d321 = p["d543"](d54, d43), p["d432"](d43, d32), p["d321"](d32, d21)
        d5432, d4321 = p["d5432"](d543, d432), p["d4321"](d432, d321)
        d54321 = p["d54321"](self.pre_d54321(d5432), d4321)

        l4 = d54
        l3 = self.aggregate[0](d43 + d543)
        l2 = self.aggregate[1](d32 + d432 + d5432)
        l1 = self.aggregate[2](d21 + d321 + d4321 + d54321)

        t = self.top(x5)
        o4 = self.decode[0](resize_to(t, l4) + l4)
        o3 = self.decode[1](resize_to(o4, l3) + l3)
        o2 = self.decode[2](resize_to(o3, l2) + l2)
        heads = self.head.seg_layers
        out = resize_to(heads[0](resize_to(o2, l1) + l1), x)
        if not self.deep_supervision:
            return out
        size = x.shape[2:]
        sides = [
            resize_to(head(o), tuple(round(s / stride) for s in size))
            for head, o, stride in zip(heads[1:], (o2, o3, o4), SIDE_HEAD_STRIDES)
        ]
        return [out, *sides]
