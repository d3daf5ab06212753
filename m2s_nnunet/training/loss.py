"""nnU-Net's segmentation loss plus lambda x LossNet on the predicted probabilities."""

from __future__ import annotations

import torch
from torch import nn

from m2s_nnunet.losses import LossNet
from m2s_nnunet.settings import LOSSNET_SLICES_3D


class SegmentationPlusLossNet(nn.Module):
    """``seg_loss(output, target) + weight * LossNet(probabilities, one-hot target)``.

    ``seg_loss`` is nnU-Net's own loss (Dice+CE, or Dice+BCE for regions), possibly wrapped for deep
    supervision; LossNet only sees the full-resolution output. Softmax probabilities of the foreground
    classes are compared with the one-hot target; with regions, sigmoid probabilities with the region masks.
    Pixels with the ignore label are zeroed in both maps. VGG16 is 2D: for 3D patches LossNet sees up to
    ``max_slices`` evenly spaced slices along the first (through-plane) axis (``M2SNetSettings.lossnet_slices``).
    The mean of each term over the current epoch is kept in ``running`` so the trainer can log it.
    """

    def __init__(self, seg_loss: nn.Module, lossnet: LossNet | None, weight: float = 0.1,
                 regions: bool = False, ignore_label: int | None = None, max_slices: int = LOSSNET_SLICES_3D) -> None:
        super().__init__()
        self.max_slices = max_slices
        self.seg_loss = seg_loss
        self.lossnet = lossnet
        self.weight = weight
        self.regions = regions
        self.ignore_label = ignore_label
        self.running: dict[str, list[float]] = {"seg": [], "lossnet": []}

    def _maps(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = None
        if self.regions:
            probs = torch.sigmoid(logits)
            if self.ignore_label is not None:  # nnU-Net appends the ignore mask as the last target channel
                mask = 1 - target[:, -1:].float()
                target = target[:, :-1]
            onehot = target.float()
        else:
            probs = torch.softmax(logits, 1)[:, 1:]
            labels = target[:, 0].long()
            if self.ignore_label is not None:
                mask = (labels != self.ignore_label)[:, None].float()
                labels = torch.where(labels == self.ignore_label, torch.zeros_like(labels), labels)
            classes = torch.arange(1, logits.shape[1], device=labels.device).view(1, -1, *([1] * (labels.dim() - 1)))
            onehot = (labels[:, None] == classes).to(probs.dtype)
        if mask is not None:
            probs, onehot = probs * mask, onehot * mask
        return self._as_2d(probs), self._as_2d(onehot)

    def _as_2d(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> (B * k, C, H, W) with k <= max_slices evenly spaced slices; 2D maps pass through."""
        if x.dim() == 4:
            return x
        depth = x.shape[2]
        index = torch.linspace(0, depth - 1, min(depth, self.max_slices), device=x.device).round().long()
        x = x.index_select(2, index).transpose(1, 2)
        return x.reshape(-1, x.shape[2], *x.shape[3:])

    def forward(self, output: torch.Tensor | list[torch.Tensor],
                target: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        seg = self.seg_loss(output, target)
        self.running["seg"].append(float(seg.detach()))
        if self.lossnet is None or self.weight == 0:
            return seg
        full_out = output[0] if isinstance(output, (list, tuple)) else output
        full_tgt = target[0] if isinstance(target, (list, tuple)) else target
        perceptual = self.lossnet(*self._maps(full_out, full_tgt))
        self.running["lossnet"].append(float(perceptual.detach()))
        return seg + self.weight * perceptual

    def pop_running_means(self) -> dict[str, float]:
        """Mean of each term since the last call (for the training log), then reset."""
        means = {k: sum(v) / len(v) for k, v in self.running.items() if v}
        self.running = {k: [] for k in self.running}
        return means
