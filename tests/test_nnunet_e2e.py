"""Real nnU-Net runs on CPU: plan -> train (smoke variant) -> validate -> predict -> CV tools.

These call nnU-Net's own console scripts in subprocesses, exactly as users do. About 5 minutes on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunet_runner import make_env, run, write_two_fold_split
from PIL import Image

from m2s_nnunet.synthetic import make_ct_dataset, make_rgb_dataset

pytestmark = pytest.mark.slow

RGB_ID, CT_ID, BAD_ID = 931, 932, 933
SMOKE = "M2SNetTrainer_smoke"
NO_MIRROR = "M2SNetTrainer_smokeNoMirroring"  # 3D cascade: no 8-pass mirroring per tile on CPU


def _model_dir(env, dataset: str, trainer: str, plans: str = "nnUNetPlans", config: str = "2d") -> Path:
    return Path(env["nnUNet_results"]) / dataset / f"{trainer}__{plans}__{config}"


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    """A planned 2D RGB dataset with a 2-fold split, and the smoke variant trained on both folds."""
    work = tmp_path_factory.mktemp("rgb")
    env = make_env(work)
    folder = make_rgb_dataset(env["nnUNet_raw"], RGB_ID, "RGB", num_train=10, num_test=2, size=(64, 64))
    run("nnUNetv2_plan_and_preprocess", ["-d", str(RGB_ID), "-c", "2d", "-np", "1", "-npfp", "1",
                                         "--verify_dataset_integrity"], env)
    cases = sorted(p.name[: -len(".png")] for p in (folder / "labelsTr").glob("*.png"))
    write_two_fold_split(Path(env["nnUNet_preprocessed"]) / folder.name, cases)
    run("nnUNetv2_train", [str(RGB_ID), "2d", "0", "-tr", SMOKE, "-device", "cpu"], env)
    run("nnUNetv2_train", [str(RGB_ID), "2d", "1", "-tr", SMOKE, "-device", "cpu", "--npz"], env)
    return {"env": env, "work": work, "raw": folder, "name": folder.name}


def test_trainer_discovery_in_a_fresh_process(rgb):
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
            "import m2s_nnunet.training as t\n"
            "for name in t.__all__[:-1]:\n"
            "    assert f(name).__name__ == name, name\n"
            "print('found', len(t.__all__) - 1)")
    proc = subprocess.run([sys.executable, "-c", code], env=rgb["env"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "found 14" in proc.stdout  # every trainer of m2s_nnunet.training


def test_training_outputs_and_validation_summary(rgb):
    model = _model_dir(rgb["env"], rgb["name"], SMOKE)
    for fold in (0, 1):
        assert (model / f"fold_{fold}" / "checkpoint_final.pth").is_file()
        summary = json.loads((model / f"fold_{fold}" / "validation" / "summary.json").read_text())
        assert "1" in summary["mean"] and len(summary["metric_per_case"]) == 5
    assert (model / "plans.json").is_file() and (model / "dataset.json").is_file()
    assert list((model / "fold_1" / "validation").glob("*.npz"))


def test_checkpoint_holds_only_the_network(rgb):
    ckpt = torch.load(_model_dir(rgb["env"], rgb["name"], SMOKE) / "fold_0" / "checkpoint_final.pth",
                      map_location="cpu", weights_only=False)
    assert ckpt["trainer_name"] == SMOKE
    keys = set(ckpt["network_weights"])
    assert any(k.startswith("encoder.body.") for k in keys) and "head.seg_layers.0.weight" in keys
    assert not any("lossnet" in k or k.startswith("blocks.") for k in keys)
    assert len(ckpt["optimizer_state"]["param_groups"]) == 2  # decoder and backbone learning rates


def test_val_npz_reexports_probabilities(rgb):
    validation = _model_dir(rgb["env"], rgb["name"], SMOKE) / "fold_0" / "validation"
    assert not list(validation.glob("*.npz"))
    run("nnUNetv2_train", [str(RGB_ID), "2d", "0", "-tr", SMOKE, "-device", "cpu", "--val", "--npz"], rgb["env"])
    npz = sorted(validation.glob("*.npz"))
    assert len(npz) == 5
    probs = np.load(npz[0])["probabilities"]
    assert probs.shape[0] == 2 and np.allclose(probs.sum(0), 1, atol=1e-3)


def test_predict_held_out_images(rgb):
    out = rgb["work"] / "pred"
    run("nnUNetv2_predict", ["-i", str(rgb["raw"] / "imagesTs"), "-o", str(out), "-d", str(RGB_ID), "-c", "2d",
                             "-tr", SMOKE, "-f", "0", "1", "-device", "cpu", "-npp", "1", "-nps", "1"], rgb["env"])
    preds = sorted(out.glob("*.png"))
    assert [p.name for p in preds] == ["case_010.png", "case_011.png"]
    for p in preds:
        arr = np.asarray(Image.open(p))
        assert arr.shape == (64, 64) and set(np.unique(arr)) <= {0, 1}


def test_find_best_configuration_on_two_folds(rgb):
    env = dict(rgb["env"])
    env.pop("nnUNet_extTrainer")  # find_best does not need the trainer class
    run("nnUNetv2_find_best_configuration", [str(RGB_ID), "-c", "2d", "-tr", SMOKE, "-f", "0", "1", "-np", "1"], env)
    base = Path(env["nnUNet_results"]) / rgb["name"]
    info = json.loads((base / "inference_information.json").read_text())
    assert info["best_model_or_ensemble"]["selected_model_or_models"][0]["trainer"] == SMOKE
    assert (_model_dir(env, rgb["name"], SMOKE) / "crossval_results_folds_0_1" / "summary.json").is_file()


def test_wrong_channel_count_at_predict_time(rgb):
    grey = rgb["work"] / "grey_in"
    grey.mkdir()
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(grey / "g_0000.png")
    proc = run("nnUNetv2_predict", ["-i", str(grey), "-o", str(rgb["work"] / "grey_out"), "-d", str(RGB_ID), "-c",
                                    "2d", "-tr", SMOKE, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"],
               rgb["env"], expect_ok=False)
    assert proc.returncode != 0
    assert "M2SNet was built for (B, 3, H, W) inputs" in proc.stdout + proc.stderr


def test_resume_with_c_after_a_crash(rgb):
    trainer = "M2SNetTrainer_smokeResume"
    crashed = run("nnUNetv2_train", [str(RGB_ID), "2d", "0", "-tr", trainer, "-device", "cpu"],
                  {**rgb["env"], "M2S_TEST_CRASH": "1"}, expect_ok=False)
    assert crashed.returncode == 3
    fold = _model_dir(rgb["env"], rgb["name"], trainer) / "fold_0"
    assert (fold / "checkpoint_latest.pth").is_file() and not (fold / "checkpoint_final.pth").exists()
    resumed = run("nnUNetv2_train", [str(RGB_ID), "2d", "0", "-tr", trainer, "-device", "cpu", "--c"], rgb["env"])
    assert "Epoch 1" in resumed.stdout and "Epoch 0" not in resumed.stdout
    assert "ImageNet" not in resumed.stdout
    final = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert final["current_epoch"] == 2


def test_lossnet_trainer_with_pretrained_weights_keeps_vgg_out_of_checkpoint(rgb, tmp_path):
    from torchvision.models import vgg16

    vgg_file = tmp_path / "vgg16_test.pth"
    torch.save(vgg16(weights=None).state_dict(), vgg_file)  # random stand-in: offline machine, see README
    trainer = "M2SNetTrainer_smokeLossNet"
    smoke_ckpt = _model_dir(rgb["env"], rgb["name"], SMOKE) / "fold_0" / "checkpoint_final.pth"
    proc = run("nnUNetv2_train", [str(RGB_ID), "2d", "1", "-tr", trainer, "-device", "cpu",
                                  "-pretrained_weights", str(smoke_ckpt)],
               {**rgb["env"], "M2S_NNUNET_VGG16_WEIGHTS": str(vgg_file)})
    assert "lossnet" in proc.stdout  # the per-epoch log of the two loss terms
    ckpt = torch.load(_model_dir(rgb["env"], rgb["name"], trainer) / "fold_1" / "checkpoint_final.pth",
                      map_location="cpu", weights_only=False)
    smoke = torch.load(smoke_ckpt, map_location="cpu", weights_only=False)
    assert set(ckpt["network_weights"]) == set(smoke["network_weights"])


def test_missing_pretrained_weights_fail_fast_with_instructions(rgb, tmp_path):
    env = {**rgb["env"], "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path)}
    for var in ("M2S_NNUNET_ENCODER_WEIGHTS", "M2S_NNUNET_WEIGHTS_DIR", "M2S_NNUNET_PRETRAINED"):
        env.pop(var, None)
    proc = run("nnUNetv2_train", [str(RGB_ID), "2d", "0", "-tr", "M2SNetTrainer_resnet18", "-device", "cpu"],
               env, expect_ok=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "MissingWeightsError" in output
    assert "M2S_NNUNET_ENCODER_WEIGHTS" in output and "M2S_NNUNET_VGG16_WEIGHTS" in output  # both, in one go
    assert "Epoch 0" not in output


def test_masks_saved_as_0_255_get_a_clear_error(tmp_path_factory):
    work = tmp_path_factory.mktemp("bad")
    env = make_env(work)
    folder = make_rgb_dataset(env["nnUNet_raw"], BAD_ID, "Bad255", num_train=6, num_test=0, size=(64, 64))
    for label in (folder / "labelsTr").glob("*.png"):
        Image.fromarray((np.asarray(Image.open(label)) * 255).astype(np.uint8)).save(label)
    run("nnUNetv2_plan_and_preprocess", ["-d", str(BAD_ID), "-c", "2d", "-np", "1", "-npfp", "1"], env)
    proc = run("nnUNetv2_train", [str(BAD_ID), "2d", "0", "-tr", SMOKE, "-device", "cpu"], env, expect_ok=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "label values [255]" in output and "0/255" in output


def test_m2snet_plans_in_train_predict_and_find_best(rgb):
    env = rgb["env"]
    proc = subprocess.run([sys.executable, "-m", "m2s_nnunet.cli", "plan", "-d", str(RGB_ID), "--encoder", "resnet18"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "M2SNetPlans.json" in proc.stdout
    for fold in ("0", "1"):
        run("nnUNetv2_train", [str(RGB_ID), "2d", fold, "-tr", SMOKE, "-p", "M2SNetPlans", "-device", "cpu", "--npz"],
            env)
    model = _model_dir(env, rgb["name"], SMOKE, plans="M2SNetPlans")
    assert (model / "fold_1" / "checkpoint_final.pth").is_file()
    assert json.loads((model / "plans.json").read_text())["configurations"]["2d"]["m2snet"]["encoder"] == "resnet18"
    run("nnUNetv2_find_best_configuration", [str(RGB_ID), "-c", "2d", "-tr", SMOKE, "-p", "M2SNetPlans",
                                             "-f", "0", "1", "-np", "1"], env)
    out = rgb["work"] / "pred_m2splans"
    run("nnUNetv2_predict", ["-i", str(rgb["raw"] / "imagesTs"), "-o", str(out), "-d", str(RGB_ID), "-c", "2d",
                             "-tr", SMOKE, "-p", "M2SNetPlans", "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"],
        env)
    assert len(list(out.glob("*.png"))) == 2


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """A generated CT-like volume dataset planned for 2d and 3d_fullres, with a 2-fold split."""
    work = tmp_path_factory.mktemp("ct")
    env = make_env(work)
    folder = make_ct_dataset(env["nnUNet_raw"], CT_ID, "CT", num_train=6, num_test=1, shape=(16, 64, 64))
    run("nnUNetv2_plan_and_preprocess", ["-d", str(CT_ID), "-c", "2d", "3d_fullres", "-np", "1", "-npfp", "1",
                                         "--verify_dataset_integrity"], env)
    cases = sorted(p.name[: -len(".nii.gz")] for p in (folder / "labelsTr").glob("*.nii.gz"))
    write_two_fold_split(Path(env["nnUNet_preprocessed"]) / folder.name, cases)
    return {"env": env, "work": work, "raw": folder, "name": folder.name}


def test_ct_volumes_trained_in_2d(ct):
    env, folder = ct["env"], ct["raw"]
    plans = json.loads((Path(env["nnUNet_preprocessed"]) / folder.name / "nnUNetPlans.json").read_text())
    assert plans["configurations"]["2d"]["normalization_schemes"] == ["CTNormalization"]
    run("nnUNetv2_train", [str(CT_ID), "2d", "0", "-tr", SMOKE, "-device", "cpu", "--npz"], env)
    out = ct["work"] / "pred2d"
    run("nnUNetv2_predict", ["-i", str(folder / "imagesTs"), "-o", str(out), "-d", str(CT_ID), "-c", "2d",
                             "-tr", SMOKE, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"], env)
    import SimpleITK as sitk

    pred = sitk.ReadImage(str(out / "case_006.nii.gz"))
    ref = sitk.ReadImage(str(folder / "imagesTs" / "case_006_0000.nii.gz"))
    assert pred.GetSize() == ref.GetSize() and pred.GetSpacing() == pytest.approx(ref.GetSpacing())
    summary = json.loads((_model_dir(env, folder.name, SMOKE) / "fold_0" / "validation" / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == 3


def test_ct_volumes_3d_fullres_predict_evaluate_and_find_best_across_2d_and_3d(ct):
    env, folder = ct["env"], ct["raw"]
    for fold in ("0", "1"):
        proc = run("nnUNetv2_train", [str(CT_ID), "3d_fullres", fold, "-tr", SMOKE, "-device", "cpu", "--npz"], env)
        if fold == "0":
            assert "M2SNet (3D): encoder plans-residual-encoder-3d" in proc.stdout
    run("nnUNetv2_train", [str(CT_ID), "2d", "1", "-tr", SMOKE, "-device", "cpu", "--npz"], env)
    ckpt = torch.load(_model_dir(env, folder.name, SMOKE, config="3d_fullres") / "fold_0" / "checkpoint_final.pth",
                      map_location="cpu", weights_only=False)
    assert ckpt["inference_allowed_mirroring_axes"] == (0, 1, 2)
    assert ckpt["network_weights"]["head.seg_layers.0.weight"].dim() == 5
    out = ct["work"] / "pred3d"
    run("nnUNetv2_predict", ["-i", str(folder / "imagesTs"), "-o", str(out), "-d", str(CT_ID), "-c", "3d_fullres",
                             "-tr", SMOKE, "-f", "0", "1", "-device", "cpu", "-npp", "1", "-nps", "1"], env)
    from m2s_nnunet.evaluation import evaluate_folder

    result = evaluate_folder(out, folder / "labelsTs", progress=False)
    assert result.is_3d and len(result.per_case) == 1
    no_ext = {k: v for k, v in env.items() if k != "nnUNet_extTrainer"}
    run("nnUNetv2_find_best_configuration", [str(CT_ID), "-c", "2d", "3d_fullres", "-tr", SMOKE, "-f", "0", "1",
                                             "-np", "1"], no_ext)
    ensembles = Path(env["nnUNet_results"]) / folder.name / "ensembles"
    assert any("2d" in p.name and "3d_fullres" in p.name for p in ensembles.iterdir())


def test_3d_lowres_and_cascade(tmp_path_factory):
    """nnU-Net's cascade with M2SNet in both stages: 3d_lowres (2 folds, exporting next-stage predictions),
    then 3d_cascade_fullres (input = image + one-hot low-res segmentation), then cascaded prediction."""
    work = tmp_path_factory.mktemp("cascade")
    env = make_env(work)
    folder = make_ct_dataset(env["nnUNet_raw"], 934, "Cascade", num_train=4, num_test=1, shape=(48, 128, 128),
                             spacing=(1.0, 1.0, 1.0))
    # a small memory target makes nnU-Net's planner choose a patch much smaller than the image -> 3d_lowres
    run("nnUNetv2_plan_and_preprocess", ["-d", "934", "-c", "3d_lowres", "3d_fullres", "-np", "1", "1", "-npfp",
                                         "1", "-gpu_memory_target", "0.3"], env)
    plans = json.loads((Path(env["nnUNet_preprocessed"]) / folder.name / "nnUNetPlans.json").read_text())
    assert {"3d_lowres", "3d_cascade_fullres"} <= set(plans["configurations"])
    cases = sorted(p.name[: -len(".nii.gz")] for p in (folder / "labelsTr").glob("*.nii.gz"))
    write_two_fold_split(Path(env["nnUNet_preprocessed"]) / folder.name, cases)
    for fold in ("0", "1"):
        run("nnUNetv2_train", ["934", "3d_lowres", fold, "-tr", NO_MIRROR, "-device", "cpu"], env)
    next_stage = _model_dir(env, folder.name, NO_MIRROR, config="3d_lowres") / "predicted_next_stage"
    assert len(list((next_stage / "3d_cascade_fullres").glob("case_*"))) == 4  # every training case, both folds
    proc = run("nnUNetv2_train", ["934", "3d_cascade_fullres", "0", "-tr", NO_MIRROR, "-device", "cpu"], env)
    assert "M2SNet (3D)" in proc.stdout
    ckpt = torch.load(_model_dir(env, folder.name, NO_MIRROR, config="3d_cascade_fullres") / "fold_0" /
                      "checkpoint_final.pth", map_location="cpu", weights_only=False)
    first_conv = next(v for k, v in ckpt["network_weights"].items() if k.startswith("encoder.") and v.dim() == 5)
    assert first_conv.shape[1] == 1 + 1  # image + one-hot of the one foreground label from the low-res stage
    low, full = work / "pred_low", work / "pred_full"
    common = ["-d", "934", "-tr", NO_MIRROR, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_tta"]
    run("nnUNetv2_predict", ["-i", str(folder / "imagesTs"), "-o", str(low), "-c", "3d_lowres", *common], env)
    run("nnUNetv2_predict", ["-i", str(folder / "imagesTs"), "-o", str(full), "-c", "3d_cascade_fullres",
                             "-prev_stage_predictions", str(low), *common], env)
    assert (full / "case_004.nii.gz").is_file()


def test_deep_supervision_variant_trains_and_predicts_single_output(rgb):
    trainer = "M2SNetTrainer_smokeDS"
    proc = run("nnUNetv2_train", [str(RGB_ID), "2d", "0", "-tr", trainer, "-device", "cpu"], rgb["env"])
    assert "side heads True" in proc.stdout
    model = _model_dir(rgb["env"], rgb["name"], trainer)
    keys = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                      weights_only=False)["network_weights"]
    assert {f"head.seg_layers.{i}.weight" for i in range(4)} <= set(keys)
    out = rgb["work"] / "pred_ds"
    run("nnUNetv2_predict", ["-i", str(rgb["raw"] / "imagesTs"), "-o", str(out), "-d", str(RGB_ID), "-c", "2d",
                             "-tr", trainer, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"], rgb["env"])
    assert len(list(out.glob("*.png"))) == 2


def test_polyp_paper_preset_plans_and_trains(rgb):
    """The paper's polyp protocol applied to a dataset's fingerprint: 352x352, batch 16, Res2Net-50 pinned."""
    env = rgb["env"]
    proc = subprocess.run([sys.executable, "-m", "m2s_nnunet.cli", "plan", "-d", str(RGB_ID), "--preset", "polyp_paper",
                           "--plans-name", "M2SNetPlans_polyp"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "M2SNetTrainer_50epochs" in proc.stdout  # the trainer the protocol was written for
    plans_file = Path(env["nnUNet_preprocessed"]) / rgb["name"] / "M2SNetPlans_polyp.json"
    config = json.loads(plans_file.read_text())["configurations"]["2d"]
    assert (config["patch_size"], config["batch_size"]) == ([352, 352], 16)
    assert config["m2snet"]["encoder"] == "res2net50d" and config["m2snet"]["preset"] == "polyp_paper"
    proc = run("nnUNetv2_train", [str(RGB_ID), "2d", "0", "-tr", SMOKE, "-p", "M2SNetPlans_polyp", "-device", "cpu"],
               env)
    assert "encoder res2net50d" in proc.stdout
    model = _model_dir(env, rgb["name"], SMOKE, plans="M2SNetPlans_polyp")
    assert (model / "fold_0" / "validation" / "summary.json").is_file()


def test_ct_3d_preset_plans_and_trains(ct):
    """The 3D CT preset: the plans encoder with the refinement path, sized for 11 GB."""
    env = ct["env"]
    proc = subprocess.run([sys.executable, "-m", "m2s_nnunet.cli", "plan", "-d", str(CT_ID), "--preset", "ct_3d",
                           "--plans-name", "M2SNetPlans_ct"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    plans = json.loads((Path(env["nnUNet_preprocessed"]) / ct["name"] / "M2SNetPlans_ct.json").read_text())
    block = plans["configurations"]["3d_fullres"]["m2snet"]
    assert block["refine"] is True and block["memory_model"]["gpu_memory_target_gb"] == 11
    assert "preset" not in plans["configurations"]["2d"]["m2snet"]  # configurations it does not name: as usual
    proc = run("nnUNetv2_train", [str(CT_ID), "3d_fullres", "0", "-tr", SMOKE, "-p", "M2SNetPlans_ct", "-device",
                                  "cpu"], env)
    assert "refinement path True" in proc.stdout
