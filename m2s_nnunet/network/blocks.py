"""Building blocks of M2SNet's decoder: conv units, the fixed multi-scale filters and the subtraction units.

Blocks receive the spatial dimension (2 or 3) and take their conv/norm/nonlinearity/pool ops from
``dynamic_network_architectures``' helpers, as nnU-Net's own networks do, so the same code serves a 2D and a
3D network and picks exactly the ops nnU-Net would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import (
    get_default_network_config,
    get_matching_batchnorm,
    get_matching_instancenorm,
    get_matching_pool_op,
)
from torch import nn

from m2s_nnunet.network.unit_differences import unit_differences

# the decoder's norm choices: BatchNorm (the paper's) and InstanceNorm (nnU-Net's for small 3D batches, where
# batch statistics are noisy), as ``get_default_network_config`` names them
NORM_TYPES = {"batch": "bn", "instance": "in"}
# norms the fixed filters compute on one channel (exact types: a SyncBatchNorm keeps the plain path)
_ONE_CHANNEL_NORMS = tuple(get(dimension=d) for get in (get_matching_batchnorm, get_matching_instancenorm)
                           for d in (2, 3))


def _check_dim(dim: int) -> None:
    if dim not in (2, 3):
        raise ValueError(f"spatial dimension must be 2 or 3, got {dim}")


def network_config(dim: int = 2, norm: str = "batch") -> dict:
    """nnU-Net's conv/norm/ReLU configuration for ``dim`` and a norm named "batch" or "instance"."""
    _check_dim(dim)
    if norm not in NORM_TYPES:
        raise ValueError(f"norm must be one of {sorted(NORM_TYPES)}, got '{norm}'")
    return get_default_network_config(dim, nonlin="ReLU", norm_type=NORM_TYPES[norm])


def make_norm(channels: int, dim: int = 2, norm: str = "batch") -> nn.Module:
    """BatchNorm (the paper's) with default arguments, or affine InstanceNorm, for ``dim`` spatial dimensions."""
    norm_op = network_config(dim, norm)["norm_op"]
    return norm_op(channels, affine=True) if norm == "instance" else norm_op(channels)


def resize_to(x: torch.Tensor, reference: torch.Tensor | tuple[int, ...]) -> torch.Tensor:
    """Resize ``x`` to the spatial size of ``reference`` (a tensor or a size tuple); no-op if it matches.

    Bilinear (trilinear in 3D) with ``align_corners=False``, so any size works, not only multiples of 32.
    """
    size = tuple(reference.shape[2:]) if isinstance(reference, torch.Tensor) else tuple(reference)
    if tuple(x.shape[2:]) == size:
        return x
    mode = "bilinear" if x.dim() == 4 else "trilinear"
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def sum_over_channels(x: torch.Tensor) -> torch.Tensor:
    """``x.sum(dim=1, keepdim=True)``, the input of the fixed filters' fast path. Compiled in half precision it is
    written as a float32 sum rounded to ``x``'s dtype, the arithmetic inductor generates for a half-precision sum
    anyway: with torch 2.14, inductor's CPU code for a bf16 channel sum stored to two buffers does not compile
    (3D M2SNet under bf16 autocast). Eager code is unchanged."""
    if torch.compiler.is_compiling() and x.dtype in (torch.bfloat16, torch.float16):
        return x.sum(dim=1, keepdim=True, dtype=torch.float32).to(x.dtype)
    return x.sum(dim=1, keepdim=True)


def _records_gradient(*tensors: torch.Tensor) -> bool:
    """Whether autograd records a graph through any of ``tensors`` (training, not prediction)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class ConvNormAct(nn.Sequential):
    """conv(k=3, padding 1) -> norm -> ReLU: the unit every decoder stage of M2SNet is made of."""

    def __init__(self, in_channels: int, out_channels: int, dim: int = 2, kernel_size: int = 3,
                 norm: str = "batch") -> None:
        config = network_config(dim, norm)
        super().__init__(
            config["conv_op"](in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            make_norm(out_channels, dim, norm),
            config["nonlin"](**config["nonlin_kwargs"]),
        )


class FixedAllOnesFilter(nn.Module):
    """A k x k (x k) convolution whose every weight is 1 (C -> C channels, zero bias, 'same' padding),
    followed by a trainable BatchNorm + ReLU. These are the paper's fixed multi-scale filters.

    The all-ones kernel is a non-persistent buffer: it moves with ``.to()``, is never seen by an optimizer
    and stays out of checkpoints (it is a constant). Because all weights are 1, every output channel equals the
    sum over input channels of a box filter, so the fast path computes *one* channel-sum box filter instead of
    a dense C x C x k x k convolution (``fast_path=False`` runs the plain convolution; both agree to float
    tolerance). The fast path also normalises that one channel: C identical channels have identical
    BatchNorm/InstanceNorm statistics, so only the per-channel affine step needs C channels. This halves the
    element-wise work of a subtraction unit and leaves results, running statistics and checkpoints as the
    plain path has them.
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
        config = network_config(dim, norm)
        self.act = config["nonlin"](**config["nonlin_kwargs"])
        # the mean over each window; no state, so checkpoints are unchanged
        self.box_pool = get_matching_pool_op(dimension=dim, pool_type="avg")(kernel_size, stride=1)

    def box_filter(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-normalisation response of the all-ones convolution, shape (B, C, *spatial)."""
        if not self.fast_path:
            conv = F.conv3d if self.dim == 3 else F.conv2d  # functional: the all-ones weight is a buffer
            return conv(x, self.weight.to(x.dtype), padding=self.kernel_size // 2)
        box = self.channel_sum_box(x)
        return box.expand(-1, self.channels, *box.shape[2:])

    def channel_sum_box(self, x: torch.Tensor) -> torch.Tensor:
        """The one distinct channel of the all-ones convolution's response, shape (B, 1, *spatial)."""
        return self.box_of_channel_sum(sum_over_channels(x))

    def box_of_channel_sum(self, channel_sum: torch.Tensor) -> torch.Tensor:
        """``channel_sum_box`` from the input's channel sum (B, 1, *spatial), which filters can share."""
        k = self.kernel_size
        if torch.compiler.is_compiling() and torch.is_grad_enabled():
            return self._box_sum_by_convolution(channel_sum)
        # Zero-pad explicitly (avg_pool3d refuses inputs smaller than its kernel even when padded): the mean
        # over each k^dim window times k^dim is the zero-padded box sum the all-ones convolution computes.
        padded = F.pad(channel_sum, [k // 2] * (2 * self.dim))
        return self.box_pool(padded) * float(k**self.dim)

    def _box_sum_by_convolution(self, channel_sum: torch.Tensor) -> torch.Tensor:
        """The same box sums as one 1 -> 1 channel all-ones convolution, for compiled training only.

        Inductor's CPU code generation spends minutes simplifying the index expressions of a 3D average pool's
        backward (37 s for a 3x3x3 window, 184 s for 5x5x5, measured with torch 2.14 on 2 cores), so a compiled 3D
        training step took over 20 minutes to compile; a convolution compiles to a library call in under a second.
        Float32 with autocast off, and the dtype the pooling returns (CPU autocast runs ``avg_pool3d`` in float32):
        equal to the pooling path within float rounding. Eager code and prediction keep the pooling.
        """
        k = self.kernel_size
        device = channel_sum.device.type
        pooled_in_float32 = self.dim == 3 and device == "cpu" and torch.is_autocast_enabled("cpu")
        dtype = torch.float32 if pooled_in_float32 else channel_sum.dtype
        compute = torch.promote_types(channel_sum.dtype, torch.float32)
        conv = F.conv3d if self.dim == 3 else F.conv2d
        ones = self.weight[:1, :1].to(compute)  # one input and one output channel of the all-ones kernel
        with torch.autocast(device, enabled=False):
            return conv(channel_sum.to(compute), ones, padding=k // 2).to(dtype)

    @property
    def computes_one_channel(self) -> bool:
        """Whether ``forward`` takes the one-channel fast path (box filter and norm on the channel sum)."""
        return self.fast_path and type(self.norm) in _ONE_CHANNEL_NORMS and self.norm.weight is not None

    @property
    def normalises_each_sample(self) -> bool:
        """Whether the norm treats each sample of a batch on its own (InstanceNorm without running statistics, or
        a BatchNorm in eval mode with them), so that samples stacked in one batch get what they get alone."""
        norm = self.norm
        if isinstance(norm, nn.modules.instancenorm._InstanceNorm):
            return not norm.track_running_stats
        return isinstance(norm, nn.modules.batchnorm._BatchNorm) and not norm.training and norm.running_mean is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.computes_one_channel:
            return self.from_channel_sum(sum_over_channels(x))
        # plain path; also any other norm module, e.g. the SyncBatchNorm nnU-Net swaps in for multi-GPU training
        return self.act(self.norm(self.box_filter(x)))

    def from_channel_sum(self, channel_sum: torch.Tensor) -> torch.Tensor:
        """The fast path's output from the input's channel sum; only where ``computes_one_channel``."""
        return self.act(self._normalise_one_channel(self.box_of_channel_sum(channel_sum)))

    def _normalise_one_channel(self, box: torch.Tensor) -> torch.Tensor:
        """``self.norm`` applied to ``box`` broadcast to C channels, computed on the one channel it has."""
        norm = self.norm
        shape = (1, -1) + (1,) * self.dim
        if self.normalises_with_statistics_of_its_input:
            normalised, weight, bias = self._normalised_and_affine(box)
            return normalised * weight + bias
        if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or (
                not norm.training and norm.running_mean is None):
            return norm(box.expand(-1, self.channels, *box.shape[2:]))
        # running statistics: one affine map per channel
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        shift = norm.bias - norm.running_mean * scale
        return box * scale.to(box.dtype).view(shape) + shift.to(box.dtype).view(shape)

    @property
    def normalises_with_statistics_of_its_input(self) -> bool:
        """Whether the norm normalises with its input's statistics, then scales and shifts each channel
        (InstanceNorm without running statistics, BatchNorm in training): ``affine_parts`` applies."""
        norm = self.norm
        if isinstance(norm, nn.modules.instancenorm._InstanceNorm):
            return not norm.track_running_stats
        return isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.training

    def affine_parts(self, channel_sum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(n, weight, bias)`` with ``from_channel_sum(channel_sum) == relu(n * weight + bias)``: the one-channel
        normalised box response and the per-channel affine parameters shaped to broadcast against it. Only where
        ``computes_one_channel`` and ``normalises_with_statistics_of_its_input`` (a BatchNorm's running
        statistics are updated here, as ``from_channel_sum`` updates them)."""
        return self._normalised_and_affine(self.box_of_channel_sum(channel_sum))

    def _normalised_and_affine(self, box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        norm = self.norm
        shape = (1, -1) + (1,) * self.dim
        weight, bias = norm.weight.to(box.dtype).view(shape), norm.bias.to(box.dtype).view(shape)
        if isinstance(norm, nn.modules.instancenorm._InstanceNorm):
            return F.instance_norm(box, eps=norm.eps), weight, bias
        momentum = norm.momentum if norm.momentum is not None else 0.0
        running_mean = running_var = None
        if norm.track_running_stats:  # as nn.BatchNorm does; every channel's statistics are channel 0's
            norm.num_batches_tracked.add_(1)
            if norm.momentum is None:
                momentum = 1.0 / float(norm.num_batches_tracked)
            # copies: batch_norm keeps its running-statistics arguments for backward, so they must not change
            running_mean, running_var = norm.running_mean[:1].clone(), norm.running_var[:1].clone()
        normalised = F.batch_norm(box, running_mean, running_var, None, None, True, momentum, norm.eps)
        if running_mean is not None:
            with torch.no_grad():
                norm.running_mean.copy_(running_mean.expand_as(norm.running_mean))
                norm.running_var.copy_(running_var.expand_as(norm.running_var))
        return normalised, weight, bias


class MultiScaleFilters(nn.Module):
    """The shared pair of fixed filters (3 and 5) with their trainable norms, used by every MSSU."""

    def __init__(self, channels: int, dim: int = 2, fast_path: bool = True, norm: str = "batch") -> None:
        super().__init__()
        self.f3 = FixedAllOnesFilter(channels, 3, dim, fast_path, norm)
        self.f5 = FixedAllOnesFilter(channels, 5, dim, fast_path, norm)

    def responses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F3(x), F5(x)). On the fast path both start from one channel sum of ``x``: the same operations on
        the same tensor as two separate calls, so the result is identical, with one reduction instead of two.
        That path calls ``from_channel_sum``, not the filters' ``forward``: their forward hooks do not fire."""
        if self.f3.computes_one_channel and self.f5.computes_one_channel:
            total = sum_over_channels(x)
            return self.f3.from_channel_sum(total), self.f5.from_channel_sum(total)
        return self.f3(x), self.f5(x)

    @property
    def gives_affine_parts(self) -> bool:
        """Whether ``affine_parts`` applies: both filters on the one-channel path, with an input-statistics norm
        followed by a ReLU."""
        return all(f.computes_one_channel and f.normalises_with_statistics_of_its_input and type(f.act) is nn.ReLU
                   for f in (self.f3, self.f5))

    def affine_parts(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], ...]:
        """``(f3.affine_parts, f5.affine_parts)`` of ``x``'s channel sum, in the order ``responses`` runs them."""
        total = sum_over_channels(x)
        return self.f3.affine_parts(total), self.f5.affine_parts(total)

    def pair_responses(self, a: torch.Tensor, b: torch.Tensor
                       ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """``(responses(a), responses(b))`` for two inputs of one shape. Where no gradient is recorded and each
        sample is normalised on its own (InstanceNorm, or BatchNorm with running statistics in eval mode), the
        two channel sums go through the filters as one batch: half the box filters, norms and activations of
        two calls, with the same per-sample operations, so the same values. Training keeps two calls: there a
        BatchNorm's batch statistics would mix ``a`` and ``b``, and gradients would sum in another order."""
        if a.shape == b.shape and not _records_gradient(a, b) and all(
                f.computes_one_channel and f.normalises_each_sample for f in (self.f3, self.f5)):
            channel_sums = torch.cat([sum_over_channels(a), sum_over_channels(b)])
            n = a.shape[0]
            r3, r5 = self.f3.from_channel_sum(channel_sums), self.f5.from_channel_sum(channel_sums)
            return (r3[:n], r5[:n]), (r3[n:], r5[n:])
        return self.responses(a), self.responses(b)


class MultiScaleSubtractionUnit(nn.Module):
    """MSSU(A, B) = conv(|a - B| + |F3(a) - F3(B)| + |F5(a) - F5(B)|) with a = A resized to B.

    Pixel-level (identity), 3x3 and 5x5 structure-level differences in one unit. The fixed filters are
    shared by all ten units of the pyramid, so they are passed to ``forward`` instead of being owned here.
    In training the differences keep int8 gradient factors for backward (``unit_differences``; the same output,
    about a fifth of autograd's saved bytes); ``compact_backward = False`` gives autograd's backward.
    """

    def __init__(self, channels: int, dim: int = 2, norm: str = "batch") -> None:
        super().__init__()
        self.conv = ConvNormAct(channels, channels, dim, norm=norm)
        # training: int8 gradient factors for backward instead of seven float maps (unit_differences.py)
        self.compact_backward = True

    def forward(self, a: torch.Tensor, b: torch.Tensor, filters: MultiScaleFilters) -> torch.Tensor:
        a = resize_to(a, b)
        if self.compact_backward and _records_gradient(a, b) and filters.gives_affine_parts:
            diff = unit_differences(a, b, filters.affine_parts(a), filters.affine_parts(b))
        else:
            (a3, a5), (b3, b5) = filters.pair_responses(a, b)
            diff = torch.abs(a - b) + torch.abs(a3 - b3) + torch.abs(a5 - b5)
        return self.conv(diff)


def set_compact_backward(net: nn.Module, enabled: bool) -> None:
    """Switch the compact backward of every subtraction unit of ``net`` on or off (off: autograd's, as 0.9.0 trained;
    the planner's memory model measures that one, so plans stay what earlier versions planned)."""
    for module in net.modules():
        if isinstance(module, MultiScaleSubtractionUnit):
            module.compact_backward = enabled
