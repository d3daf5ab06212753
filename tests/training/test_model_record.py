"""A trained model records its settings, and every later version builds that network: the record in the plans and
the checkpoint, models of older versions (no record) read from their weight layout, ``--c`` and
``-pretrained_weights`` on them, new folds of an existing model, and nnU-Net's predictor on each old layout.

The old layouts are made here (no large files in the repository): a network built with the settings an older
version used, saved as that version saved it (nnU-Net's checkpoint, plans.json without a record).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from fake_plans import ISOTROPIC, PLANS, arch_kwargs, calibrate_batch_norm
from fake_plans import dataset_json as _dataset
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from m2s_nnunet.network.from_plans import build_m2snet
from m2s_nnunet.network.layout import LayoutError, infer_settings
from m2s_nnunet.settings import PLANS_KEY, RECORD_KEY, SCRATCH_RECIPE, M2SNetSettings, settings_for
from m2s_nnunet.training import M2SNetTrainer_scratch, M2SNetTrainer_smoke

TRAINERS_DIR = Path(__file__).resolve().parents[2] / "trainers"


def _plans(four_stage_3d: bool = True) -> dict:
    """The tiny plans; with ``four_stage_3d`` its 3d_fullres has 4 stages (as nnU-Net plans small 3D patches)."""
    plans = copy.deepcopy(PLANS)
    if four_stage_3d:
        config = plans["configurations"]["3d_fullres"]
        config["patch_size"] = [16, 24, 16]
        config["architecture"]["arch_kwargs"].update(arch_kwargs(ISOTROPIC[:4]))
    return plans


# What older versions built (the explicit settings of each layout), on 2D (5 stages) or 3D (4 stages) plans.
OLD_LAYOUTS = {
    "0.2 recipe: refinement path (2D, 5 stages)": (
        "M2SNetTrainer_scratch", "2d", 1, dict(encoder="plans", refine=True, side_heads=True)),
    "0.3-0.5 recipe: last4 on 4-stage plans (3D)": (
        "M2SNetTrainer_scratch", "3d_fullres", 1, dict(encoder="plans", level_mapping="last4", side_heads=True)),
    "0.6 recipe: deeper + one refinement step on 4-stage plans (3D)": (
        "M2SNetTrainer_scratch", "3d_fullres", 1,
        dict(encoder="plans", level_mapping="deeper", refine=True, side_heads=True)),
    "0.6 smoke: ResNet-18 from scratch (2D RGB)": (
        "M2SNetTrainer_smoke", "2d", 3, dict(encoder="resnet18", pretrained_encoder=False, lossnet_weight=0.0)),
    "0.6 ImageNet ResNet-18 variant on grey input, which trained the recipe then (2D)": (
        "M2SNetTrainer_resnet18", "2d", 1, dict(encoder="plans", side_heads=True)),
}


def _old_network(configuration: str, channels: int, values: dict, plans: dict | None = None):
    config = PlansManager(plans or _plans()).get_configuration(configuration).configuration
    settings = M2SNetSettings(dim=len(config["patch_size"]), **values)
    torch.manual_seed(0)
    net = calibrate_batch_norm(build_m2snet(settings, config, channels, 2), channels, config["patch_size"])
    return net, settings


def _legacy_model_folder(folder: Path, trainer: str, configuration: str, channels: int, net) -> Path:
    """A model folder as m2s-nnunet 0.6 left it: plans.json and checkpoint without any record."""
    plans = _plans()
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(_dataset(channels)))
    (folder / "fold_0").mkdir()
    torch.save({"network_weights": net.state_dict(), "trainer_name": trainer, "current_epoch": 1,
                "init_args": {"plans": plans, "configuration": configuration, "fold": 0},
                "inference_allowed_mirroring_axes": (0, 1)}, folder / "fold_0" / "checkpoint_final.pth")
    return folder


@pytest.mark.parametrize("layout", OLD_LAYOUTS, ids=lambda name: name.split(":")[0])
def test_models_of_older_versions_predict_with_no_edit(layout, tmp_path, monkeypatch):
    """nnU-Net's own predictor on each old layout: it builds today's network, loads the old weights, and gets the
    network that was trained; its predictions equal the old network's."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    trainer, configuration, channels, values = OLD_LAYOUTS[layout]
    monkeypatch.setenv("nnUNet_extTrainer", str(TRAINERS_DIR))
    old, _ = _old_network(configuration, channels, values)
    folder = _legacy_model_folder(tmp_path / "model", trainer, configuration, channels, old)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=(0,))
    network = predictor.network.eval()
    assert set(network.state_dict()) == set(old.state_dict())
    patch = predictor.configuration_manager.patch_size
    x = torch.randn(1, channels, *patch)
    with torch.no_grad():
        assert torch.equal(network(x), old(x))
        image = torch.randn(channels, *([1] if len(patch) == 2 else []), *[p + 8 for p in patch])  # (c, [1,] ...)
        logits = predictor.predict_logits_from_preprocessed_data(image)
        predictor.network = old
        predictor.list_of_parameters = [old.state_dict()]
        assert torch.equal(logits, predictor.predict_logits_from_preprocessed_data(image))


def test_layout_inference_names_the_setting_it_cannot_decide():
    old, _ = _old_network("2d", 3, dict(encoder="efficientnet_b0", pretrained_encoder=False))
    config = _plans()["configurations"]["2d"]
    start = settings_for(M2SNetTrainer_scratch, config, 3)
    with pytest.raises(LayoutError, match="(?s)setting 'encoder' cannot be read.*\"encoder\": \"<timm name>\""):
        infer_settings(old.state_dict(), start, config, 3, 2)
    # named in the plans' m2snet block of the model folder, it is found
    pinned = {**config, PLANS_KEY: {"encoder": "efficientnet_b0"}}
    assert infer_settings(old.state_dict(), start, pinned, 3, 2).encoder == "efficientnet_b0"


@pytest.fixture
def trainer_on(tmp_path, monkeypatch):
    """A real trainer on the tiny plans (4-stage 3D), writing into ``tmp_path/results``."""
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as nnunet_trainer

    monkeypatch.setattr(nnunet_trainer, "infer_dataset_class", lambda folder: None)  # no preprocessed data here

    def make(cls, configuration: str = "3d_fullres", channels: int = 1, fold: int = 0):
        plans = _plans()
        plans["continue_training"] = False
        return cls(plans, configuration, fold, _dataset(channels), torch.device("cpu"))

    return make


def _strip_record(checkpoint_file: Path) -> None:
    """Make a checkpoint look like one of m2s-nnunet 0.6: no record in its plans."""
    checkpoint = torch.load(checkpoint_file, map_location="cpu", weights_only=False)
    for config in checkpoint["init_args"]["plans"]["configurations"].values():
        config.pop(PLANS_KEY, None)
    torch.save(checkpoint, checkpoint_file)


def test_training_records_every_setting_in_the_plans_and_the_checkpoint(trainer_on, tmp_path):
    trainer = trainer_on(M2SNetTrainer_scratch)
    trainer.initialize()
    block = trainer.plans_manager.plans["configurations"]["3d_fullres"][PLANS_KEY]  # saved as plans.json
    assert M2SNetSettings.from_dict(block[RECORD_KEY]["settings"]) == trainer.settings
    assert block[RECORD_KEY]["trainer"] == "M2SNetTrainer_scratch"
    trainer.save_checkpoint(str(tmp_path / "ckpt.pth"))
    saved = torch.load(tmp_path / "ckpt.pth", map_location="cpu", weights_only=False)
    record = saved["init_args"]["plans"]["configurations"]["3d_fullres"][PLANS_KEY][RECORD_KEY]
    assert M2SNetSettings.from_dict(record["settings"]) == trainer.settings


def test_a_kill_while_saving_leaves_the_last_checkpoint_to_resume_from(trainer_on, monkeypatch):
    """nnU-Net's save_checkpoint writes in place: a scancel during the write cut checkpoint_latest.pth off and
    every `--c` after it failed (a CI run of the SLURM study hung on that). Ours renames a finished file into
    place; a file cut off by another trainer is refused by name, with what to do."""
    from m2s_nnunet.checkpoint_files import CheckpointError

    trainer = trainer_on(M2SNetTrainer_scratch)
    trainer.initialize()
    latest = Path(trainer.output_folder) / "checkpoint_latest.pth"
    trainer.current_epoch = 2
    trainer.save_checkpoint(str(latest))
    save = torch.save

    def killed_halfway(obj, filename, *args, **kwargs):
        save(obj, filename, *args, **kwargs)
        with open(filename, "r+b") as handle:
            handle.truncate(Path(filename).stat().st_size // 2)
        raise KeyboardInterrupt

    trainer.current_epoch = 3
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(torch, "save", killed_halfway)
        trainer.save_checkpoint(str(latest))
    assert sorted(p.name for p in latest.parent.glob("*.pth*")) == ["checkpoint_latest.pth"]
    resumed = trainer_on(M2SNetTrainer_scratch)
    resumed.load_checkpoint(str(latest))
    assert resumed.current_epoch == 3  # saved after epoch index 2: training goes on with epoch 3
    latest.write_bytes(latest.read_bytes()[:100_000])  # what nnU-Net's own in-place write leaves
    with pytest.raises(CheckpointError, match=r"checkpoint_latest\.pth: this checkpoint is incomplete"):
        trainer_on(M2SNetTrainer_scratch).load_checkpoint(str(latest))


def test_the_bf16_prediction_switch_leaves_validation_while_training_alone(trainer_on, monkeypatch):
    """M2S_NNUNET_PREDICT_BF16 is for nnUNetv2_predict: the trainer's own network validates (pseudo Dice, best
    checkpoint, final validation) in the precision it trains in."""
    from m2s_nnunet import cpu_bf16

    monkeypatch.setenv(cpu_bf16.PREDICT_ENV, "1")
    monkeypatch.setenv(cpu_bf16.NETWORK_ENV, "1")  # as on a CPU that computes bf16
    trainer = trainer_on(M2SNetTrainer_scratch)
    trainer.initialize()
    assert trainer.network.cpu_bf16 is False and trainer.network.cpu_bf16_eval is False
    manager, config = trainer.plans_manager, trainer.configuration_manager  # what nnUNetv2_predict builds
    assert M2SNetTrainer_scratch.build_network_architecture(manager, config, 1, 2, False).cpu_bf16_eval is True


def test_continue_training_an_old_checkpoint_builds_its_network(trainer_on, tmp_path, monkeypatch):
    """``--c`` (and ``--val``) load_checkpoint before initialize: the old layout decides the network."""
    with monkeypatch.context() as patch:  # what 0.3-0.5 trained on 4-stage plans
        patch.setitem(SCRATCH_RECIPE, "level_mapping", "last4")
        patch.setitem(SCRATCH_RECIPE, "refine", False)
        old = trainer_on(M2SNetTrainer_scratch)
        old.initialize()
    checkpoint_file = Path(old.output_folder) / "checkpoint_latest.pth"
    old.save_checkpoint(str(checkpoint_file))
    _strip_record(checkpoint_file)
    (Path(old.output_folder_base) / "plans.json").unlink(missing_ok=True)
    # today's recipe: "deeper" + refinement on these plans
    resumed = trainer_on(M2SNetTrainer_scratch)
    assert (resumed.settings.level_mapping, resumed.settings.refine) == ("deeper", True)
    resumed.load_checkpoint(str(checkpoint_file))
    assert (resumed.settings.level_mapping, resumed.settings.refine) == ("last4", False)
    assert "layout" in resumed.settings_source
    assert set(resumed.network.state_dict()) == set(old.network.state_dict())
    x = torch.randn(1, 1, 16, 24, 16)
    with torch.no_grad():
        assert torch.equal(resumed.network.eval()(x)[0], old.network.eval()(x)[0])
    # and the checkpoint it writes now records what it trains
    resumed.save_checkpoint(str(tmp_path / "again.pth"))
    again = torch.load(tmp_path / "again.pth", map_location="cpu", weights_only=False)
    assert again["init_args"]["plans"]["configurations"]["3d_fullres"][PLANS_KEY][RECORD_KEY]["settings"][
        "level_mapping"] == "last4"


def test_a_new_fold_gets_the_network_of_the_folds_already_trained(trainer_on, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setitem(SCRATCH_RECIPE, "side_heads", False)
        first = trainer_on(M2SNetTrainer_scratch, fold=0)
        first.initialize()
    first.save_checkpoint(str(Path(first.output_folder) / "checkpoint_final.pth"))
    model_plans = Path(first.output_folder_base) / "plans.json"
    model_plans.write_text(json.dumps(first.plans_manager.plans))  # what nnU-Net's on_train_start writes
    second = trainer_on(M2SNetTrainer_scratch, fold=1)  # a later version, whose recipe has side heads
    assert second.settings == first.settings and "recorded in" in second.settings_source
    # a model folder of 0.6 (no record anywhere): the other fold's weight layout decides
    _strip_record(Path(first.output_folder) / "checkpoint_final.pth")
    model_plans.unlink()
    plans = _plans()
    model_plans.write_text(json.dumps(plans))
    third = trainer_on(M2SNetTrainer_scratch, fold=2)
    assert third.settings.side_heads is False and "layout" in third.settings_source


def test_pretrained_weights_of_an_old_model_build_its_network(trainer_on, tmp_path):
    """``-pretrained_weights`` from a 0.3-0.5 model: the network is the old layout, the heads are new."""
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    old, _ = _old_network("3d_fullres", 1, dict(encoder="plans", level_mapping="last4", side_heads=False))
    weights = tmp_path / "old.pth"
    torch.save({"network_weights": old.state_dict(), "trainer_name": "M2SNetTrainer_scratch",
                "init_args": {"plans": _plans(), "configuration": "3d_fullres"}}, weights)
    trainer = trainer_on(M2SNetTrainer_scratch)
    trainer.use_pretrained_network(str(weights))
    trainer.initialize()
    assert trainer.settings.level_mapping == "last4" and trainer.settings.side_heads  # its own heads
    load_pretrained_weights(trainer.network, str(weights))  # nnU-Net's check: every non-head weight fits
    encoder_key = "encoder.body.stem.convs.0.conv.weight"
    assert torch.equal(trainer.network.state_dict()[encoder_key], old.state_dict()[encoder_key])


def test_a_checkpoint_that_fits_no_recorded_network_names_the_settings(trainer_on):
    trainer = trainer_on(M2SNetTrainer_smoke, "2d", 3)
    trainer.initialize()
    other, _ = _old_network("2d", 3, dict(encoder="plans", refine=True, side_heads=True))
    with pytest.raises(LayoutError, match="it was trained with refine True"):
        trainer.network.load_state_dict(other.state_dict())
