"""Every trainer variant, on 2D RGB, 2D grey and 3D plans, builds what its name and the README's table say, or
refuses with a message that names it and what to use instead. The variant list comes from the package."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from fake_plans import plans_config as _config

import m2s_nnunet.training as training
import m2s_nnunet.training.variants as variants
from m2s_nnunet.settings import SettingsError, settings_for
from m2s_nnunet.training import M2SNetTrainer, M2SNetTrainer_resnet18, M2SNetTrainer_scratch_LossNet

README = Path(__file__).resolve().parents[2] / "README.md"
CONFIGS = {"2D RGB": ("2d", 3), "2D grey": ("2d", 1), "3D": ("3d_fullres", 1)}

PAPER = {"encoder": "res2net50d", "pretrained_encoder": True, "side_heads": False, "recipe": False,
         "lossnet_weight": 0.1}
RECIPE = {"encoder": "plans", "pretrained_encoder": False, "side_heads": True, "recipe": True,
          "optimizer_recipe": "paper", "lossnet_weight": 0.1}
R18_SCRATCH = {"encoder": "resnet18", "pretrained_encoder": False, "side_heads": False, "recipe": False,
               "lossnet_weight": 0.1}
REFUSED = None


def _with(base: dict, **changes) -> dict:
    return {**base, **changes}


NO_LOSSNET = {"lossnet_weight": 0.0}
# (2D RGB, 2D grey, 3D): the settings each builds, or REFUSED
EXPECTED = {
    "M2SNetTrainer": (PAPER, RECIPE, RECIPE),
    "M2SNetTrainer_5epochs": (PAPER, RECIPE, RECIPE),
    "M2SNetTrainer_50epochs": (PAPER, RECIPE, RECIPE),
    "M2SNetTrainer_100epochs": (PAPER, RECIPE, RECIPE),
    "M2SNetTrainer_250epochs": (PAPER, RECIPE, RECIPE),
    "M2SNetTrainer_noLossNet": (_with(PAPER, **NO_LOSSNET), _with(RECIPE, **NO_LOSSNET), _with(RECIPE, **NO_LOSSNET)),
    "M2SNetTrainer_scratch": (_with(RECIPE, **NO_LOSSNET),) * 3,
    "M2SNetTrainer_scratch_LossNet": (RECIPE,) * 3,
    "M2SNetTrainer_DS": (_with(PAPER, side_heads=True), REFUSED, REFUSED),
    "M2SNetTrainer_polyLR": (_with(PAPER, lr_schedule="poly"), _with(RECIPE, lr_schedule="poly"),
                             _with(RECIPE, lr_schedule="poly")),
    "M2SNetTrainer_resnet18": (_with(PAPER, encoder="resnet18"), REFUSED, REFUSED),
    "M2SNetTrainer_resnet18_scratch": (R18_SCRATCH, R18_SCRATCH, REFUSED),
    "M2SNetTrainer_smoke": (_with(RECIPE, **NO_LOSSNET),) * 3,
    "M2SNetTrainer_demo": (_with(RECIPE, **NO_LOSSNET),) * 3,
}
SCHEDULES = {"M2SNetTrainer_5epochs": 5, "M2SNetTrainer_50epochs": 50, "M2SNetTrainer_100epochs": 100,
             "M2SNetTrainer_250epochs": 250, "M2SNetTrainer_smoke": 1, "M2SNetTrainer_demo": 20}


def test_every_variant_is_exported_and_has_an_expectation():
    defined = {name for name, obj in inspect.getmembers(variants, inspect.isclass)
               if issubclass(obj, M2SNetTrainer) and obj.__module__ == variants.__name__}
    exported = {cls.__name__ for cls in training.TRAINERS}
    assert defined | {"M2SNetTrainer"} == exported, "a variant is defined but not in m2s_nnunet.training.TRAINERS"
    assert set(training.__all__) == exported | {"TRAINERS"}
    assert set(EXPECTED) == exported, "every exported trainer needs its row in EXPECTED (and in the README)"


@pytest.mark.parametrize("cls", training.TRAINERS, ids=lambda c: c.__name__)
def test_each_variant_builds_what_its_name_says_or_refuses(cls):
    for (where, (config, channels)), expected in zip(CONFIGS.items(), EXPECTED[cls.__name__], strict=True):
        if expected is REFUSED:
            with pytest.raises(SettingsError) as err:
                settings_for(cls, _config(config), channels)
            message = str(err.value)
            assert message.startswith(cls.__name__) and "M2SNetTrainer_scratch" in message, message
            continue
        s = settings_for(cls, _config(config), channels)
        assert {k: getattr(s, k) for k in expected} == expected, f"{cls.__name__} on {where}"
    if cls.__name__ in SCHEDULES:
        assert cls.epochs == SCHEDULES[cls.__name__]


def _readme_rows() -> dict[str, list[str]]:
    """The README's trainer table: trainer name -> its cells (2D RGB, 2D grey, 3D, what changes)."""
    text = README.read_text()
    table = text[text.index("| trainer | 2D RGB |"):]
    rows = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        for name in re.findall(r"`(M2SNetTrainer\w*)`", cells[0]):
            rows[name] = cells[1:]
    return rows


def test_the_readme_table_says_what_each_variant_builds():
    rows = _readme_rows()
    assert set(rows) == set(EXPECTED), "the README's trainer table must list every exported trainer"
    for name, expected in EXPECTED.items():
        for where, cell, settings in zip(CONFIGS, rows[name][:3], expected, strict=True):
            assert ("refused" in cell) == (settings is REFUSED), f"{name}, {where}: '{cell}'"
            if settings is not REFUSED:
                assert ("recipe" in cell) == settings["recipe"], f"{name}, {where}: '{cell}'"
                assert ("ResNet-18" in cell) == (settings["encoder"] == "resnet18"), f"{name}, {where}: '{cell}'"


def test_a_refused_variant_stops_before_training(make_trainer, offline_caches):
    trainer = make_trainer(M2SNetTrainer_resnet18, "2d", channels=1)  # nothing trained yet: no checkpoint decides
    with pytest.raises(SettingsError, match="M2SNetTrainer_resnet18 starts the 'resnet18' encoder from ImageNet"):
        trainer.initialize()


def test_scratch_lossnet_variant_needs_vgg16_only(make_trainer, offline_caches):
    from m2s_nnunet.weights import MissingWeightsError

    trainer = make_trainer(M2SNetTrainer_scratch_LossNet, "2d", channels=3)
    with pytest.raises(MissingWeightsError) as err:
        trainer._check_weights_available()
    assert "vgg16" in str(err.value).lower() and "res2net" not in str(err.value).lower()
