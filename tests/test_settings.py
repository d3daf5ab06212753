"""M2SNetSettings: derived once from trainer class + plans, round-trips through JSON and the plans block."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from m2s_nnunet.settings import (
    PLANS_KEY,
    SCHEMA_VERSION,
    M2SNetSettings,
    SettingsError,
    plans_entry,
    settings_for,
    settings_for_planning,
    with_plans_entry,
)
from m2s_nnunet.training import M2SNetTrainer, M2SNetTrainer_scratch, M2SNetTrainer_scratch_LossNet

PLANS = json.loads((Path(__file__).parent / "data" / "tiny_plans" / "nnUNetPlans.json").read_text())


def _config(name: str) -> dict:
    return copy.deepcopy(PLANS["configurations"][name])


@pytest.mark.parametrize("cls,config,channels", [
    (M2SNetTrainer, "2d", 3), (M2SNetTrainer, "2d", 1), (M2SNetTrainer, "3d_fullres", 1),
    (M2SNetTrainer_scratch, "2d", 3), (M2SNetTrainer_scratch_LossNet, "3d_fullres", 1),
])
def test_settings_round_trip_through_json_and_through_the_plans(cls, config, channels):
    settings = settings_for(cls, _config(config), channels)
    assert M2SNetSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    # written into the plans' block and read back by the same trainer: the same object
    planned = with_plans_entry(_config(config), **settings.plans_overrides())
    assert planned[PLANS_KEY]["schema_version"] == SCHEMA_VERSION
    assert settings_for(cls, json.loads(json.dumps(planned)), channels) == settings


def test_the_2d_3d_rules_live_in_the_settings():
    paper = settings_for(M2SNetTrainer, _config("2d"), 3)
    assert (paper.encoder, paper.width, paper.decoder_norm, paper.lossnet_slices, paper.pretrained_encoder) == (
        "res2net50d", 64, "batch", 1, True)
    three_d = settings_for(M2SNetTrainer, _config("3d_fullres"), 1)
    assert (three_d.encoder, three_d.width, three_d.decoder_norm, three_d.lossnet_slices) == (
        "plans", 32, "instance", 4)
    assert three_d.recipe and not three_d.pretrained_encoder and three_d.lossnet_size == 224
    assert settings_for_planning(_config("2d"), 3).encoder == "res2net50d"
    assert settings_for_planning(_config("2d"), 1).encoder == "plans"
    assert settings_for_planning(_config("2d"), 1, encoder="resnet18").encoder == "resnet18"  # pinned
    assert settings_for_planning(_config("3d_fullres"), 1, encoder="resnet18").encoder == "plans"


def test_old_plans_blocks_without_a_schema_version_still_read():
    config = _config("2d")
    config[PLANS_KEY] = {"memory_model": {"encoder": "res2net50d", "estimated_gb": 3.7}, "encoder": "resnet18"}
    assert settings_for(M2SNetTrainer, config, 3).encoder == "resnet18"


def test_newer_schema_and_bad_values_are_refused_with_the_fix():
    config = _config("2d")
    config[PLANS_KEY] = {"schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(SettingsError, match="upgrade m2s-nnunet"):
        plans_entry(config)
    with pytest.raises(SettingsError, match="decoder_norm must be one of"):
        M2SNetSettings(dim=2, decoder_norm="group")
    with pytest.raises(SettingsError, match="3D configurations use the plans encoder"):
        M2SNetSettings(dim=3, encoder="resnet18")
    with pytest.raises(SettingsError, match="unknown M2SNet setting"):
        M2SNetSettings.from_dict({"dim": 2, "dropout": 0.1})
    with pytest.raises(SettingsError, match="not a key"):
        with_plans_entry(_config("2d"), lossnet=0)


def test_settings_are_frozen_and_hashable():
    settings = M2SNetSettings(dim=3, encoder="plans", encoder_blocks=[1, 2, 2, 2])
    assert settings.encoder_blocks == (1, 2, 2, 2) and hash(settings)
    assert (settings.width, settings.decoder_norm, settings.lossnet_slices) == (32, "instance", 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.width = 8  # type: ignore[misc]
    assert settings.replace(width=8).width == 8 and settings.width == 32
