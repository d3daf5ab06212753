"""The compact backward of the subtraction units: the same forward, the same gradients, a fraction of the memory."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from m2s_nnunet.network.blocks import MultiScaleFilters, MultiScaleSubtractionUnit, set_compact_backward
from m2s_nnunet.network.unit_differences import unit_differences


def _blocks(dim: int, norm: str, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    filters = MultiScaleFilters(8, dim, norm=norm).to(dtype)
    unit = MultiScaleSubtractionUnit(8, dim, norm=norm).to(dtype)
    with torch.no_grad():  # signed, distinct affine parameters: some channels' ReLUs pass, others block
        for f in (filters.f3, filters.f5):
            f.norm.weight.copy_(torch.linspace(-1.0, 2.0, 8))
            f.norm.bias.copy_(torch.linspace(-0.5, 0.5, 8))
    plain = copy.deepcopy((filters, unit))
    plain[1].compact_backward = False
    return (filters, unit), plain


def _step(blocks, a: torch.Tensor, b: torch.Tensor, grad: torch.Tensor | None = None):
    filters, unit = blocks
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    out = unit(a, b, filters)
    out.backward(torch.ones_like(out) if grad is None else grad)
    params = [p.grad for p in (*filters.parameters(), *unit.parameters())]
    return out, [a.grad, b.grad, *params]


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("dim", [2, 3])
def test_compact_backward_equals_autograds(dim, norm):
    """Bit-identical outputs and running statistics, gradients equal to float64 rounding, over two steps (the
    second with the running statistics of the first), with the first input resized to the second's size."""
    compact, plain = _blocks(dim, norm, torch.float64)
    for step in range(2):
        a = torch.randn(2, 8, *([5] * dim), dtype=torch.float64) + step
        b = torch.randn(2, 8, *([9] * dim), dtype=torch.float64)
        grad = torch.randn(2, 8, *([9] * dim), dtype=torch.float64)
        out, grads = _step(compact, a, b, grad)
        out_plain, grads_plain = _step(plain, a, b, grad)
        assert torch.equal(out, out_plain)
        assert len(grads) == len(grads_plain) == 9  # a, b, the filters' 2 norms (2 each), conv, its norm (2)
        for mine, theirs in zip(grads, grads_plain):
            torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)
        for mine, theirs in zip(compact, plain):
            for (key, value), other in zip(mine.state_dict().items(), theirs.state_dict().values()):
                assert torch.equal(value, other), key  # BatchNorm: running statistics, batches tracked
            mine.zero_grad(), theirs.zero_grad()


@pytest.mark.parametrize("dim", [2, 3])
def test_compact_backward_under_bf16_autocast(dim):
    """Under CPU bf16 autocast (``cpu_bf16`` training): the same output and dtypes as autograd's path, and
    gradients of the same dtypes that agree to bf16 rounding."""
    compact, plain = _blocks(dim, "instance")
    a, b = torch.randn(2, 8, *([5] * dim)), torch.randn(2, 8, *([9] * dim))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, grads = _step(compact, a, b)
        out_plain, grads_plain = _step(plain, a, b)
    assert out.dtype == out_plain.dtype and torch.equal(out, out_plain)
    for mine, theirs in zip(grads, grads_plain):
        assert mine.dtype == theirs.dtype
        torch.testing.assert_close(mine, theirs, rtol=2e-2, atol=2e-2 * theirs.abs().max().item())


def _saved_bytes(fn) -> tuple[int, set[torch.dtype]]:
    """Bytes and dtypes of the tensors autograd saves for backward while ``fn`` runs (each storage once)."""
    seen: dict[int, tuple[int, torch.dtype]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = (t.untyped_storage().nbytes(), t.dtype)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(n for n, _ in seen.values()), {d for _, d in seen.values()}


@pytest.mark.parametrize("dim", [2, 3])
def test_compact_backward_keeps_int8_factors_instead_of_float_maps(dim):
    """What the differences keep for backward: five int8 maps (and one-channel and per-channel tensors) instead
    of seven float32 maps: under 7 bytes per value of the 32-channel maps against over 28."""
    filters = MultiScaleFilters(32, dim, norm="instance")
    a = torch.randn(2, 32, *([12] * dim), requires_grad=True)
    b = torch.randn(2, 32, *([12] * dim), requires_grad=True)

    def compact():
        unit_differences(a, b, filters.affine_parts(a), filters.affine_parts(b))

    def plain():
        (a3, a5), (b3, b5) = filters.pair_responses(a, b)
        return torch.abs(a - b) + torch.abs(a3 - b3) + torch.abs(a5 - b5)

    compact_bytes, compact_dtypes = _saved_bytes(compact)
    plain_bytes, _ = _saved_bytes(plain)
    full_width = a.numel()
    assert plain_bytes > 7 * 4 * full_width
    assert compact_bytes < 7 * full_width
    assert torch.int8 in compact_dtypes


def test_unit_takes_the_compact_backward_only_where_it_applies(monkeypatch):
    """Training with an input-statistics norm: compact. Without gradients, with a norm that uses running statistics
    (BatchNorm in eval mode) or another norm module (nnU-Net's SyncBatchNorm), or switched off: autograd's."""
    import m2s_nnunet.network.blocks as blocks

    compact_calls = []
    monkeypatch.setattr(blocks, "unit_differences",
                        lambda *args: compact_calls.append(1) or unit_differences(*args))

    class OtherBatchNorm(nn.BatchNorm2d):
        pass

    def runs_compact(filters, unit, grad=True) -> bool:
        compact_calls.clear()
        a = torch.randn(2, 8, 6, 6, requires_grad=grad)
        with torch.set_grad_enabled(grad):
            unit(a, torch.randn(2, 8, 6, 6), filters)
        return bool(compact_calls)

    for norm in ("instance", "batch"):
        filters, unit = MultiScaleFilters(8, 2, norm=norm), MultiScaleSubtractionUnit(8, 2, norm=norm)
        assert runs_compact(filters, unit)
        assert not runs_compact(filters, unit, grad=False)
        unit.compact_backward = False
        assert not runs_compact(filters, unit)
    filters, unit = MultiScaleFilters(8, 2, norm="batch").eval(), MultiScaleSubtractionUnit(8, 2, norm="batch")
    assert not runs_compact(filters, unit)  # running statistics: nothing to normalise with, all affine
    filters = MultiScaleFilters(8, 2, norm="batch")
    filters.f5.norm = OtherBatchNorm(8)
    assert not runs_compact(filters, unit)
    filters = MultiScaleFilters(8, 2, norm="instance")
    filters.f3.act = nn.LeakyReLU(inplace=True)
    assert not runs_compact(filters, unit)


@pytest.mark.parametrize("name,settings", [("3d_fullres", {"refine": True, "side_heads": True}),
                                           ("2d", {"decoder_norm": "batch"})], ids=["3d", "2d-batchnorm"])
def test_whole_network_step_equals_autograds(name, settings):
    """A whole M2SNet's training forward is bit-identical with either backward, and its gradients (ten units
    whose inputs feed several units) agree to float32 rounding."""
    from fake_plans import build, plans_config

    config = plans_config(name)
    torch.manual_seed(0)
    net = build(config, 1, 2, deep_supervision=settings.get("side_heads", False), **settings).train()
    plain = copy.deepcopy(net)
    set_compact_backward(plain, False)
    x = torch.randn(2, 1, *config["patch_size"])
    outputs = []
    for model in (net, plain):
        out = model(x)
        out = out if isinstance(out, list) else [out]
        sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in out).backward()
        outputs.append(out)
    for mine, theirs in zip(*outputs):
        assert torch.equal(mine, theirs)
    grads = [torch.cat([p.grad.flatten() for p in model.parameters()]) for model in (net, plain)]
    assert (grads[0] - grads[1]).norm() / grads[1].norm() < 1e-5
