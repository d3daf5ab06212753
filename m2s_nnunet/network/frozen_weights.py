"""Refuse a second set of weights for a network that nnU-Net's predictor compiles with inductor's freezing.

With ``TORCHINDUCTOR_FREEZING=1``, inductor folds a network's weights into the compiled program as constants (the
fastest fp32 CPU prediction measured here, bench/RESULTS.md 7.1). nnU-Net's predictor compiles the network once
(``nnUNet_compile=t``) and, to ensemble several folds, copies each fold's weights into that same network before
every case. A frozen program does not see the copy: measured with torch 2.14, it then computed with a mix of the
first fold's folded weights and the new ones, and nothing warned. One fold is safe (the predictor copies the same
values every time), so only new values are refused.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import torch
from torch import nn

from m2s_nnunet.envflags import NNUNET_TRUE, foreign_flag
from m2s_nnunet.errors import UserError

FREEZING_ENV = "TORCHINDUCTOR_FREEZING"


class FrozenWeightsError(UserError):
    """New weights for a network whose compiled program has its first weights folded in."""


def inductor_freezes() -> bool:
    """Whether torch.compile folds weights into its programs: inductor's setting where inductor is loaded, else
    its environment variable, read with inductor's own rule ("1" only)."""
    config = sys.modules.get("torch._inductor.config")
    if config is not None:
        return bool(config.freezing)
    return os.environ.get(FREEZING_ENV, "0") == "1"


def predictor_freezes() -> bool:
    """Whether nnU-Net's predictor compiles (``nnUNet_compile``, its rule) with inductor's freezing on."""
    return foreign_flag("nnUNet_compile", NNUNET_TRUE) and inductor_freezes()


def same_weights(network: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state_dict`` holds exactly the values ``network`` has now (keys, shapes and every element)."""
    current = network.state_dict()
    if set(current) != set(state_dict):
        return False
    return all(current[k].shape == v.shape and torch.equal(current[k], v.to(current[k].device))
               for k, v in state_dict.items())


def same_tensors(state_dict: Mapping[str, torch.Tensor], last: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state_dict`` holds the very tensor objects of ``last``: nnU-Net's predictor keeps each fold's
    state dict and loads it again before every case, so one fold costs no element-wise comparison."""
    return state_dict.keys() == last.keys() and all(v is last[k] for k, v in state_dict.items())


def refuse_new_weights_if_frozen(network: nn.Module, state_dict: Mapping[str, torch.Tensor],
                                 last: Mapping[str, torch.Tensor]) -> None:
    """Stop before a network that already holds weights takes other values while the predictor freezes them.
    ``last``: the state dict loaded before (``remember_if_frozen``)."""
    if not predictor_freezes() or same_tensors(state_dict, last) or same_weights(network, state_dict):
        return
    raise FrozenWeightsError(
        f"{FREEZING_ENV}=1 with nnUNet_compile=t folds the first weights into the compiled program, and nnU-Net "
        "now loads other weights (another fold of an ensemble) into the same network: the compiled program would "
        "not use them",
        fix=f"predict one fold per nnUNetv2_predict run (-f 0, -f 1, ... with --save_probabilities, then "
            f"nnUNetv2_ensemble), or unset {FREEZING_ENV} (or nnUNet_compile) to ensemble the folds in one run")


def remember_if_frozen(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """What ``refuse_new_weights_if_frozen`` gets as ``last`` next time: the loaded tensors (references, no copy)
    where the predictor freezes, else nothing, so that no other load keeps a checkpoint's tensors alive."""
    return dict(state_dict) if predictor_freezes() else None
