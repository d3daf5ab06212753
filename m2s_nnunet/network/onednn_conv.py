"""3D inference convolutions on CPU through oneDNN (mkldnn), whatever the batch size.

PyTorch sends a float32 CPU convolution of batch 1 with a 3x3x3 kernel and a small input to its reference
kernel (``slow_conv3d``) instead of oneDNN; with batch 2 or more, or in bf16, it uses oneDNN. nnU-Net's predictor
runs one patch at a time, so in 3D prediction almost every convolution of M2SNet's subtraction pyramid and
decoder (many small maps) took the reference path: more than half of an eval forward on the Hippocampus plans.
This mode routes them to ``torch.mkldnn_convolution``: the same convolution computed by oneDNN, equal to the
reference path within float rounding. 2D convolutions keep PyTorch's choice: there the reference kernel was
faster (bench/RESULTS.md 6.9).

Used only where no gradient is recorded (prediction and validation), on float32 CPU tensors, in eager mode.
``M2S_NNUNET_CPU_ONEDNN=0`` leaves PyTorch's own choice in 3D too.
"""

from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode

from m2s_nnunet.envflags import env_flag

ONEDNN_ENV = "M2S_NNUNET_CPU_ONEDNN"
_CONVOLUTIONS = (torch.conv3d, torch.nn.functional.conv3d)


def _as_list(value, dims: int) -> list[int]:
    return list(value) if isinstance(value, (tuple, list)) else [int(value)] * dims


class OneDnnConvolutions(TorchFunctionMode):
    """Routes 3D float32 CPU convolutions without autograd to oneDNN; everything else passes through."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _CONVOLUTIONS:
            routed = _onednn_convolution(*args, **kwargs)
            if routed is not None:
                return routed
        return func(*args, **kwargs)


def _onednn_convolution(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """oneDNN's convolution, or None where the call is not one this mode takes (string padding, other dtypes or
    devices, a tensor that needs gradients)."""
    if (isinstance(padding, str) or input.device.type != "cpu" or input.dtype != torch.float32
            or weight.dtype != torch.float32 or input.dim() != 5
            or (torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad))):
        return None
    return torch.mkldnn_convolution(input.contiguous(), weight.contiguous(), bias, _as_list(padding, 3),
                                    _as_list(stride, 3), _as_list(dilation, 3), groups)


def onednn_inference(x: torch.Tensor, wanted: bool = True) -> contextlib.AbstractContextManager:
    """The mode for a forward on ``x`` where it is ``wanted`` and applies (a 3D CPU float32 input, no gradient
    recorded, no CPU autocast on, oneDNN present, not switched off by ``M2S_NNUNET_CPU_ONEDNN=0``); a no-op
    context elsewhere, so that 2D forwards do not pay the mode's Python call per op."""
    if not wanted or torch.compiler.is_compiling():  # inductor picks its own kernels
        return contextlib.nullcontext()
    if (x.dim() == 5 and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")  # the caller's autocast decides the precision then
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and env_flag(ONEDNN_ENV, default=True)):
        return OneDnnConvolutions()
    return contextlib.nullcontext()
