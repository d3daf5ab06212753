"""M2SNet: shapes, gradients, fixed filters, buffers, determinism, errors, refinement, stored reference."""

from __future__ import annotations

import pytest
import torch

from m2s_nnunet import M2SNet


@pytest.fixture(scope="module")
def default_nets():
    torch.manual_seed(0)
    return {(c, k): M2SNet(c, k).eval() for c in (1, 3) for k in (2, 4)}


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("classes", [2, 4])
@pytest.mark.parametrize("size", [(32, 32), (80, 112), (352, 352), (57, 83)])
def test_output_shape_default_encoder(default_nets, in_channels, classes, size):
    net = default_nets[(in_channels, classes)]
    with torch.no_grad():
        out = net(torch.randn(1, in_channels, *size))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, classes, *size)
    assert torch.isfinite(out).all()


def test_default_matches_paper_parameter_count():
    params = sum(p.numel() for p in M2SNet(3, 1).parameters())
    assert abs(params / 1e6 - 27.7) < 0.05  # the paper reports ~27.7 M


def test_gradients_reach_every_trainable_parameter_and_not_the_fixed_filters():
    torch.manual_seed(0)
    net = M2SNet(3, 2, encoder="resnet18", side_heads=True, deep_supervision=True).train()
    for module in net.modules():  # timm zero-initialises the last BN of each residual block: undo it,
        if isinstance(module, torch.nn.BatchNorm2d):  # or those blocks' convs would get exactly-zero gradients
            torch.nn.init.ones_(module.weight)
    outputs = net(torch.randn(2, 3, 64, 64))
    sum(o.float().pow(2).mean() for o in outputs).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"
    fixed = [b for name, b in net.named_buffers() if name.endswith(".weight")]
    assert fixed and all(not b.requires_grad and b.grad is None for b in fixed)
    param_ids = {id(p) for p in net.parameters()}
    assert all(id(b) not in param_ids for b in fixed)


def test_fixed_filters_are_shared_and_not_in_state_dict():
    net = M2SNet(3, 2, encoder="resnet18")
    seen = []  # every unit of the pyramid gets the network's one pair of filters
    for unit in net.pyramid.values():
        unit.register_forward_pre_hook(lambda module, args: seen.append(id(args[2])))
    with torch.no_grad():
        net.eval()(torch.randn(1, 3, 64, 64))
    assert len(seen) == 10 and set(seen) == {id(net.filters)}
    assert not any(isinstance(m, type(net.filters)) for unit in net.pyramid.values() for m in unit.modules())
    state = net.state_dict()
    assert not any(k.startswith("filters.") and k.endswith(".weight") and "norm" not in k for k in state)
    assert "filters.f3.norm.weight" in state and "filters.f5.norm.weight" in state


def test_fast_and_plain_networks_agree():
    torch.manual_seed(0)
    # float64: with untrained BN statistics activations reach ~1e6, where float32 sums differ in the 7th digit
    fast = M2SNet(3, 2, encoder="resnet18", fast_filters=True).double().eval()
    plain = M2SNet(3, 2, encoder="resnet18", fast_filters=False).double().eval()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(1, 3, 64, 80, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-9, atol=1e-6)


def test_to_moves_every_buffer_and_parameter():
    net = M2SNet(3, 2, encoder="resnet18").to(torch.float64).to("meta")
    tensors = list(net.parameters()) + list(net.buffers())
    assert all(t.device.type == "meta" for t in tensors)
    assert all(t.dtype in (torch.float64, torch.int64) for t in tensors)
    assert net.filters.f3.weight.device.type == "meta"  # the shared fixed filters (a non-persistent buffer)


def test_eval_output_is_deterministic():
    torch.manual_seed(0)
    net = M2SNet(3, 2, encoder="resnet18").eval()
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)


def test_clear_errors_for_bad_inputs():
    net = M2SNet(3, 2, encoder="resnet18").eval()
    with pytest.raises(ValueError, match=r"at least \(32, 32\)"):
        net(torch.randn(1, 3, 31, 64))
    with pytest.raises(ValueError, match="built for .B, 3, H, W. inputs"):
        net(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="unknown timm encoder"):
        M2SNet(3, 2, encoder="no_such_net")


def test_2d_outputs_and_weight_layout_match_the_stored_reference():
    """Guards refactors (e.g. the dimension-generic rewrite): same state-dict layout, same outputs."""
    from pathlib import Path

    from reference_init import init_by_name

    ref = torch.load(Path(__file__).parents[1] / "data" / "m2snet2d_reference.pt", weights_only=False)
    net = init_by_name(M2SNet(3, 2, encoder="test_resnet", side_heads=True)).eval()
    state = net.state_dict()
    assert list(state.keys()) == ref["keys"]
    assert [tuple(v.shape) for v in state.values()] == ref["shapes"]
    x = torch.randn(1, 3, 64, 80, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref["output"], rtol=1e-4, atol=1e-4)
        net.deep_supervision = True
        for got, want in zip(net(x), ref["ds_outputs"]):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_refinement_path_reaches_full_resolution_through_the_stem():
    torch.manual_seed(0)
    plain = M2SNet(3, 2, encoder="resnet18")
    net = M2SNet(3, 2, encoder="resnet18", refine=True, side_heads=True, deep_supervision=True).train()
    assert net.refine and net.encoder.feature_info.fine_channels == (64,)  # the stride-2 stem before its max-pool
    assert len(net.refine_stages) == 1 and not plain.refine and not hasattr(plain, "refine_stages")
    for module in net.modules():  # undo timm's zero-init of the last BN of each block (see the gradient test)
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
    outputs = net(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outputs] == [(2, 2, 64, 96), (2, 2, 16, 24), (2, 2, 8, 12), (2, 2, 4, 6)]
    sum(o.pow(2).mean() for o in outputs).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"


def test_refinement_off_keeps_the_papers_layout():
    keys = set(M2SNet(3, 2, encoder="resnet18", refine=False).state_dict())
    assert not any(k.startswith(("o1.", "refine_stages.")) for k in keys)
    refined = set(M2SNet(3, 2, encoder="resnet18", refine=True).state_dict())
    assert keys <= refined  # the paper's keys all stay; the refinement path only adds its own
    assert refined - keys == {k for k in refined if k.startswith(("o1.", "refine_stages."))}
    assert any(k.startswith("refine_stages.0.fuse.") for k in refined) and any(k.startswith("o1.") for k in refined)
