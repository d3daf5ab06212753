"""3D convolutions on maps thinner than their kernel run in float32 under CPU bf16 autocast, when training.

oneDNN's bf16 weight gradient for a 3D convolution is wrong when the input is thinner than the kernel along
depth: measured with torch 2.14.1 on an AMD EPYC with AVX512-BF16, a 3x3x3 kernel (padding 1) on maps of depth 2
gave weight gradients of 1e22 to inf, different at every call, and a 5x5x5 kernel on depths 2 to 4 did the same;
the forward and the input gradient stay right, and depth 1 and 3 or more were right for a 3x3x3 kernel. One such
step sends every weight to NaN. 3D M2SNet meets these maps in its deepest levels (the subtraction units of D54,
the last encoder stages), so ``cpu_bf16`` training in 3D did not learn at all. These convolutions are cheap (the
maps are small), so they run in float32, and everything else keeps bf16.
"""

from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode


def thinner_than_kernel(input: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a 3D input is thinner than the kernel along any axis (depth is the measured case; the other axes,
    measured right, are included because these convolutions cost little in float32 anyway)."""
    return any(size < kernel for size, kernel in zip(input.shape[2:], weight.shape[2:]))


class ThinConv3dInFloat32(TorchFunctionMode):
    """Runs 3D convolutions whose weight gradient is recorded on inputs thinner than the kernel in float32;
    everything else passes through to the autocast around it."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.conv3d:  # also what torch.nn.functional.conv3d and nn.Conv3d call
            input, weight = args[0], args[1] if len(args) > 1 else kwargs["weight"]
            if (input.dim() == 5 and weight.requires_grad and torch.is_grad_enabled()
                    and thinner_than_kernel(input, weight)):
                with torch.autocast("cpu", enabled=False):
                    args = tuple(a.float() if isinstance(a, torch.Tensor) else a for a in args)
                    kwargs = {k: v.float() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
                    return func(*args, **kwargs)
        return func(*args, **kwargs)


def thin_conv3d_in_float32(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """The mode for a forward on ``x`` under CPU bf16 autocast: on for 3D inputs with gradients recorded, a no-op
    context elsewhere (prediction, 2D)."""
    return ThinConv3dInFloat32() if x.dim() == 5 and torch.is_grad_enabled() else contextlib.nullcontext()
