"""Preset plans: the built-in files follow the schema, bad files are refused, the planner applies them."""

from __future__ import annotations

import json

import pytest
from test_planning import _fake_preprocessed

from m2s_nnunet.planning import plan_m2snet
from m2s_nnunet.presets import PresetError, builtin_presets, load_preset


def test_builtin_presets_load():
    assert builtin_presets() == ["ct_3d", "polyp_paper"]
    polyp = load_preset("polyp_paper")
    assert polyp.overrides_for("2d") == {"patch_size": [352, 352], "batch_size": 16,
                                         "m2snet": {"encoder": "res2net50d", "width": 64}}
    assert polyp.trainer == "M2SNetTrainer_50epochs" and polyp.overrides_for("3d_fullres") == {}
    assert load_preset("ct_3d").overrides_for("3d_fullres")["m2snet"]["refine"] is True


@pytest.mark.parametrize("content,message", [
    ({"schema_version": 99, "configurations": {"2d": {}}}, "schema_version"),
    ({"schema_version": 1, "configurations": {"2d": {"patch": [1, 2]}}}, "may only set"),
    ({"schema_version": 1, "configurations": {"2d": {"batch_size": 0}}}, "batch_size must be"),
    ({"schema_version": 1, "configurations": {"2d": {"m2snet": {"lossnet": 0}}}}, "unknown key"),
    ({"schema_version": 1, "configurations": {}}, "'configurations' must map"),
])
def test_bad_preset_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(content))
    with pytest.raises(PresetError, match=message) as err:
        load_preset(str(path))
    assert str(path) in str(err.value) and "plans/README.md" in str(err.value)
    with pytest.raises(PresetError, match="polyp_paper"):
        load_preset("no_such_preset")


def test_plan_applies_a_preset_on_top_of_the_fingerprint(tmp_path, monkeypatch):
    folder = _fake_preprocessed(tmp_path)
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    plans = json.loads(plan_m2snet("777", preset="polyp_paper").read_text())
    config = plans["configurations"]["2d"]
    assert (config["patch_size"], config["batch_size"]) == ([352, 352], 16)
    assert config["m2snet"]["encoder"] == "res2net50d" and config["m2snet"]["preset"] == "polyp_paper"
    assert config["m2snet"]["memory_model"]["gpu_memory_target_gb"] == 24  # the preset's default target
    assert "preset" not in plans["configurations"]["3d_fullres"]["m2snet"]  # not named by the preset
    ct = json.loads(plan_m2snet("777", preset="ct_3d", plans_name="CT", gpu_memory_gb=8).read_text())
    c3d = ct["configurations"]["3d_fullres"]
    assert c3d["m2snet"]["refine"] is True and c3d["m2snet"]["memory_model"]["gpu_memory_target_gb"] == 8
    assert json.loads((folder / "nnUNetPlans.json").read_text())["plans_name"] == "nnUNetPlans"
