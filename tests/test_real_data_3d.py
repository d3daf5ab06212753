"""Real data, 3D: MSD Hippocampus (CC BY-SA 4.0) converted, planned, trained briefly in 3d_fullres (the recipe,
60 iterations), predicted and evaluated. The validation Dice must beat what any constant output reaches on those
cases by 0.1. Skipped where the project's research data is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED_DATA, requires_shared_data
from nnunet_runner import make_env, run

from m2s_nnunet.conversion import ConvertOptions, convert
from m2s_nnunet.evaluation import evaluate_folder

pytestmark = [pytest.mark.slow, pytest.mark.shared_data, requires_shared_data]

TRAINER = "M2SNetTrainer_scratch_60its"  # tests/ext_trainers


def test_hippocampus_3d_fullres(tmp_path, capsys, record_property):
    env = make_env(tmp_path)
    source = SHARED_DATA / "mri3d" / "Hippocampus-train"
    test_list = tmp_path / "test.txt"
    test_list.write_text("hippocampus_003\nhippocampus_004\n")
    convert(ConvertOptions(images=source / "imagesTr", masks=source / "labelsTr", dataset_id=944, name="Hippo",
                           out=Path(env["nnUNet_raw"]), modality="MRI", limit=14, test_list=test_list,
                           labels=["anterior=1", "posterior=2"], progress=False))
    raw = Path(env["nnUNet_raw"]) / "Dataset944_Hippo"
    assert json.loads((raw / "dataset.json").read_text())["labels"] == {"background": 0, "anterior": 1,
                                                                        "posterior": 2}
    run("nnUNetv2_plan_and_preprocess", ["-d", "944", "-c", "3d_fullres", "-np", "1", "-npfp", "1",
                                         "--verify_dataset_integrity"], env)
    proc = run("nnUNetv2_train", ["944", "3d_fullres", "0", "-tr", TRAINER, "-device", "cpu"], env, timeout=1200)
    assert "M2SNet (3D)" in proc.stdout
    fold = Path(env["nnUNet_results"]) / "Dataset944_Hippo" / f"{TRAINER}__nnUNetPlans__3d_fullres" / "fold_0"
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    dice, floor = summary["foreground_mean"]["Dice"], _constant_output_dice(summary) + 0.1
    record_property("hippocampus_val_dice", dice)
    with capsys.disabled():
        print(f"\n[real data 3D] {TRAINER} on Hippocampus (12 training volumes, fold 0): validation Dice {dice:.3f}, "
              f"floor (best constant output + 0.1) {floor:.3f}")
    assert dice > floor, f"validation Dice {dice:.3f} is not above what a constant output reaches ({floor:.3f})"
    out = tmp_path / "pred"
    run("nnUNetv2_predict", ["-i", str(raw / "imagesTs"), "-o", str(out), "-d", "944", "-c", "3d_fullres",
                             "-tr", TRAINER, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_tta"],
        env)
    result = evaluate_folder(out, raw / "labelsTs", progress=False)
    assert result.is_3d and sorted(result.per_case["case"].unique()) == ["hippocampus_003", "hippocampus_004"]
    with capsys.disabled():
        print(result.aggregate.to_string(index=False))


def _constant_output_dice(summary: dict) -> float:
    """An upper bound of the mean foreground Dice of any constant output on the validation cases: one label
    everywhere scores 2 n / (n + N) on that label and 0 on the others; this takes every label's best at once."""
    import SimpleITK as sitk

    scores = []
    for case in summary["metric_per_case"]:
        reference = sitk.GetArrayFromImage(sitk.ReadImage(case["reference_file"]))
        per_label = [2 * (reference == label).sum() / ((reference == label).sum() + reference.size)
                     for label in (1, 2)]
        scores.append(sum(per_label) / len(per_label))
    return float(sum(scores) / len(scores))
