"""Under CPU bf16 autocast, 3D convolutions on maps thinner than their kernel compute their weight gradient in
float32: oneDNN's bf16 weight gradient for them was measured wrong (1e22 to inf) with torch 2.14.1, and one such
step sent every weight of a 3D M2SNet to NaN."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from m2s_nnunet.network.thin_conv3d import ThinConv3dInFloat32, thin_conv3d_in_float32, thinner_than_kernel


def _weight_gradient(depth: int, kernel: int, bf16: bool, route_thin: bool) -> torch.Tensor:
    """The weight gradient of one 3D convolution (padding keeps the size) on a map ``depth`` deep, as M2SNet's
    bf16 forward records it (autocast, with or without the float32 route) or in float32."""
    generator = torch.Generator().manual_seed(depth * 10 + kernel)
    x = torch.randn(2, 16, depth, 6, 5, generator=generator)
    weight = (torch.randn(16, 16, kernel, kernel, kernel, generator=generator) * 0.05).requires_grad_()
    target = torch.randn(2, 16, depth, 6, 5, generator=generator)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast, ThinConv3dInFloat32() if route_thin else contextlib.nullcontext():
        out = F.conv3d(x, weight, padding=kernel // 2)
    (out.float() * target).sum().backward()
    return weight.grad


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_weight_gradients_on_thin_maps_match_float32(depth, kernel):
    """Without the route, depth 2 (kernel 3) and depths 2 to 4 (kernel 5) gave gradients of 1e22 to inf here."""
    reference = _weight_gradient(depth, kernel, bf16=False, route_thin=False)
    routed = _weight_gradient(depth, kernel, bf16=True, route_thin=True)
    error = ((routed - reference).norm() / reference.norm()).item()
    assert error < 0.02, f"depth {depth}, kernel {kernel}: relative error {error:.3g} against float32"


def test_only_thin_convolutions_leave_bf16():
    weight = torch.randn(8, 4, 3, 3, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16), ThinConv3dInFloat32():
        thin = F.conv3d(torch.randn(1, 4, 2, 8, 8), weight, padding=1)
        thick = F.conv3d(torch.randn(1, 4, 8, 8, 8), weight, padding=1)
        pointwise = F.conv3d(torch.randn(1, 4, 1, 8, 8), torch.randn(8, 4, 1, 1, 1, requires_grad=True))
        with torch.no_grad():  # prediction: no weight gradient, nothing to route
            predicting = F.conv3d(torch.randn(1, 4, 2, 8, 8), weight, padding=1)
    assert thin.dtype == torch.float32
    assert (thick.dtype, pointwise.dtype, predicting.dtype) == (torch.bfloat16,) * 3


def test_the_route_is_on_only_for_3d_training_forwards():
    assert isinstance(thin_conv3d_in_float32(torch.zeros(1, 1, 4, 4, 4)), ThinConv3dInFloat32)
    assert isinstance(thin_conv3d_in_float32(torch.zeros(1, 1, 4, 4)), contextlib.nullcontext)
    with torch.no_grad():
        assert isinstance(thin_conv3d_in_float32(torch.zeros(1, 1, 4, 4, 4)), contextlib.nullcontext)


def test_the_route_holds_when_compiled():
    """Dynamo traces the mode into the graph (AOT autograd, the graphs inductor compiles): the compiled weight
    gradient is float32's too. Inductor itself took over 20 minutes on a 3D M2SNet step here, so not this test."""
    conv = torch.nn.Conv3d(16, 16, 3, padding=1)
    x = torch.randn(2, 16, 2, 6, 5, generator=torch.Generator().manual_seed(0))

    def weight_gradient(model) -> torch.Tensor:
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16), ThinConv3dInFloat32():
            model(x).float().square().sum().backward()
        return conv.weight.grad.clone()

    eager = weight_gradient(conv)
    compiled = weight_gradient(torch.compile(conv, backend="aot_eager", fullgraph=True))
    assert compiled.isfinite().all()
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape, kernel, thin", [((2, 8, 8), (3, 3, 3), True), ((8, 8, 2), (3, 3, 3), True),
                                                 ((3, 8, 8), (3, 3, 3), False), ((1, 8, 8), (1, 3, 3), False),
                                                 ((4, 8, 8), (5, 5, 5), True)])
def test_thinner_than_kernel(shape, kernel, thin):
    assert thinner_than_kernel(torch.zeros(1, 1, *shape), torch.zeros(1, 1, *kernel)) is thin
