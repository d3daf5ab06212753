"""3D inference convolutions through oneDNN (issue 22): the same convolutions as PyTorch's reference kernel, within
float rounding, taken only in 3D, where no gradient is recorded and the input is float32 on CPU."""

from __future__ import annotations

import pytest
import torch
from fake_plans import build, calibrate_batch_norm, plans_config
from torch import nn
from torch.profiler import ProfilerActivity, profile

from m2s_nnunet.network import onednn_conv
from m2s_nnunet.network.onednn_conv import ONEDNN_ENV, OneDnnConvolutions, onednn_inference

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")


def _kernels(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


def test_a_small_batch_one_3d_convolution_leaves_the_reference_kernel_for_onednn():
    """Batch 1, 3x3x3 kernel, a small map: PyTorch picks its reference kernel, the mode picks oneDNN, and the two
    agree within float rounding (stride, padding and dilation passed through). 2D keeps PyTorch's choice."""
    conv = nn.Conv3d(16, 24, 3, stride=2, padding=2, dilation=2).eval()
    x = torch.randn(1, 16, 9, 9, 9, generator=torch.Generator().manual_seed(0))
    conv2d, x2d = nn.Conv2d(16, 24, 3, padding=1).eval(), torch.randn(1, 16, 9, 9)
    with torch.no_grad():
        reference = conv(x)
        assert "aten::mkldnn_convolution" not in _kernels(lambda: conv(x))  # the premise: the slow path
        with OneDnnConvolutions():
            routed = conv(x)
            assert "aten::mkldnn_convolution" in _kernels(lambda: conv(x))
            assert "aten::mkldnn_convolution" not in _kernels(lambda: conv2d(x2d))
    assert routed.shape == reference.shape
    torch.testing.assert_close(routed, reference, rtol=1e-4, atol=1e-5)


def test_the_mode_applies_only_to_float32_cpu_inference(monkeypatch):
    """Gradients, autocast, other dtypes, string padding and the off switch keep PyTorch's own choice."""
    x = torch.randn(1, 4, 8, 8, 8)
    with torch.no_grad():
        assert isinstance(onednn_inference(x), OneDnnConvolutions)
        assert not isinstance(onednn_inference(x.double()), OneDnnConvolutions)
        assert not isinstance(onednn_inference(x[:, :, 0]), OneDnnConvolutions)  # 2D: no mode, no overhead
        assert not isinstance(onednn_inference(x, wanted=False), OneDnnConvolutions)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not isinstance(onednn_inference(x), OneDnnConvolutions)
        monkeypatch.setenv(ONEDNN_ENV, "0")
        assert not isinstance(onednn_inference(x), OneDnnConvolutions)
    monkeypatch.delenv(ONEDNN_ENV)
    assert not isinstance(onednn_inference(x), OneDnnConvolutions)  # grad mode: training is untouched
    weight = torch.randn(3, 4, 3, 3, 3, requires_grad=True)
    assert onednn_conv._onednn_convolution(x, weight) is None  # a gradient is wanted
    with torch.no_grad():
        assert onednn_conv._onednn_convolution(x, weight, padding="same") is None
        assert onednn_conv._onednn_convolution(x, weight) is not None


def test_m2snet_predicts_the_same_with_and_without_onednn(monkeypatch):
    """A whole 3D plans-encoder M2SNet in eval mode, batch 1 as nnU-Net's predictor runs it: logits within float
    rounding of PyTorch's own kernels and the same labels, with no reference kernel left; off by its attribute."""
    config = plans_config("3d_fullres")
    channels = 1
    torch.manual_seed(0)
    net = build(config, channels, 3)
    calibrate_batch_norm(net, channels, config["patch_size"])
    net.eval()
    x = torch.randn(1, channels, *config["patch_size"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        monkeypatch.setenv(ONEDNN_ENV, "0")
        reference = net(x)
        assert any("slow_conv" in k for k in _kernels(lambda: net(x)))  # the premise: reference kernels
        monkeypatch.setenv(ONEDNN_ENV, "1")
        routed = net(x)
        assert not any("slow_conv" in k for k in _kernels(lambda: net(x)))
        net.cpu_onednn = False  # what speed_table's "PyTorch's kernels" rows set
        assert torch.equal(net(x), reference)
    torch.testing.assert_close(routed, reference, rtol=1e-3, atol=1e-4)
    assert (routed.argmax(1) == reference.argmax(1)).float().mean() >= 0.999
