"""The paper's structure loss for binary segmentation: boundary-weighted BCE + weighted IoU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_AVG_POOL = {2: F.avg_pool2d, 3: F.avg_pool3d}


def boundary_weights(mask: torch.Tensor, kernel: int = 31, strength: float = 5.0) -> torch.Tensor:
    """w = 1 + 5 |avgpool31(mask) - mask|: pixels near a boundary count up to 6x (2D or 3D masks).

    The pool is zero-padded (as ``avg_pool2d(padding=15)`` with its default ``count_include_pad``); the padding
    is explicit because ``avg_pool3d`` refuses inputs smaller than its kernel even when padded.
    """
    dim = mask.dim() - 2
    padded = F.pad(mask, [kernel // 2] * (2 * dim))
    return 1 + strength * torch.abs(_AVG_POOL[dim](padded, kernel, stride=1) - mask)


def structure_loss(logits: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted BCE + weighted IoU, per image and channel, then averaged.

    logits, mask: (B, C, H, W) or (B, C, D, H, W), channel-wise; mask in {0, 1}. ``valid`` (same shape,
    0/1) excludes pixels (nnU-Net's ignore label) from both terms.
    """
    mask = mask.to(logits.dtype)
    w = boundary_weights(mask)
    if valid is not None:
        w = w * valid.to(logits.dtype)
    dims = tuple(range(2, logits.dim()))
    bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    wbce = (w * bce).sum(dim=dims) / w.sum(dim=dims).clamp_min(1e-8)
    prob = torch.sigmoid(logits)
    inter = (prob * mask * w).sum(dim=dims)
    union = ((prob + mask) * w).sum(dim=dims)
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


class StructureLoss(nn.Module):
    """The structure loss on nnU-Net's outputs and targets (a drop-in for its Dice+CE).

    - softmax training with 2 output channels (background + one class): the foreground logit is
      ``z1 - z0``, since ``softmax([z0, z1])[1] == sigmoid(z1 - z0)``; the target is ``label == 1``;
    - region-based training: each output channel is a sigmoid logit against its region mask.

    Pixels with the ignore label count in neither term. More than one softmax class is refused: the paper's
    loss is binary (use Dice+CE, nnU-Net's own loss, for multi-class tasks).
    """

    def __init__(self, regions: bool = False, ignore_label: int | None = None) -> None:
        super().__init__()
        self.regions = regions
        self.ignore_label = ignore_label

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = None
        if self.regions:
            if self.ignore_label is not None:  # nnU-Net appends the ignore mask as the last target channel
                valid, target = 1 - target[:, -1:].float(), target[:, :-1]
                valid = valid.expand_as(target)
            return structure_loss(logits, target.float(), valid)
        if logits.shape[1] != 2:
            raise ValueError(f"the structure loss is binary: it needs 2 output channels (background + 1 class), got "
                             f"{logits.shape[1]}; use Dice+CE (seg_loss='dice_ce') for multi-class tasks")
        labels = target[:, :1].long()
        if self.ignore_label is not None:
            valid = (labels != self.ignore_label).float()
        return structure_loss(logits[:, 1:2] - logits[:, 0:1], (labels == 1).float(), valid)
