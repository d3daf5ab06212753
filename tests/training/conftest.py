"""The trainer fixture the trainer and variant tests share: real trainers on the tiny plans (``fake_plans``)."""

from __future__ import annotations

import copy

import pytest
import torch
from fake_plans import PLANS
from fake_plans import dataset_json as _dataset


@pytest.fixture
def make_trainer(tmp_path, monkeypatch):
    """Instantiate a trainer class on the tiny plans, writing into a temporary nnUNet_results."""
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))  # nnunetv2 reads these when they are used
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    monkeypatch.setenv("M2S_NNUNET_PRETRAINED", "1")

    def make(cls, configuration: str = "2d", channels: int = 3, foreground: int = 1):
        plans = copy.deepcopy(PLANS)
        plans["continue_training"] = False
        return cls(plans, configuration, 0, _dataset(channels, foreground), torch.device("cpu"))

    return make
