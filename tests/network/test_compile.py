"""torch.compile: M2SNet is one graph (no breaks) in 2D and 3D, training and eval, and compiled outputs and
gradients equal eager ones. The trainer compiles it wherever nnU-Net compiles its own U-Net."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo as dynamo
from fake_plans import build, calibrate_batch_norm, plans_config


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    dynamo.reset()
    yield
    dynamo.reset()


def _net(name: str, **settings) -> tuple[torch.nn.Module, torch.Tensor]:
    config = plans_config(name)
    torch.manual_seed(0)
    net = build(config, 1, 2, deep_supervision=settings.get("side_heads", False), **settings)
    calibrate_batch_norm(net, 1, config["patch_size"])
    return net, torch.randn(2, 1, *config["patch_size"])


@pytest.mark.parametrize("name", ["2d", "3d_fullres"])
@pytest.mark.parametrize("settings", [{}, {"refine": True, "side_heads": True}, {"decoder_norm": "batch"}],
                         ids=["plain", "refine+side_heads", "batchnorm"])
def test_m2snet_is_one_graph(name, settings):
    net, x = _net(name, **settings)
    # training, validation with gradients, and prediction (no gradients: the one-pass filter path)
    for training, grad in ((True, True), (False, True), (False, False)):
        dynamo.reset()
        with torch.set_grad_enabled(grad):
            explained = dynamo.explain(net.train(training))(x)
        assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
        assert explained.graph_count == 1


def test_compiled_training_step_equals_eager():
    """Forward and backward through AOT autograd (the graphs inductor compiles), against eager."""
    net, x = _net("2d", refine=True, side_heads=True)
    compiled = torch.compile(net, backend="aot_eager")
    results = []
    for model in (net, compiled):
        torch.manual_seed(1)  # the same batch-norm momentum path both times
        net.zero_grad()
        outs = model.train()(x)
        sum(o.float().square().mean() for o in outs).backward()
        results.append(([o.detach() for o in outs], [p.grad.clone() for p in net.parameters() if p.grad is not None]))
    (eager_out, eager_grad), (compiled_out, compiled_grad) = results
    for a, b in zip(eager_out + eager_grad, compiled_out + compiled_grad):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_inductor_prediction_equals_eager():
    """The C++ kernels inductor generates on CPU (about a minute to compile on 2 cores)."""
    net, x = _net("2d")
    net.eval()
    with torch.no_grad():
        eager = net(x)
        compiled = torch.compile(net)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


def test_inductor_training_step_equals_eager_3d():
    """A 3D training step compiled by inductor (the C++ kernels of forward and backward) against eager. About
    2-3 minutes of compiling on 2 cores (about 15 minutes before the fixed filters' compiled training path: the
    tests at the end of this file)."""
    net, x = _net("3d_fullres")
    results = []
    for model in (net, torch.compile(net)):
        net.zero_grad()
        out = model.train()(x)
        (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), torch.cat([p.grad.flatten() for p in net.parameters()])))
    (eager_out, eager_grad), (compiled_out, compiled_grad) = results
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-4, atol=1e-4)
    # all gradients as one vector: element by element, the encoder's convolution biases before InstanceNorm have
    # gradients that are zero in exact arithmetic, so rounding noise only (1.7e-3 measured, eager order apart)
    assert ((compiled_grad - eager_grad).norm() / eager_grad.norm()).item() < 1e-2


class _TwoUnitsSharingAMap(torch.nn.Module):
    """Two subtraction units that share a bf16 map, as neighbouring units of the pyramid do under bf16 autocast:
    the map's channel sum then feeds two buffers."""

    def __init__(self) -> None:
        super().__init__()
        from m2s_nnunet.network.blocks import MultiScaleFilters, MultiScaleSubtractionUnit

        self.conv = torch.nn.Conv3d(32, 32, 3, padding=1)
        self.filters = MultiScaleFilters(32, dim=3, norm="instance")
        self.first = MultiScaleSubtractionUnit(32, dim=3, norm="instance")
        self.second = MultiScaleSubtractionUnit(32, dim=3, norm="instance")

    def forward(self, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            shared = self.conv(a)
            return (self.first(a, shared, self.filters) + self.second(shared, c, self.filters)).float()


def test_inductor_compiles_bf16_channel_sums_feeding_two_units():
    """torch 2.14's inductor writes C++ that does not compile for a bf16 channel sum stored to two buffers (3D
    M2SNet predicted with M2S_NNUNET_PREDICT_BF16=1 and nnUNet_compile=t failed so); the compiled channel sum is
    accumulated in float32 instead, as inductor does anyway. About 10 s on 2 cores."""
    torch.manual_seed(0)
    net = _TwoUnitsSharingAMap().eval()
    a, c = torch.randn(1, 32, 20, 28, 20), torch.randn(1, 32, 20, 28, 20)
    with torch.no_grad():
        eager = net(a, c)
        compiled = torch.compile(net)(a, c)
    assert ((compiled - eager).norm() / eager.norm()).item() < 1e-2  # bf16 rounding apart


@pytest.mark.parametrize("device, flag, expected", [("cuda", None, True), ("cuda", "f", False), ("cuda", "t", True),
                                                    ("cpu", None, False), ("cpu", "t", False)])
def test_the_trainer_compiles_where_nnunet_compiles(monkeypatch, device, flag, expected):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from m2s_nnunet.training import M2SNetTrainer

    if flag is None:
        monkeypatch.delenv("nnUNet_compile", raising=False)
    else:
        monkeypatch.setenv("nnUNet_compile", flag)
    trainer = object.__new__(M2SNetTrainer)  # _do_i_compile reads the device only (and logs on refusal)
    trainer.device = torch.device(device)
    trainer.print_to_log_file = lambda *args, **kwargs: None
    reference = object.__new__(nnUNetTrainer)
    reference.device, reference.print_to_log_file = trainer.device, trainer.print_to_log_file
    assert trainer._do_i_compile() is expected
    assert reference._do_i_compile() is expected


def _graph_ops(fn, *args) -> set[str]:
    """The names of the functions in the graph dynamo hands to its backend for ``fn(*args)``."""
    names: set[str] = set()

    def backend(gm, example_inputs):
        names.update(getattr(n.target, "__name__", str(n.target)) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch.compile(fn, backend=backend)(*args)
    return names


@pytest.mark.parametrize("dim", [2, 3])
def test_compiled_training_filters_by_convolution_and_prediction_by_pooling(dim):
    """A compiled training step computes the fixed filters' box sums with a convolution: inductor took minutes to
    generate CPU code for a 3D average pool's backward (over 20 minutes for a whole 3D training step). Prediction
    and eager code keep the pooling."""
    from m2s_nnunet.network.blocks import FixedAllOnesFilter

    box = FixedAllOnesFilter(8, 5, dim=dim, norm="instance")
    x = torch.randn(2, 8, *[9] * dim, requires_grad=True)
    pool, conv = f"avg_pool{dim}d", f"conv{dim}d"
    training = _graph_ops(box.train(), x)
    assert conv in training and pool not in training, training
    dynamo.reset()
    with torch.no_grad():
        predicting = _graph_ops(box.eval(), x)
    assert pool in predicting and conv not in predicting, predicting


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16_autocast"])
@pytest.mark.parametrize("dim", [2, 3])
def test_inductor_training_of_the_fixed_filters_equals_eager(dim, bf16):
    """Outputs (and their dtype), input gradients and norm gradients of the compiled filters against eager pooling,
    in float32 and under CPU bf16 autocast (which runs a 3D pool in float32 and a 2D one in bf16)."""
    from m2s_nnunet.network.blocks import MultiScaleFilters

    torch.manual_seed(0)
    filters = MultiScaleFilters(8, dim=dim, norm="instance")
    x = torch.randn(2, 8, *[11] * dim)

    def step(model):
        filters.zero_grad()
        inp = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outs = model(inp)
        sum((o.float() * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
        return outs, [inp.grad] + [p.grad.clone() for p in filters.parameters()]

    class Both(torch.nn.Module):  # the pair of responses, as the subtraction units ask for it
        def forward(self, inp):
            return filters.responses(inp)

    eager_outs, eager_grads = step(Both())
    compiled_outs, compiled_grads = step(torch.compile(Both()))
    tol = {"rtol": 2e-2, "atol": 2e-2} if bf16 else {"rtol": 1e-4, "atol": 1e-4}
    for a, b in zip(eager_outs, compiled_outs):
        assert b.dtype == a.dtype
        torch.testing.assert_close(b.float(), a.float(), **tol)
    for a, b in zip(eager_grads, compiled_grads):
        torch.testing.assert_close(b, a, **tol)
