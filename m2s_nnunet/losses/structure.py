"""The paper's structure loss for binary segmentation: boundary-weighted BCE + weighted IoU."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def boundary_weights(mask: torch.Tensor, kernel: int = 31, strength: float = 5.0) -> torch.Tensor:
    """w = 1 + 5 |avgpool31(mask) - mask|: pixels near a boundary count up to 6x."""
    return 1 + strength * torch.abs(F.avg_pool2d(mask, kernel, stride=1, padding=kernel // 2) - mask)


def structure_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Weighted BCE + weighted IoU, per image then averaged.

    logits, mask: (B, 1, H, W) (any channel count works channel-wise); mask in {0, 1} (float).
    """
    mask = mask.to(logits.dtype)
    w = boundary_weights(mask)
    bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    wbce = (w * bce).sum(dim=(2, 3)) / w.sum(dim=(2, 3))
    prob = torch.sigmoid(logits)
    inter = (prob * mask * w).sum(dim=(2, 3))
    union = ((prob + mask) * w).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()
