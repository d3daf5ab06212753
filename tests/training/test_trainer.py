"""How ``M2SNetTrainer`` builds and trains M2SNet: the network for training and prediction, optimiser and
schedule, weight checks, the segmentation loss, checkpoint frequency.

Uses a real nnU-Net plans file (``tests/data/tiny_plans``: nnU-Net 2.8.1's planner on a synthetic CT set,
2d and an anisotropic 3d_fullres configuration) and instantiates real trainers in a temporary results folder.
"""

from __future__ import annotations

import copy

import pytest
import torch
from fake_plans import PLANS
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from m2s_nnunet.training import M2SNetTrainer, M2SNetTrainer_scratch


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
