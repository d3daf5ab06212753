"""A trained model is a durable artifact, end to end with nnU-Net's own tools (real runs on CPU).

* The recipe changes after training (monkeypatched in this process): predict, ``--c`` and ``--val`` on the old
  model folder still build the recorded network and give the same outputs.
* A model folder as m2s-nnunet 0.6 left it (no record) predicts through ``nnUNetv2_predict`` with no edit.
* ``nnUNetv2_export_model_to_zip`` -> ``nnUNetv2_install_pretrained_model_from_zip`` into empty nnU-Net folders ->
  ``nnUNetv2_predict`` gives what the original model folder gives.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_plans import calibrate_batch_norm
from nnunet_runner import make_env, run, write_two_fold_split
from PIL import Image

from m2s_nnunet.settings import PLANS_KEY, RECORD_KEY, SCRATCH_RECIPE, derive_settings, recorded_settings
from m2s_nnunet.training import M2SNetTrainer_smoke

pytestmark = pytest.mark.slow

DATASET_ID = 941
SMOKE = "M2SNetTrainer_smoke"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2D RGB dataset with a 2-fold split and the smoke trainer's model, both folds."""
    from m2s_nnunet.synthetic import make_rgb_dataset

    work = tmp_path_factory.mktemp("durable")
    env = make_env(work)
    folder = make_rgb_dataset(env["nnUNet_raw"], DATASET_ID, "Durable", num_train=8, num_test=2, size=(64, 64))
    run("nnUNetv2_plan_and_preprocess", ["-d", str(DATASET_ID), "-c", "2d", "-np", "1", "-npfp", "1"], env)
    cases = sorted(p.name[: -len(".png")] for p in (folder / "labelsTr").glob("*.png"))
    write_two_fold_split(Path(env["nnUNet_preprocessed"]) / folder.name, cases)
    for fold in ("0", "1"):
        run("nnUNetv2_train", [str(DATASET_ID), "2d", fold, "-tr", SMOKE, "-device", "cpu"], env)
    model = Path(env["nnUNet_results"]) / folder.name / f"{SMOKE}__nnUNetPlans__2d"
    return {"env": env, "work": work, "raw": folder, "model": model}


def _predict_cli(env: dict, images: Path, out: Path, *extra: str) -> dict[str, np.ndarray]:
    run("nnUNetv2_predict", ["-i", str(images), "-o", str(out), "-d", str(DATASET_ID), "-c", "2d", "-tr", SMOKE,
                             "-device", "cpu", "-npp", "1", "-nps", "1", "--save_probabilities", *extra], env)
    return _outputs(out)


def _predict_in_process(model: Path, images: Path, out: Path, folds=(0, 1)) -> dict[str, np.ndarray]:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), use_folds=folds)
    out.mkdir(parents=True)
    predictor.predict_from_files_sequential(str(images), str(out), save_probabilities=True)
    return _outputs(out)


def _outputs(out: Path) -> dict[str, np.ndarray]:
    """Segmentations and, where saved, the softmax probabilities (a constant segmentation proves little)."""
    found = {p.name: np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))}
    found.update({p.name: np.load(p)["probabilities"] for p in sorted(out.glob("*.npz"))})
    return found


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and len(a) >= 2 and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture
def in_process_env(trained, monkeypatch):
    """nnU-Net's folders and our trainers for calls made in this process (no worker processes for data)."""
    for key, value in {**trained["env"], "nnUNet_n_proc_DA": "0"}.items():
        monkeypatch.setenv(key, value)
    return trained


def test_the_model_folder_and_the_checkpoint_record_the_network(trained):
    plans = json.loads((trained["model"] / "plans.json").read_text())
    record = plans["configurations"]["2d"][PLANS_KEY][RECORD_KEY]
    assert record["trainer"] == SMOKE and record["settings"]["encoder"] == "plans"
    checkpoint = torch.load(trained["model"] / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                            weights_only=False)
    assert checkpoint["init_args"]["plans"]["configurations"]["2d"][PLANS_KEY][RECORD_KEY] == record


def test_a_recipe_change_does_not_change_a_trained_model(in_process_env, monkeypatch, tmp_path):
    from nnunetv2.run.run_training import run_training

    model, images = in_process_env["model"], in_process_env["raw"] / "imagesTs"
    before = _predict_in_process(model, images, tmp_path / "before")
    summary_file = model / "fold_0" / "validation" / "summary.json"
    summary_before = json.loads(summary_file.read_text())
    weights_before = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                                weights_only=False)["network_weights"]

    # a later version's recipe: another width, no side heads, the refinement path
    monkeypatch.setitem(SCRATCH_RECIPE, "width", 16)
    monkeypatch.setitem(SCRATCH_RECIPE, "side_heads", False)
    monkeypatch.setitem(SCRATCH_RECIPE, "refine", True)
    config = json.loads((model / "plans.json").read_text())["configurations"]["2d"]
    recorded = recorded_settings(config, SMOKE)
    today = derive_settings(SMOKE, {}, {k: v for k, v in config.items() if k != PLANS_KEY}, 3)
    assert (today.width, today.side_heads, today.refine) != (recorded.width, recorded.side_heads, recorded.refine)
    assert M2SNetTrainer_smoke.recipe is True

    # predict
    assert _same(_predict_in_process(model, images, tmp_path / "after"), before)
    # --val
    run_training(str(DATASET_ID), "2d", 0, SMOKE, only_run_validation=True, device=torch.device("cpu"))
    summary_after = json.loads(summary_file.read_text())
    assert summary_after["mean"] == summary_before["mean"]
    # --c (the run is finished: nnU-Net writes checkpoint_final again and validates)
    run_training(str(DATASET_ID), "2d", 0, SMOKE, continue_training=True, device=torch.device("cpu"))
    after = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert set(after["network_weights"]) == set(weights_before)
    assert all(torch.equal(after["network_weights"][k], v) for k, v in weights_before.items())
    assert _same(_predict_in_process(model, images, tmp_path / "after_c"), before)


def test_a_model_of_version_0_6_predicts_with_no_edit(trained, tmp_path):
    """The smoke trainer of 0.6 was ResNet-18 from scratch: such a model folder (no record in plans.json or the
    checkpoint) goes through nnUNetv2_predict as it is, and predicts what that network predicts."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from m2s_nnunet.network.from_plans import build_m2snet
    from m2s_nnunet.settings import M2SNetSettings

    legacy = trained["model"].parent / f"{SMOKE}__LegacyPlans__2d"
    shutil.copytree(trained["model"], legacy, ignore=shutil.ignore_patterns("validation", "fold_1"))
    plans = json.loads((legacy / "plans.json").read_text())
    for config in plans["configurations"].values():
        config.pop(PLANS_KEY, None)
    (legacy / "plans.json").write_text(json.dumps(plans))
    configuration = PlansManager(plans).get_configuration("2d")
    torch.manual_seed(0)
    old = calibrate_batch_norm(build_m2snet(M2SNetSettings(dim=2, encoder="resnet18", pretrained_encoder=False,
                                                           lossnet_weight=0.0), configuration.configuration, 3, 2),
                               3, configuration.patch_size)
    checkpoint_file = legacy / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(checkpoint_file, map_location="cpu", weights_only=False)
    checkpoint["init_args"]["plans"] = plans
    checkpoint["network_weights"] = old.state_dict()
    torch.save(checkpoint, checkpoint_file)

    images = trained["raw"] / "imagesTs"
    got = _predict_cli(trained["env"], images, tmp_path / "legacy", "-p", "LegacyPlans", "-f", "0")
    reference = nnUNetPredictor(device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    reference.manual_initialization(old, PlansManager(plans), configuration, [old.state_dict()],
                                    json.loads((legacy / "dataset.json").read_text()), SMOKE,
                                    checkpoint["inference_allowed_mirroring_axes"])
    (tmp_path / "reference").mkdir()
    # with the CLI's one thread (tests/nnunet_runner.py sets nnUNet_def_n_proc=1): on some CPUs (an Intel Xeon with
    # AVX-512 here) oneDNN's float sums depend on the thread count, by up to 1.5e-3 in a probability
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference.predict_from_files_sequential(str(images), str(tmp_path / "reference"), save_probabilities=True)
    finally:
        torch.set_num_threads(threads)
    assert _same(got, _outputs(tmp_path / "reference"))
    assert json.loads((legacy / "plans.json").read_text()) == plans  # the folder was not edited


def test_export_and_install_round_trip_predicts_the_same(trained, tmp_path):
    env, images = trained["env"], trained["raw"] / "imagesTs"
    original = _predict_cli(env, images, tmp_path / "original", "-f", "0", "1")
    archive = tmp_path / "model.zip"
    run("nnUNetv2_export_model_to_zip", ["-d", str(DATASET_ID), "-o", str(archive), "-c", "2d", "-tr", SMOKE,
                                         "-f", "0", "1"], env)
    fresh = make_env(tmp_path / "fresh")  # empty nnUNet_raw, _preprocessed and _results
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(fresh[key]).mkdir(parents=True, exist_ok=True)
    run("nnUNetv2_install_pretrained_model_from_zip", [str(archive)], fresh)
    installed = Path(fresh["nnUNet_results"]) / trained["model"].parent.name / trained["model"].name
    assert recorded_settings(json.loads((installed / "plans.json").read_text())["configurations"]["2d"], SMOKE)
    assert _same(_predict_cli(fresh, images, tmp_path / "installed", "-f", "0", "1"), original)
