"""Building blocks of M2SNet's decoder: conv units, the fixed multi-scale filters and the subtraction units.

Blocks receive the spatial dimension (2 or 3) and pick their conv/norm/pool ops from it, the way
``dynamic_network_architectures`` does, so the same code serves a 2D and a 3D network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {
    "batch": {2: nn.BatchNorm2d, 3: nn.BatchNorm3d},
    # nnU-Net's choice for small 3D batches, where batch statistics are noisy
    "instance": {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d},
}
_AVG_POOL = {2: F.avg_pool2d, 3: F.avg_pool3d}
_CONV_FN = {2: F.conv2d, 3: F.conv3d}


def _check_dim(dim: int) -> None:
    if dim not in (2, 3):
        raise ValueError(f"spatial dimension must be 2 or 3, got {dim}")


def make_norm(channels: int, dim: int = 2, norm: str = "batch") -> nn.Module:
    """BatchNorm (the paper's) or affine InstanceNorm, for ``dim`` spatial dimensions."""
    if norm not in _NORM:
        raise ValueError(f"norm must be one of {sorted(_NORM)}, got '{norm}'")
    return _NORM[norm][dim](channels, affine=True) if norm == "instance" else _NORM[norm][dim](channels)


def resize_to(x: torch.Tensor, reference: torch.Tensor | tuple[int, ...]) -> torch.Tensor:
    """Resize ``x`` to the spatial size of ``reference`` (a tensor or a size tuple); no-op if it matches.

    Bilinear (trilinear in 3D) with ``align_corners=False``, so any size works, not only multiples of 32.
    """
    size = tuple(reference.shape[2:]) if isinstance(reference, torch.Tensor) else tuple(reference)
    if tuple(x.shape[2:]) == size:
        return x
    mode = "bilinear" if x.dim() == 4 else "trilinear"
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


class ConvNormAct(nn.Sequential):
    """conv(k=3, padding 1) -> BatchNorm -> ReLU: the unit every decoder stage of M2SNet is made of."""

    def __init__(self, in_channels: int, out_channels: int, dim: int = 2, kernel_size: int = 3,
                 norm: str = "batch") -> None:
        _check_dim(dim)
        super().__init__(
            _CONV[dim](in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            make_norm(out_channels, dim, norm),
            nn.ReLU(inplace=True),
        )


class FixedAllOnesFilter(nn.Module):
    """A k x k (x k) convolution whose every weight is 1 (C -> C channels, zero bias, 'same' padding),
    followed by a trainable BatchNorm + ReLU. These are the paper's fixed multi-scale filters.

    The all-ones kernel is a non-persistent buffer: it moves with ``.to()``, is never seen by an optimizer
    and stays out of checkpoints (it is a constant). Because all weights are 1, every output channel equals the
    sum over input channels of a box filter, so the fast path computes *one* channel-sum box filter and
    broadcasts it, instead of a dense C x C x k x k convolution (``fast_path=False`` runs the plain
    convolution; both agree to float tolerance).
    """

    def __init__(self, channels: int, kernel_size: int, dim: int = 2, fast_path: bool = True,
                 norm: str = "batch") -> None:
        super().__init__()
        _check_dim(dim)
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the size, got {kernel_size}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.dim = dim
        self.fast_path = fast_path
        self.register_buffer("weight", torch.ones((channels, channels) + (kernel_size,) * dim), persistent=False)
        self.norm = make_norm(channels, dim, norm)
        self.act = nn.ReLU(inplace=True)

    def box_filter(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-normalisation response of the all-ones convolution, shape (B, C, *spatial)."""
        k = self.kernel_size
        if not self.fast_path:
            return _CONV_FN[self.dim](x, self.weight.to(x.dtype), padding=k // 2)
        # Zero-pad explicitly (avg_pool3d refuses inputs smaller than its kernel even when padded): the mean
        # over each k^dim window times k^dim is the zero-padded box sum the all-ones convolution computes.
        channel_sum = F.pad(x.sum(dim=1, keepdim=True), [k // 2] * (2 * self.dim))
        box = _AVG_POOL[self.dim](channel_sum, k, stride=1)
        box = box * float(k**self.dim)
        return box.expand(-1, self.channels, *box.shape[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.box_filter(x)))


class MultiScaleFilters(nn.Module):
    """The shared pair of fixed filters (3 and 5) with their trainable norms, used by every MSSU."""

    def __init__(self, channels: int, dim: int = 2, fast_path: bool = True, norm: str = "batch") -> None:
        super().__init__()
        self.f3 = FixedAllOnesFilter(channels, 3, dim, fast_path, norm)
        self.f5 = FixedAllOnesFilter(channels, 5, dim, fast_path, norm)


class MultiScaleSubtractionUnit(nn.Module):
    """MSSU(A, B) = conv(|a - B| + |F3(a) - F3(B)| + |F5(a) - F5(B)|) with a = A resized to B.

    Pixel-level (identity), 3x3 and 5x5 structure-level differences in one unit. The fixed filters are
    shared by all ten units of the pyramid, so they are passed to ``forward`` instead of being owned here.
    """

    def __init__(self, channels: int, dim: int = 2, norm: str = "batch") -> None:
        super().__init__()
        self.conv = ConvNormAct(channels, channels, dim, norm=norm)

    def forward(self, a: torch.Tensor, b: torch.Tensor, filters: MultiScaleFilters) -> torch.Tensor:
        a = resize_to(a, b)
        f3, f5 = filters.f3, filters.f5
        diff = torch.abs(a - b) + torch.abs(f3(a) - f3(b)) + torch.abs(f5(a) - f5(b))
        return self.conv(diff)
