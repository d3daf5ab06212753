"""Real data, 3D: MSD Hippocampus (CC BY-SA 4.0) converted, planned, trained briefly in 3d_fullres, predicted and
evaluated. Skipped where ``../shared/data`` is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED_DATA, requires_shared_data
from nnunet_runner import make_env, run

from m2s_nnunet.conversion import ConvertOptions, convert
from m2s_nnunet.evaluation import evaluate_folder

pytestmark = [pytest.mark.slow, pytest.mark.shared_data, requires_shared_data]

SMOKE = "M2SNetTrainer_smoke"


def test_hippocampus_3d_fullres(tmp_path, capsys):
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
    proc = run("nnUNetv2_train", ["944", "3d_fullres", "0", "-tr", SMOKE, "-device", "cpu"], env)
    assert "M2SNet (3D)" in proc.stdout
    out = tmp_path / "pred"
    run("nnUNetv2_predict", ["-i", str(raw / "imagesTs"), "-o", str(out), "-d", "944", "-c", "3d_fullres",
                             "-tr", SMOKE, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_tta"],
        env)
    result = evaluate_folder(out, raw / "labelsTs", progress=False)
    assert result.is_3d and sorted(result.per_case["case"].unique()) == ["hippocampus_003", "hippocampus_004"]
    with capsys.disabled():
        print("\n[real data 3D] Hippocampus smoke run (1 epoch x 2 iterations; a plumbing check, not a score):")
        print(result.aggregate.to_string(index=False))
