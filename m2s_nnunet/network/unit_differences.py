"""The differences a subtraction unit sums before its conv, with a backward that keeps one byte per value.

``|a - b| + |relu(n3a * w3 + c3) - relu(n3b * w3 + c3)| + |relu(n5a * w5 + c5) - relu(n5b * w5 + c5)|``, where
``n..`` are the one-channel normalised box responses of the fixed filters and ``w``, ``c`` their per-channel
affine weight and bias. Autograd would keep seven full-width float tensors per unit for its backward (the three
differences and the four ReLU outputs): a third of the 3D recipe's saved activations on Hippocampus plans. Every
gradient of this sum is the incoming gradient times -1, 0 or 1 (the signs of the differences, gated by the
ReLUs), so this function keeps those factors as int8 instead: 5 bytes per value in place of 28 in float32.
The forward runs the same operations as the plain expression, so its output is identical; gradients equal
autograd's up to the order of the sums over channels and positions.
"""

from __future__ import annotations

import torch


def _affine_relu(n: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.relu_(n * weight + bias)  # what the filters' norm affine + ReLU(inplace=True) compute


class UnitDifferences(torch.autograd.Function):
    """Autograd function of the sum above; call it through ``unit_differences``."""

    @staticmethod
    def forward(ctx, a, b, n3a, n3b, n5a, n5b, w3, c3, w5, c5):  # noqa: D102 (autograd's signature)
        direct = a - b
        out = torch.abs(direct)
        factors = [torch.sign(direct).to(torch.int8)]
        for na, nb, w, c in ((n3a, n3b, w3, c3), (n5a, n5b, w5, c5)):
            ra, rb = _affine_relu(na, w, c), _affine_relu(nb, w, c)
            difference = ra - rb
            out = out + torch.abs(difference)
            sign = torch.sign(difference).to(torch.int8)
            # d out / d (na * w + c) and d out / d (nb * w + c): the sign where the ReLU passed, else 0
            factors += [sign * (ra > 0), -sign * (rb > 0)]
        ctx.save_for_backward(*factors, n3a, n3b, n5a, n5b, w3, w5)
        ctx.dtypes = [t.dtype for t in (a, b, n3a, n3b, n5a, n5b, w3, c3, w5, c5)]
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        s, f3a, f3b, f5a, f5b, n3a, n3b, n5a, n5b, w3, w5 = ctx.saved_tensors
        grad_a = grad * s
        grads = [grad_a, -grad_a]
        per_channel = [d for d in range(grad.dim()) if d != 1]
        affine = []
        for fa, fb, na, nb, w in ((f3a, f3b, n3a, n3b, w3), (f5a, f5b, n5a, n5b, w5)):
            ga, gb = grad * fa, grad * fb  # gradients of na * w + c and nb * w + c
            grads += [(ga * w).sum(1, keepdim=True), (gb * w).sum(1, keepdim=True)]
            affine += [(ga * na + gb * nb).sum(per_channel, keepdim=True), (ga + gb).sum(per_channel, keepdim=True)]
        grads += affine  # after a, b, n3a, n3b, n5a, n5b: w3, c3, w5, c5
        return tuple(g.to(dtype) for g, dtype in zip(grads, ctx.dtypes))


def unit_differences(a: torch.Tensor, b: torch.Tensor, responses_a: tuple, responses_b: tuple) -> torch.Tensor:
    """The sum above from ``a``, ``b`` (same shape) and, for each, the ``(n, weight, bias)`` of the 3 and the 5
    filter (``FixedAllOnesFilter.affine_parts``)."""
    (n3a, w3, c3), (n5a, w5, c5) = responses_a
    (n3b, _, _), (n5b, _, _) = responses_b
    return UnitDifferences.apply(a, b, n3a, n3b, n5a, n5b, w3, c3, w5, c5)
