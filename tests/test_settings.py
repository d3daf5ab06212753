"""M2SNetSettings: one precedence rule (record, variant, plans block, recipe, paper), one name per setting, the
record of a trained model; round trips through JSON and the plans block; where the recipe applies and what it sets."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from fake_plans import ISOTROPIC, arch_kwargs
from fake_plans import plans_config as _config

import m2s_nnunet.settings as settings_module
from m2s_nnunet import __version__
from m2s_nnunet.settings import (
    PLANS_KEY,
    RECORD_KEY,
    SCHEMA_VERSION,
    SCRATCH_RECIPE,
    VARIANT_FIELDS,
    M2SNetSettings,
    SettingsError,
    make_record,
    plans_entry,
    recipe_applies,
    recorded_settings,
    settings_for,
    settings_for_planning,
    with_plans_entry,
    with_record,
)
from m2s_nnunet.training import (
    M2SNetTrainer,
    M2SNetTrainer_resnet18,
    M2SNetTrainer_scratch,
    M2SNetTrainer_scratch_LossNet,
)


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


def test_the_recipes_level_mapping_applies_to_the_plans_encoder_only():
    """Rule 4 of bench/RESULTS.md 6.7: the recipe's pyramid goes one stage down where the plans have 4 stages."""
    assert settings_for(M2SNetTrainer, _config("3d_fullres"), 1).level_mapping == "deeper"
    assert settings_for(M2SNetTrainer, _config("2d"), 3).level_mapping == "last4"  # the paper's model
    # a timm encoder pinned in the plans has no level mapping to take: no error, the paper's mapping
    pinned = settings_for(M2SNetTrainer, _config("2d", {"encoder": "resnet18"}), 1)
    assert pinned.recipe and pinned.encoder == "resnet18" and pinned.level_mapping == "last4"
    # a model trained with 0.5.0's recipe on 4-stage plans is rebuilt by naming its mapping in the plans
    old = settings_for(M2SNetTrainer_scratch, _config("3d_fullres", {"level_mapping": "last4"}), 1)
    assert old.level_mapping == "last4"
    # the planner sizes what the trainer builds
    assert settings_for_planning(_config("3d_fullres"), 1).level_mapping == "deeper"
    assert settings_for_planning(_config("2d"), 1).level_mapping == "deeper"
    assert settings_for_planning(_config("2d"), 3).level_mapping == "last4"
    assert settings_for_planning(_config("3d_fullres", {"level_mapping": "last4"}), 1).level_mapping == "last4"


def test_the_recipe_refines_where_the_deeper_mapping_moved_the_pyramid():
    """Rule 4 of bench/RESULTS.md 6.7: 4-stage plans get the pyramid one stage down plus one refinement step."""
    four = {"patch_size": [16, 24, 16], "architecture": {"arch_kwargs": arch_kwargs(ISOTROPIC[:4])}}
    for cls in (M2SNetTrainer, M2SNetTrainer_scratch, M2SNetTrainer_scratch_LossNet):
        s = settings_for(cls, four, 1)
        assert (s.level_mapping, s.refine) == ("deeper", True), cls.__name__
    assert settings_for_planning(four, 1).refine is True
    assert settings_for(M2SNetTrainer_scratch, _config("3d_fullres"), 1).refine is False  # 5 stages: no change
    # the plans decide when they say: 0.5.0's recipe on 4-stage plans was "last4" without refinement
    old = settings_for(M2SNetTrainer_scratch, {**four, "m2snet": {"level_mapping": "last4"}}, 1)
    assert (old.level_mapping, old.refine) == ("last4", False)
    assert settings_for(M2SNetTrainer_scratch, {**four, "m2snet": {"refine": False}}, 1).refine is False
    assert settings_for_planning({**four, "m2snet": {"refine": False}}, 1).refine is False
    # written into the plans the resolved value round-trips
    s = settings_for(M2SNetTrainer_scratch, four, 1)
    assert settings_for(M2SNetTrainer_scratch, with_plans_entry(four, **s.plans_overrides()), 1) == s
    with pytest.raises(SettingsError, match='refine must be true, false or "auto"'):
        settings_for(M2SNetTrainer_scratch, {**four, "m2snet": {"refine": "sometimes"}}, 1)


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


def test_recipe_applies_exactly_where_imagenet_weights_do_not():
    assert recipe_applies(2, 3, True)[0] is False
    assert recipe_applies(3, 3, True) == (True, "3D configuration (no ImageNet weights exist for 3D encoders)")
    assert recipe_applies(2, 1, True)[0] and "1-channel" in recipe_applies(2, 1, True)[1]
    assert recipe_applies(2, 4, True)[0]
    assert recipe_applies(2, 3, False) == (True, "this variant trains from scratch")


def test_paper_model_on_2d_rgb_is_unchanged():
    s = settings_for(M2SNetTrainer, _config("2d"), 3)
    assert (s.encoder, s.refine, s.side_heads, s.optimizer_recipe, s.seg_loss, s.recipe) == (
        "res2net50d", False, False, "paper", "dice_ce", False)


@pytest.mark.parametrize("cls,config,channels", [
    (M2SNetTrainer_scratch, "2d", 3),  # the scratch variant everywhere
    (M2SNetTrainer_scratch, "3d_fullres", 1),
    (M2SNetTrainer, "2d", 1),  # grey input
    (M2SNetTrainer, "3d_fullres", 1),  # 3D
    (M2SNetTrainer_scratch_LossNet, "2d", 3),
])
def test_from_scratch_paths_train_the_recipe(cls, config, channels):
    s = settings_for(cls, _config(config), channels)
    for name, value in SCRATCH_RECIPE.items():
        expected = False if value == "auto" else value  # refine "auto": the tiny plans have 5 stages
        assert getattr(s, name) == expected, name
    assert s.recipe and s.recipe_reason


def test_a_new_recipe_key_needs_only_the_settings_module(monkeypatch):
    """The recipe is spelt once: a key added to SCRATCH_RECIPE reaches every trainer that trains the recipe."""
    monkeypatch.setitem(SCRATCH_RECIPE, "width", 24)
    monkeypatch.setitem(SCRATCH_RECIPE, "lr_schedule", "poly")
    for cls, config, channels in ((M2SNetTrainer_scratch, "2d", 3), (M2SNetTrainer, "3d_fullres", 1)):
        s = settings_for(cls, _config(config), channels)
        assert (s.width, s.lr_schedule) == (24, "poly")
    assert settings_for(M2SNetTrainer, _config("2d"), 3).width == 64  # the paper's model: no recipe
    assert settings_for_planning(_config("3d_fullres"), 1).width == 24  # the planner sizes the same network


def test_one_name_per_setting():
    """Class attribute = settings field = plans key; M2SNetTrainer chooses nothing; old names are refused."""
    assert set(SCRATCH_RECIPE) <= set(VARIANT_FIELDS)
    assert set(settings_module.PLANS_OVERRIDES) <= set(VARIANT_FIELDS)
    assert not [f for f in VARIANT_FIELDS if hasattr(M2SNetTrainer, f)], "M2SNetTrainer must not choose settings"
    for old in settings_module.RENAMED_ATTRIBUTES:
        bad = type("OldNames", (M2SNetTrainer,), {old: True})
        with pytest.raises(SettingsError, match=f"OldNames.{old}: this class attribute is now called"):
            settings_for(bad, _config("2d"), 3)


def test_precedence_variant_over_plans_block_over_recipe_over_paper():
    class Wide(M2SNetTrainer_scratch):
        width = 40

    block = {"width": 16, "refine": True}
    assert settings_for(Wide, _config("2d", block), 1).width == 40  # the variant's own choice wins
    s = settings_for(M2SNetTrainer_scratch, _config("2d", block), 1)
    assert (s.width, s.refine) == (16, True)  # the plans block over the recipe ("auto": off on 5 stages)
    assert settings_for(M2SNetTrainer_scratch, _config("2d"), 1).width == 64  # the paper's default
    paper = settings_for(M2SNetTrainer, _config("2d", {"width": 16}), 3)
    assert (paper.width, paper.encoder) == (16, "res2net50d")


def test_the_record_wins_over_everything_and_only_for_its_trainer():
    trained = settings_for(M2SNetTrainer_scratch, _config("3d_fullres"), 1).replace(width=12, refine=True)
    config = json.loads(json.dumps(with_record(_config("3d_fullres"), trained, "M2SNetTrainer_scratch")))
    record = config[PLANS_KEY][RECORD_KEY]
    assert record["trainer"] == "M2SNetTrainer_scratch" and record["m2s_nnunet"] == __version__
    assert set(record["settings"]) == {"schema_version", *(f.name for f in dataclasses.fields(M2SNetSettings))}
    assert settings_for(M2SNetTrainer_scratch, config, 1) == trained
    assert recorded_settings(config, "M2SNetTrainer") is None  # another trainer's record does not apply
    assert settings_for(M2SNetTrainer, config, 1).width == 32
    # a record from a newer m2s-nnunet: refused with the fix
    newer = copy.deepcopy(config)
    newer[PLANS_KEY][RECORD_KEY]["settings"]["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(SettingsError, match="upgrade m2s-nnunet"):
        settings_for(M2SNetTrainer_scratch, newer, 1)
    newer[PLANS_KEY][RECORD_KEY]["settings"] = {**record["settings"], "dropout": 0.1}
    with pytest.raises(SettingsError, match=r"written by m2s-nnunet .*unknown M2SNet setting"):
        settings_for(M2SNetTrainer_scratch, newer, 1)
    assert make_record(trained, "X")["settings"] == trained.to_dict()


def test_choices_that_cannot_apply_are_refused_never_swapped():
    with pytest.raises(SettingsError, match="M2SNetTrainer_resnet18 starts the 'resnet18' encoder from ImageNet "
                                            r"weights.*2D with 1 input channel.*M2SNetTrainer_resnet18_scratch"):
        settings_for(M2SNetTrainer_resnet18, _config("2d"), 1)

    class Timm3D(M2SNetTrainer_scratch):
        encoder = "resnet18"

    with pytest.raises(SettingsError, match="Timm3D: its class attribute encoder gives the 2D timm encoder"):
        settings_for(Timm3D, _config("3d_fullres"), 1)
    with pytest.raises(SettingsError, match="remove \"encoder\" from the 'm2snet' block"):
        settings_for(M2SNetTrainer, _config("3d_fullres", {"encoder": "resnet18"}), 1)

    class ImageNetPlans(M2SNetTrainer):
        encoder = "plans"
        pretrained_encoder = True

    with pytest.raises(SettingsError, match="has no ImageNet weights"):
        settings_for(ImageNetPlans, _config("2d"), 3)

    class BadRecipe(M2SNetTrainer):
        recipe = "sometimes"

    with pytest.raises(SettingsError, match="recipe must be True or False"):
        settings_for(BadRecipe, _config("2d"), 3)


def test_plans_entry_overrides_network_settings_and_rejects_unknown_keys():
    # "refine": true is also how a model trained with 0.2.0's recipe (refinement path on) is rebuilt
    s = settings_for(M2SNetTrainer_scratch, _config("2d", {"refine": True, "encoder_blocks": 1,
                                                               "memory_model": {"encoder": "x"}}), 3)
    assert s.refine is True and s.encoder_blocks == 1 and not hasattr(s, "memory_model")
    assert settings_for(M2SNetTrainer_scratch, _config("2d"), 3).refine is False
    with pytest.raises(ValueError, match="unknown key.*'lossnet'"):
        settings_for(M2SNetTrainer, _config("2d", {"lossnet": 0}), 3)


def test_bad_class_settings_are_refused():
    class BadLoss(M2SNetTrainer):
        seg_loss = "focal"

    class BadWidth(M2SNetTrainer):
        width = "wide"

    with pytest.raises(ValueError, match="BadLoss: seg_loss must be one of"):
        settings_for(BadLoss, _config("2d"), 3)
    with pytest.raises(SettingsError, match="BadWidth"):
        settings_for(BadWidth, _config("2d"), 3)
