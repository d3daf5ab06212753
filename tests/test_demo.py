"""The README's main job, `m2s-nnunet demo`, end to end (with a 45-iteration recipe trainer to stay fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from nnunet_runner import TEST_TRAINERS
from PIL import Image

from m2s_nnunet.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_runs_every_step_and_reuses_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("nnUNet_extTrainer", str(TEST_TRAINERS))  # the demo adds ours in front
    result = run_demo(tmp_path / "work", trainer="M2SNetTrainer_demoShort", num_train=8, num_test=2, size=64)
    out = capsys.readouterr().out
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]", "nnU-Net Dice", "Sm", "Outputs"):
        assert step in out
    # the reported test Dice is what the written predictions score against the generated labels
    work = tmp_path / "work"
    labels = next((work / "nnUNet_raw").glob("Dataset990_*")) / "labelsTs"
    per_case = []
    for label_file in sorted(labels.glob("*.png")):
        truth = np.asarray(Image.open(label_file)) == 1
        predicted = np.asarray(Image.open(work / "predictions" / "M2SNetTrainer_demoShort" / label_file.name)) == 1
        both = truth.sum() + predicted.sum()
        per_case.append(2 * (truth & predicted).sum() / both if both else np.nan)
    assert len(per_case) == 2 and any(0 < d < 1 for d in per_case)  # partial overlaps: Dice differs from IoU
    assert result["test"]["nnU-Net Dice"] == pytest.approx(np.nanmean(per_case), abs=1e-6)
    saved = json.loads((tmp_path / "work" / "demo_result.json").read_text())
    assert saved["validation_dice_fold0"] == result["validation_dice_fold0"]
    assert (tmp_path / "work" / "evaluation" / "M2SNetTrainer_demoShort" / "per_case.csv").is_file()
    run_demo(tmp_path / "work", trainer="M2SNetTrainer_demoShort", num_train=8, num_test=2, size=64)
    again = capsys.readouterr().out
    assert "exists, reusing it" in again and "already trained, reusing it" in again
