"""LossNet: the paper's training-free loss network, a frozen ImageNet VGG16 feature-matching loss."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.nn.functional as F
from torch import nn

from m2s_nnunet.cpu_bf16 import cpu_computes_bf16
from m2s_nnunet.envflags import env_flag
from m2s_nnunet.weights import load_pretrained_into, read_state_dict, resolve_vgg16_weights

# VGG16 `features` cut after relu1_2, relu2_2, relu3_3 and relu4_3.
VGG16_BLOCKS = ((0, 4), (4, 9), (9, 16), (16, 23))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# LossNet in bfloat16 on CPUs that compute it natively (AVX512-BF16 / AMX): "auto" (default), "1", "0".
CPU_BF16_ENV = "M2S_NNUNET_LOSSNET_BF16"


def cpu_bf16_wanted() -> bool:
    """Whether LossNet runs under CPU bf16 autocast: ``M2S_NNUNET_LOSSNET_BF16``, or on "auto" whether oneDNN
    computes bf16 natively here (emulated bf16 on other CPUs is slower than fp32)."""
    wanted = env_flag(CPU_BF16_ENV, default=None)
    if wanted is not None:
        return wanted
    return cpu_computes_bf16()


class LossNet(nn.Module):
    """Sum over four VGG16 blocks of MSE(features(prediction), features(target)).

    Generalised to C channels: every channel of ``pred`` (probabilities) and ``target`` (one-hot or region
    masks) is compared on its own, as a grey image repeated to RGB, and the per-channel losses are
    averaged. Maps larger than ``size`` (224, the paper's) on a side are resized down to it, *before* the channel
    repeat and ImageNet normalisation (both linear, so the order changes the cost, not the result). Smaller
    maps are used as they are: the paper resizes its 352 px maps down to 224, and upsampling a 128 px patch
    to 224 would add no information but cost 3x the VGG16 work, more than the network's own step.

    The VGG weights are frozen and the module stays in eval mode; it holds no trainable parameter and
    belongs to the loss, never to the network (so it never reaches a checkpoint).

    Args:
        weights: a VGG16 state-dict file; None resolves ImageNet weights (see ``m2s_nnunet.weights``).
        pretrained: False keeps random VGG weights (only for unit tests of the plumbing: not the paper's loss).
        size: the largest side VGG16 sees (larger maps are resized down per side); None keeps every size.
        cpu_bf16: on CPU tensors, run VGG16 under bfloat16 autocast (the loss stays fp32); None: see
            ``cpu_bf16_wanted``. On CUDA nnU-Net's own fp16 autocast already covers the loss.
    """

    def __init__(self, weights: str | os.PathLike | None = None, pretrained: bool = True,
                 size: int | None = 224, cpu_bf16: bool | None = None) -> None:
        super().__init__()
        from torchvision.models import vgg16

        features = vgg16(weights=None).features[: VGG16_BLOCKS[-1][1]]
        if pretrained:
            found = resolve_vgg16_weights(weights)
            state = {k.removeprefix("features."): v for k, v in read_state_dict(found.path).items()
                     if k.startswith("features.")} or read_state_dict(found.path)
            load_pretrained_into(features, state, source=str(found.path))
        self.blocks = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in VGG16_BLOCKS)
        self.size = size
        self.cpu_bf16 = cpu_bf16_wanted() if cpu_bf16 is None else cpu_bf16
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LossNet:
        """Always eval: VGG16 has no BatchNorm, but dropout-free eval keeps it a fixed function."""
        return super().train(False)

    def input_size(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The map size VGG16 sees for maps of ``shape``: each side capped at ``size``."""
        return shape if self.size is None else tuple(min(s, self.size) for s in shape)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        x = x.reshape(b * c, 1, *x.shape[2:])
        size = self.input_size(tuple(x.shape[2:]))
        if size != tuple(x.shape[2:]):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return (x.expand(-1, 3, -1, -1) - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target: (B, C, H, W) in [0, 1]; returns a scalar."""
        if pred.shape != target.shape:
            raise ValueError(f"LossNet needs equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
        if pred.dim() != 4:
            raise ValueError(f"LossNet works on 2D maps (B, C, H, W), got {pred.dim()}-D input")
        bf16 = self.cpu_bf16 and pred.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
        # nullcontext, not autocast(enabled=False): that would switch off an autocast the caller has on
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            with torch.no_grad():
                target_feats = self._features(self._prepare(target.to(pred.dtype)))
            pred_feats = self._features(self._prepare(pred))
        return sum(F.mse_loss(p.float(), t.float()) for p, t in zip(pred_feats, target_feats))
