"""Inductor's freezing folds weights into the compiled program: M2SNet refuses other weights where nnU-Net's
predictor compiles it that way, since an ensemble of folds would otherwise be predicted with stale weights."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo as dynamo
import torch._inductor.config as inductor_config
from fake_plans import build, plans_config
from torch import nn

from m2s_nnunet.network.frozen_weights import FrozenWeightsError, inductor_freezes, same_weights


def _net_and_other_weights() -> tuple[nn.Module, dict, dict]:
    """A network, its weights, and those of another initialisation (as another fold's)."""
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(build(plans_config("2d"), 1, 2).eval())
    first, other = ({k: v.clone() for k, v in n.state_dict().items()} for n in nets)
    return nets[0], first, other


@pytest.fixture
def predictor_freezes(monkeypatch):
    """What ``TORCHINDUCTOR_FREEZING=1 nnUNet_compile=t nnUNetv2_predict`` sets up in its process."""
    monkeypatch.setenv("nnUNet_compile", "t")
    with inductor_config.patch(freezing=True):  # inductor's own way to set its config for a while
        yield


def test_a_second_fold_is_refused_where_the_predictor_freezes(predictor_freezes):
    net, first, other = _net_and_other_weights()
    net.load_state_dict(first)  # the first fold: nothing to compare with
    net.load_state_dict(first)  # one fold, loaded again before every case: the same values pass
    with pytest.raises(FrozenWeightsError) as err:
        net.load_state_dict(other)
    assert "-f 0" in str(err.value) and "nnUNetv2_ensemble" in str(err.value)
    assert same_weights(net, first)  # refused before anything was copied


def test_one_fold_loaded_before_every_case_is_not_compared_element_by_element(predictor_freezes, monkeypatch):
    """nnU-Net's predictor loads the same state dict object before each case: recognised by identity, so a large
    model does not pay a comparison of every weight per case; a copy with the same values is compared and passes."""
    import m2s_nnunet.network.frozen_weights as frozen_weights

    net, first, _ = _net_and_other_weights()
    net.load_state_dict(first)
    compared = []
    real = frozen_weights.same_weights
    monkeypatch.setattr(frozen_weights, "same_weights", lambda *a: compared.append(1) or real(*a))
    for _case in range(3):
        net.load_state_dict(first)
    assert compared == []
    net.load_state_dict({k: v.clone() for k, v in first.items()})
    assert compared == [1]


@pytest.mark.parametrize("compile_flag, freezing", [("f", True), ("t", False), (None, True)])
def test_other_weights_load_where_nothing_freezes(monkeypatch, compile_flag, freezing):
    if compile_flag is None:
        monkeypatch.delenv("nnUNet_compile", raising=False)
    else:
        monkeypatch.setenv("nnUNet_compile", compile_flag)
    net, first, other = _net_and_other_weights()
    with inductor_config.patch(freezing=freezing):
        net.load_state_dict(first)
        net.load_state_dict(other)
    assert same_weights(net, other)


def test_the_environment_variable_counts_before_inductor_is_loaded(monkeypatch):
    """Inductor reads ``TORCHINDUCTOR_FREEZING`` when it is first imported ("1" only); before that, so do we."""
    import sys

    monkeypatch.delitem(sys.modules, "torch._inductor.config")
    for value, expected in (("1", True), ("0", False), ("true", False)):
        monkeypatch.setenv("TORCHINDUCTOR_FREEZING", value)
        assert inductor_freezes() is expected


def test_a_frozen_program_ignores_new_weights_as_the_guard_assumes(predictor_freezes):
    """Why the guard exists: compiled with freezing, the program keeps computing with folded weights after nnU-Net
    copies others into the network (as its predictor does for each fold). Should a later torch notice the copy,
    this test fails and the guard can go. About a minute of inductor compiling on 2 cores."""
    dynamo.reset()
    net, first, other = _net_and_other_weights()
    x = torch.randn(1, 1, *plans_config("2d")["patch_size"])
    compiled = torch.compile(net)
    with torch.inference_mode():  # nnU-Net's predictor predicts in inference mode
        net.load_state_dict(first)
        torch.testing.assert_close(compiled(x), net(x), rtol=1e-4, atol=1e-4)
        nn.Module.load_state_dict(net, other)  # what M2SNet.load_state_dict refuses to do here
        expected = net(x)
        stale = compiled(x)
    assert not torch.allclose(stale, expected, rtol=1e-3, atol=1e-3)
    dynamo.reset()
