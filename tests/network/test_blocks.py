"""Building blocks: the fixed all-ones filters (fast path and plain convolution) and the multi-scale filters."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from m2s_nnunet.network.blocks import (
    FixedAllOnesFilter,
    MultiScaleFilters,
    MultiScaleSubtractionUnit,
    resize_to,
)


@pytest.mark.parametrize("dim,kernel", [(2, 3), (2, 5), (3, 3), (3, 5)])
def test_fast_path_equals_plain_convolution(dim, kernel):
    torch.manual_seed(0)
    fast = FixedAllOnesFilter(16, kernel, dim, fast_path=True).double()
    plain = FixedAllOnesFilter(16, kernel, dim, fast_path=False).double()
    x = torch.randn(2, 16, *([9] * dim), dtype=torch.float64)
    torch.testing.assert_close(fast.box_filter(x), plain.box_filter(x), rtol=1e-10, atol=1e-10)
    plain.load_state_dict(fast.state_dict())
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-10, atol=1e-10)


def test_multi_scale_filters_3d_shapes():
    filters = MultiScaleFilters(8, dim=3)
    x = torch.randn(1, 8, 6, 10, 12)
    assert filters.f3(x).shape == x.shape and filters.f5(x).shape == x.shape


@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("dim", [2, 3])
def test_one_channel_normalisation_matches_the_plain_path(norm, dim):
    """The fast path normalises one channel: outputs, gradients and running statistics equal the plain path's."""
    torch.manual_seed(0)
    fast = FixedAllOnesFilter(8, 3, dim, fast_path=True, norm=norm).double()
    plain = FixedAllOnesFilter(8, 3, dim, fast_path=False, norm=norm).double()
    with torch.no_grad():  # distinct per-channel affine parameters, so a mix-up of channels would show
        fast.norm.weight.copy_(torch.linspace(0.5, 2.0, 8, dtype=torch.float64))
        fast.norm.bias.copy_(torch.linspace(-1.0, 1.0, 8, dtype=torch.float64))
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(3, 8, *([7] * dim), dtype=torch.float64)
    for _ in range(2):  # two steps: the running statistics' update is compounded
        x_fast, x_plain = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_fast, out_plain = fast(x_fast), plain(x_plain)
        torch.testing.assert_close(out_fast, out_plain, rtol=1e-10, atol=1e-10)
        grad = torch.randn_like(out_fast)
        out_fast.backward(grad)
        out_plain.backward(grad)
        torch.testing.assert_close(x_fast.grad, x_plain.grad, rtol=1e-9, atol=1e-9)
        for name in ("weight", "bias"):
            torch.testing.assert_close(getattr(fast.norm, name).grad, getattr(plain.norm, name).grad,
                                       rtol=1e-9, atol=1e-9)
        x = x * 1.5 + 0.3
    for key, value in plain.state_dict().items():  # running mean/var and num_batches_tracked (BatchNorm)
        torch.testing.assert_close(fast.state_dict()[key], value, rtol=1e-12, atol=1e-12)
    fast.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-10, atol=1e-10)


def test_other_norm_modules_keep_the_plain_path():
    """A norm the one-channel path does not know (nnU-Net swaps in SyncBatchNorm for DDP) sees C channels."""
    class OtherBatchNorm(nn.BatchNorm2d):  # like SyncBatchNorm: a BatchNorm, but not the type the fast path knows
        pass

    fixed = FixedAllOnesFilter(4, 3, 2)
    seen = []
    fixed.norm = OtherBatchNorm(4)
    fixed.norm.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    fixed(torch.randn(2, 4, 8, 8))
    assert seen == [torch.Size([2, 4, 8, 8])]


class _CountSums(TorchDispatchMode):
    """Counts the channel reductions (``aten.sum`` over dims) run inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.sums = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.sums += func is torch.ops.aten.sum.dim_IntList
        return func(*args, **(kwargs or {}))


def _separate_filter_calls(unit: MultiScaleSubtractionUnit, a: torch.Tensor, b: torch.Tensor,
                           filters: MultiScaleFilters) -> torch.Tensor:
    """The unit as 0.9.0 computed it: each fixed filter called on each input, one channel sum per call."""
    a = resize_to(a, b)
    f3, f5 = filters.f3, filters.f5
    return unit.conv(torch.abs(a - b) + torch.abs(f3(a) - f3(b)) + torch.abs(f5(a) - f5(b)))


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("dim", [2, 3])
def test_subtraction_unit_shares_one_channel_sum_per_input_exactly(norm, dim, compact):
    """F3 and F5 of one input start from one channel sum (2 reductions per unit instead of 4) and the unit's
    outputs and running statistics are bit-identical to separate filter calls. Gradients too with autograd's
    backward of the unit, in one unit (in the whole network, where tensors feed several units, autograd may add
    their parts in another order); the compact backward sums over channels and positions in its own order."""
    torch.manual_seed(0)
    filters = MultiScaleFilters(8, dim, norm=norm)
    unit = MultiScaleSubtractionUnit(8, dim, norm=norm)
    unit.compact_backward = compact
    same_gradient = (lambda x, y: torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)) if compact else (
        lambda x, y: torch.equal(x, y) or pytest.fail("gradients differ"))
    with torch.no_grad():  # distinct affine parameters, so f3 and f5 differ
        filters.f3.norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
        filters.f5.norm.bias.copy_(torch.linspace(-1.0, 1.0, 8))
    twins = copy.deepcopy((filters, unit))
    a, b = torch.randn(2, 8, *([5] * dim)), torch.randn(2, 8, *([9] * dim))
    for train in (True, True, False):  # two training steps (running statistics compound), then eval
        for module in (filters, unit, *twins):
            module.train(train)
        a1, b1, a2, b2 = (t.clone().requires_grad_() for t in (a, b, a, b))
        with _CountSums() as counter:
            shared = unit(a1, b1, filters)
        separate = _separate_filter_calls(twins[1], a2, b2, twins[0])
        assert counter.sums == 2
        assert torch.equal(shared, separate)
        grad = torch.randn_like(shared)
        shared.backward(grad)
        separate.backward(grad)
        same_gradient(a1.grad, a2.grad)
        same_gradient(b1.grad, b2.grad)
        for mine, theirs in zip([*filters.parameters(), *unit.parameters()],
                                [*twins[0].parameters(), *twins[1].parameters()]):
            same_gradient(mine.grad, theirs.grad)
        for module in (filters, unit, *twins):
            module.zero_grad()
        for mine, theirs in ((filters, twins[0]), (unit, twins[1])):
            assert mine.state_dict().keys() == theirs.state_dict().keys()
            for key, value in theirs.state_dict().items():
                assert torch.equal(mine.state_dict()[key], value), key
        a, b = a * 1.5 + 0.3, b - 0.2


class _CountBoxFilters(TorchDispatchMode):
    """Counts the box filters (average pools) run inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.pools = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.pools += func in (torch.ops.aten.avg_pool2d.default, torch.ops.aten.avg_pool3d.default)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("norm,train", [("batch", False), ("instance", False), ("instance", True)])
@pytest.mark.parametrize("dim", [2, 3])
def test_inference_filters_both_inputs_in_one_pass_exactly(norm, train, dim):
    """Without gradients, where each sample is normalised alone, a unit filters its two inputs as one batch: two
    box filters instead of four, and outputs and state bit-identical to one pass per input."""
    torch.manual_seed(0)
    filters, unit = MultiScaleFilters(8, dim, norm=norm), MultiScaleSubtractionUnit(8, dim, norm=norm)
    with torch.no_grad():
        filters.f3.norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
        filters.f5.norm.bias.copy_(torch.linspace(-1.0, 1.0, 8))
    unit(torch.randn(2, 8, *([5] * dim)), torch.randn(2, 8, *([9] * dim)), filters)  # a training step
    twins = copy.deepcopy((filters, unit))  # with running statistics from one training step
    for module in (filters, unit, *twins):
        module.train(train)
    a, b = torch.randn(2, 8, *([5] * dim)), torch.randn(2, 8, *([9] * dim))
    with torch.no_grad():
        with _CountBoxFilters() as counter:
            one_pass = unit(a, b, filters)
        two_passes = _separate_filter_calls(twins[1], a, b, twins[0])
    assert counter.pools == 2
    assert torch.equal(one_pass, two_passes)
    for mine, theirs in ((filters, twins[0]), (unit, twins[1])):
        for key, value in theirs.state_dict().items():
            assert torch.equal(mine.state_dict()[key], value), key


@pytest.mark.parametrize("grad", [True, False])
def test_batch_statistics_and_gradients_keep_one_pass_per_input(grad):
    """BatchNorm in training mixes the samples of a batch, and gradients would sum in another order: there the
    two inputs keep their own passes (four box filters)."""
    torch.manual_seed(0)
    filters, unit = MultiScaleFilters(8, 2, norm="batch"), MultiScaleSubtractionUnit(8, 2, norm="batch")
    if grad:  # eval mode, but a gradient is recorded
        filters.eval(), unit.eval()
    a = torch.randn(2, 8, 5, 5, requires_grad=grad)
    b = torch.randn(2, 8, 9, 9)
    with torch.set_grad_enabled(grad), _CountBoxFilters() as counter:
        unit(a, b, filters)
    assert counter.pools == 4
