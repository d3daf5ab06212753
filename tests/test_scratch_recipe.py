"""Which M2SNet each trainer builds and how it trains it: the paper's model or the from-scratch recipe.

Uses a real nnU-Net plans file (``tests/data/tiny_plans``: nnU-Net 2.8.1's planner on a synthetic CT set,
2d and an anisotropic 3d_fullres configuration) and instantiates real trainers in a temporary results folder.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

import m2s_nnunet.training as training
from m2s_nnunet.settings import SCRATCH_RECIPE, recipe_applies, settings_for
from m2s_nnunet.training import (
    M2SNetTrainer,
    M2SNetTrainer_DS,
    M2SNetTrainer_resnet18_scratch,
    M2SNetTrainer_scratch,
    M2SNetTrainer_scratch_LossNet,
    M2SNetTrainer_smoke,
)

PLANS_DIR = Path(__file__).parent / "data" / "tiny_plans"
PLANS = json.loads((PLANS_DIR / "nnUNetPlans.json").read_text())
DATASET = json.loads((PLANS_DIR / "dataset.json").read_text())


def _dataset(channels: int, foreground: int = 1) -> dict:
    ds = copy.deepcopy(DATASET)
    ds["channel_names"] = {str(i): "CT" if channels == 1 else "rgb_to_0_1" for i in range(channels)}
    ds["labels"] = {"background": 0, **{f"class{i}": i for i in range(1, foreground + 1)}}
    return ds


def _config(name: str, m2snet: dict | None = None) -> dict:
    config = copy.deepcopy(PLANS["configurations"][name])
    if m2snet is not None:
        config["m2snet"] = m2snet
    return config


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


RECIPE_KEYS = {"encoder_name": "encoder", "refine": "refine", "use_side_heads": "side_heads",
               "optimizer_recipe": "optimizer_recipe", "seg_loss": "seg_loss"}


@pytest.mark.parametrize("cls,config,channels", [
    (M2SNetTrainer_scratch, "2d", 3),  # the scratch variant everywhere
    (M2SNetTrainer_scratch, "3d_fullres", 1),
    (M2SNetTrainer, "2d", 1),  # grey input
    (M2SNetTrainer, "3d_fullres", 1),  # 3D
    (M2SNetTrainer_DS, "3d_fullres", 1),
])
def test_from_scratch_paths_train_the_recipe(cls, config, channels):
    assert set(SCRATCH_RECIPE) == set(RECIPE_KEYS)
    s = settings_for(cls, _config(config), channels)
    for name, value in SCRATCH_RECIPE.items():
        assert getattr(s, RECIPE_KEYS[name]) == value, name
    assert s.recipe == (cls is not M2SNetTrainer_scratch)  # the scratch class states the recipe itself


def test_variants_of_the_scratch_trainer_can_change_the_recipe():
    class NoRefine(M2SNetTrainer_scratch):
        refine = False

    assert settings_for(NoRefine, _config("3d_fullres"), 1).refine is False


def test_variants_that_choose_their_own_scratch_encoder_keep_it():
    for cls in (M2SNetTrainer_resnet18_scratch, M2SNetTrainer_smoke):
        s = settings_for(cls, _config("2d"), 1)
        assert s.encoder == "resnet18" and not s.recipe and s.optimizer_recipe == "paper"


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

    class BadRecipe(M2SNetTrainer):
        scratch_recipe = {"lossnet_weight": 0}  # the loss is never the recipe's to change

    with pytest.raises(ValueError, match="seg_loss must be one of"):
        settings_for(BadLoss, _config("2d"), 3)
    with pytest.raises(ValueError, match="unknown key"):
        settings_for(BadRecipe, _config("3d_fullres"), 1)


@pytest.mark.parametrize("configuration,channels", [("2d", 1), ("2d", 3), ("3d_fullres", 1)])
def test_scratch_network_builds_identically_for_training_and_prediction(configuration, channels):
    plans_manager = PlansManager(copy.deepcopy(PLANS))
    cm = plans_manager.get_configuration(configuration)
    train_net = M2SNetTrainer_scratch.build_network_architecture(plans_manager, cm, channels, 2, True)
    predict_net = M2SNetTrainer_scratch.build_network_architecture(plans_manager, cm, channels, 2, False)
    assert not train_net.refine and train_net.has_side_heads and train_net.encoder.name.startswith("plans-residual")
    predict_net.load_state_dict(train_net.state_dict())  # strict, as nnU-Net's predictor loads it
    x = torch.randn(2, channels, *cm.patch_size)
    outputs = train_net.train()(x)
    assert isinstance(outputs, list) and outputs[0].shape == (2, 2, *cm.patch_size)
    with torch.no_grad():
        single = predict_net.eval()(x[:1])
    assert isinstance(single, torch.Tensor) and single.shape == (1, 2, *cm.patch_size)


def test_scratch_trainer_wiring(make_trainer, offline_caches):
    trainer = make_trainer(M2SNetTrainer_scratch, "2d", channels=3)
    assert trainer.enable_deep_supervision
    assert (trainer.initial_lr, trainer.momentum, trainer.weight_decay) == (0.05, 0.9, 5e-4)
    assert trainer.lossnet_weight == 0 and not trainer.uses_imagenet_encoder
    trainer._check_weights_available()  # no weight file at all is needed (offline_caches: empty caches, no hub)
    trainer.network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager,
                                                         3, 2, True)
    optimizer, schedule = trainer.configure_optimizers()
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert lrs[0] == lrs[1] == pytest.approx(0.05 * 0.001)  # no lower backbone rate from scratch; triangular start
    assert schedule.kind == "triangular" and optimizer.defaults["momentum"] == 0.9


def test_nnunet_optimiser_option(make_trainer):
    class NNUNetOpt(M2SNetTrainer_scratch):
        optimizer_recipe = "nnunet"

    trainer = make_trainer(NNUNetOpt, "2d", channels=3)
    assert (trainer.initial_lr, trainer.momentum, trainer.weight_decay) == (1e-2, 0.99, 3e-5)
    trainer.network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager,
                                                         3, 2, True)
    optimizer, schedule = trainer.configure_optimizers()
    assert [g["lr"] for g in optimizer.param_groups] == [1e-2, 1e-2]
    assert schedule.kind == "poly" and optimizer.defaults["momentum"] == 0.99
    scales = trainer._get_deep_supervision_scales()
    assert scales[0] == [1.0, 1.0] and len(scales) == 4


def test_scratch_lossnet_variant_needs_vgg16_only(make_trainer, offline_caches):
    from m2s_nnunet.weights import MissingWeightsError

    trainer = make_trainer(M2SNetTrainer_scratch_LossNet, "2d", channels=3)
    with pytest.raises(MissingWeightsError) as err:
        trainer._check_weights_available()
    assert "vgg16" in str(err.value).lower() and "res2net" not in str(err.value).lower()


def test_paper_trainer_keeps_paper_optimiser_and_backbone_rate(make_trainer):
    trainer = make_trainer(M2SNetTrainer, "2d", channels=3)
    assert not trainer.enable_deep_supervision and trainer.uses_imagenet_encoder
    assert (trainer.initial_lr, trainer.momentum, trainer.weight_decay) == (0.05, 0.9, 5e-4)
    trainer.network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager,
                                                         3, 2, False)
    optimizer, schedule = trainer.configure_optimizers()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05 * 0.5 / 1000 * 2, 0.005 * 0.5 / 1000 * 2])
    assert schedule.kind == "triangular"
    encoder_ids = {id(p) for p in trainer.network.encoder.parameters()}
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == encoder_ids


def test_grey_input_trains_the_recipe_with_the_paper_trainer(make_trainer, offline_caches):
    trainer = make_trainer(M2SNetTrainer, "2d", channels=1)
    assert trainer.settings.recipe and trainer.settings.encoder == "plans"
    assert not trainer.uses_imagenet_encoder
    from m2s_nnunet.weights import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="(?i)vgg16"):  # LossNet stays: the trainer's name says so
        trainer._check_weights_available()


def test_structure_loss_variant_on_binary_and_multiclass(make_trainer):
    class Structure(M2SNetTrainer_scratch):
        seg_loss = "structure"

    trainer = make_trainer(Structure, "2d", channels=1)
    trainer.network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager,
                                                         1, 2, True)
    loss = trainer._build_loss()
    outputs = trainer.network(torch.randn(2, 1, 64, 64))
    targets = [torch.randint(0, 2, (2, 1, *o.shape[2:])).float() for o in outputs]
    value = loss(outputs, targets)
    value.backward()
    assert torch.isfinite(value)
    with pytest.raises(RuntimeError, match="structure loss, which is binary"):
        make_trainer(Structure, "2d", channels=1, foreground=2)._build_loss()


def test_every_trainer_is_exported():
    names = set(training.__all__)
    assert {"M2SNetTrainer_scratch", "M2SNetTrainer_scratch_LossNet"} <= names


def test_short_schedules_write_checkpoint_latest_often_enough_for_resume(make_trainer, monkeypatch):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    monkeypatch.setattr(nnUNetTrainer, "on_train_start", lambda self: None)  # data loaders etc. not needed here
    trainer = make_trainer(M2SNetTrainer_scratch)
    trainer.num_epochs = 60  # set after __init__, as nnU-Net's own variants do
    trainer.on_train_start()
    assert trainer.save_every == 3
    trainer = make_trainer(M2SNetTrainer_scratch)  # nnU-Net's 1000 epochs: its own 50
    trainer.on_train_start()
    assert trainer.save_every == 50
