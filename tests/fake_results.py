"""A fake ``nnUNet_results`` tree with known numbers, shared by the summary and ``summarize`` command tests.

``Dataset777_Fake`` holds nnUNetTrainer (5 folds and nnU-Net's cross-validation result), M2SNetTrainer (fold 3
missing, plus a ``fold_all`` that must stay out of the cross-validation) and M2SNetTrainer_5epochs (fold 0 only,
fold 1 started but never validated). Use the ``results`` fixture through a ``conftest.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

CASES = [f"case_{i:02d}" for i in range(20)]
EMPTY = "case_07"  # empty prediction + empty reference: NaN Dice in nnU-Net's convention
BASE = {c: float("nan") if c == EMPTY else 0.5 + 0.02 * i for i, c in enumerate(CASES)}
BETTER = {c: v + 0.01 + 0.002 * i for i, (c, v) in enumerate(BASE.items())}


def fold_cases(fold: int) -> list[str]:
    return CASES[4 * fold : 4 * fold + 4]


def write_fold(model_dir: Path, fold: int | str, dice: dict[str, float], cases: list[str] | None = None) -> None:
    """A fold folder as nnU-Net leaves it: validation/summary.json, a training log, a final checkpoint."""
    cases = cases or fold_cases(fold)
    val = model_dir / f"fold_{fold}" / "validation"
    val.mkdir(parents=True)
    per_case = []
    for c in cases:
        d = dice[c]
        iou = d / (2 - d) if not np.isnan(d) else float("nan")
        per_case.append(
            {
                "prediction_file": str(val / f"{c}.png"),
                "reference_file": f"/gt/{c}.png",
                "metrics": {"1": {"Dice": d, "IoU": iou, "TP": 1.0, "FP": 0.0, "FN": 0.0, "TN": 9.0}},
            }
        )
    mean = {m: float(np.nanmean([pc["metrics"]["1"][m] for pc in per_case])) for m in ("Dice", "IoU")}
    (val / "summary.json").write_text(
        json.dumps({"foreground_mean": mean, "mean": {"1": mean}, "metric_per_case": per_case})
    )
    (model_dir / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"")
    write_log(
        model_dir / f"fold_{fold}" / "training_log_2025_1_1_10_00_00.txt",
        offset=0.1 * fold if isinstance(fold, int) else 0.0,
    )


def write_log(path: Path, offset: float = 0.0, epochs: int = 3) -> None:
    lines = ["2025-01-01 10:00:00.123456: Using splits from existing split file: /x/splits_final.json "]
    for e in range(epochs):
        ts = f"2025-01-01 10:0{e}:00.{e:06d}:"
        lines += [
            f"{ts} ",
            f"{ts} Epoch {e} ",
            f"{ts} Current learning rate: 0.0{9 - e} ",
            f"{ts} train_loss {-0.1 * e - offset:.4f} ",
            f"{ts} val_loss {-0.05 * e - offset:.4f} ",
            f"{ts} Pseudo dice [np.float32({0.2 * e:.4f})] ",
            f"{ts} Epoch time: 12.3{e} s ",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_model(ds: Path, name: str, dice: dict[str, float], folds: list[int]) -> Path:
    model = ds / name
    model.mkdir(parents=True)
    (model / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "polyp": 1}, "file_ending": ".png"}))
    for f in folds:
        write_fold(model, f, dice)
    return model


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    ds = tmp_path / "results" / "Dataset777_Fake"
    base = write_model(ds, "nnUNetTrainer__nnUNetPlans__2d", BASE, [0, 1, 2, 3, 4])
    cv = base / "crossval_results_folds_0_1_2_3_4"
    cv.mkdir()
    pooled = float(np.nanmean(list(BASE.values())))
    (cv / "summary.json").write_text(
        json.dumps({"foreground_mean": {"Dice": pooled}, "mean": {"1": {"Dice": pooled}}, "metric_per_case": []})
    )
    m2s = write_model(ds, "M2SNetTrainer__nnUNetPlans__2d", BETTER, [0, 1, 2, 4])  # fold 3 missing
    write_fold(m2s, "all", {c: 0.99 for c in CASES}, CASES)  # trained on everything: must not enter the CV
    short = write_model(ds, "M2SNetTrainer_5epochs__nnUNetPlans__2d", BETTER, [0])
    write_log(short / "fold_1" / "training_log_2025_1_2_10_00_00.txt")  # started, never validated
    return tmp_path / "results"
