"""Real data: the from-scratch recipe trains on a Kvasir-SEG subset and must beat what a broken network reaches.

The floor is computed from the validation references themselves: a network that predicts every pixel as
polyp (the best a network that learned nothing but "say polyp" gets; empty or random outputs score lower)
reaches the Dice of the all-foreground mask. The trained model must beat it by 0.1. The Dice is also
printed and recorded as a test property. Skipped where ``../shared/data`` is absent. Kvasir-SEG is
research-use only: it is converted into a temporary folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED_DATA, requires_shared_data
from nnunet_runner import make_env, run

from m2s_nnunet.conversion import ConvertOptions, convert

pytestmark = [pytest.mark.slow, pytest.mark.shared_data, requires_shared_data]

TRAINER = "M2SNetTrainer_scratch_300its"  # the from-scratch recipe, 300 iterations (tests/ext_trainers)


def test_recipe_learns_on_kvasir_subset(tmp_path, capsys, record_property):
    env = make_env(tmp_path)
    source = SHARED_DATA / "polyp" / "Kvasir-SEG-train"
    convert(ConvertOptions(images=source / "images", masks=source / "masks", dataset_id=941, name="KvasirSubset",
                           out=Path(env["nnUNet_raw"]), resize=(128, 128), limit=80, progress=False))
    run("nnUNetv2_plan_and_preprocess", ["-d", "941", "-c", "2d", "-np", "1", "-npfp", "1",
                                         "--verify_dataset_integrity"], env)
    run("nnUNetv2_train", ["941", "2d", "0", "-tr", TRAINER, "-device", "cpu"], env, timeout=1200)
    summary = Path(env["nnUNet_results"]) / "Dataset941_KvasirSubset" / f"{TRAINER}__nnUNetPlans__2d" / "fold_0"
    dice = json.loads((summary / "validation" / "summary.json").read_text())["foreground_mean"]["Dice"]
    record_property("kvasir_subset_val_dice", dice)
    with capsys.disabled():
        print(f"\n[real data] {TRAINER} on 80 Kvasir-SEG images (128x128, 64 train / 16 val, fold 0, "
              f"300 iterations on CPU): validation Dice {dice:.3f}")
    floor = _all_foreground_dice(Path(env["nnUNet_preprocessed"]) / "Dataset941_KvasirSubset", summary) + 0.1
    record_property("kvasir_subset_floor", floor)
    print(f"[real data] floor (all-foreground Dice + 0.1): {floor:.3f}")
    assert dice > floor, f"validation Dice {dice:.3f} is not above what a broken network reaches ({floor:.3f})"


def _all_foreground_dice(preprocessed: Path, fold_dir: Path) -> float:
    """Mean per-case Dice of predicting foreground everywhere, over the fold's validation cases."""
    import numpy as np
    from PIL import Image

    cases = [c["reference_file"] for c in json.loads((fold_dir / "validation" / "summary.json").read_text())
             ["metric_per_case"]]
    scores = []
    for reference in cases:
        mask = np.asarray(Image.open(reference)) > 0
        scores.append(2 * mask.sum() / (mask.sum() + mask.size))  # Dice of an all-ones prediction
    return float(np.mean(scores))
