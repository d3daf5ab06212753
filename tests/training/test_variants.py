"""The trainer variants: what the scratch variants state, which weights they need, and that all are exported."""

from __future__ import annotations

import pytest
from fake_plans import plans_config as _config

import m2s_nnunet.training as training
from m2s_nnunet.settings import settings_for
from m2s_nnunet.training import (
    M2SNetTrainer_resnet18_scratch,
    M2SNetTrainer_scratch,
    M2SNetTrainer_scratch_LossNet,
    M2SNetTrainer_smoke,
)


def test_variants_of_the_scratch_trainer_can_change_the_recipe():
    class NoRefine(M2SNetTrainer_scratch):
        refine = False

    assert settings_for(NoRefine, _config("3d_fullres"), 1).refine is False


def test_variants_that_choose_their_own_scratch_encoder_keep_it():
    for cls in (M2SNetTrainer_resnet18_scratch, M2SNetTrainer_smoke):
        s = settings_for(cls, _config("2d"), 1)
        assert s.encoder == "resnet18" and not s.recipe and s.optimizer_recipe == "paper"


def test_scratch_lossnet_variant_needs_vgg16_only(make_trainer, offline_caches):
    from m2s_nnunet.weights import MissingWeightsError

    trainer = make_trainer(M2SNetTrainer_scratch_LossNet, "2d", channels=3)
    with pytest.raises(MissingWeightsError) as err:
        trainer._check_weights_available()
    assert "vgg16" in str(err.value).lower() and "res2net" not in str(err.value).lower()


def test_every_trainer_is_exported():
    names = set(training.__all__)
    assert {"M2SNetTrainer_scratch", "M2SNetTrainer_scratch_LossNet"} <= names
