"""``m2s_nnunet.summary.tables``: per-fold and per-model numbers on the fake results tree with known values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fake_results import BASE, BETTER, fold_cases

from m2s_nnunet import summary


def test_summary_numbers(results):
    res = summary.summarize("777", results)
    table = res.model_table.set_index(["model", "label"])
    m2s = table.loc[("M2SNetTrainer__nnUNetPlans__2d", "1 (polyp)")]
    fold_means = [np.nanmean([BETTER[c] for c in fold_cases(f)]) for f in (0, 1, 2, 4)]
    assert m2s["folds_ok"] == "4/5"
    assert m2s["Dice mean"] == pytest.approx(np.mean(fold_means))
    assert m2s["Dice std"] == pytest.approx(np.std(fold_means, ddof=1))
    pooled_cases = [BETTER[c] for f in (0, 1, 2, 4) for c in fold_cases(f)]
    assert m2s["Dice pooled"] == pytest.approx(np.nanmean(pooled_cases))
    assert m2s["n_cases"] == 16
    base = table.loc[("nnUNetTrainer__nnUNetPlans__2d", "1 (polyp)")]
    assert base["Dice pooled"] == pytest.approx(np.nanmean(list(BASE.values())))
    assert base["Dice crossval_results_folds_0_1_2_3_4"] == pytest.approx(base["Dice pooled"])
    folds = res.folds_table
    missing = folds[(folds["model"] == "M2SNetTrainer__nnUNetPlans__2d") & (folds["fold"] == "3")]
    assert missing["status"].tolist() == ["missing"]
    assert any("MISSING: M2SNetTrainer__nnUNetPlans__2d fold 3" in n for n in res.notes)
    assert any("INCOMPLETE: M2SNetTrainer_5epochs__nnUNetPlans__2d fold 1" in n for n in res.notes)
    fold_all = folds[(folds["model"] == "M2SNetTrainer__nnUNetPlans__2d") & (folds["fold"] == "all")]
    assert fold_all["Dice"].iloc[0] == pytest.approx(0.99)  # listed, but not in the CV numbers above


def test_two_labels_get_fg_mean_rows(tmp_path):
    ds = tmp_path / "res" / "Dataset010_Two"
    for name, shift in (("M2SNetTrainer__P__2d", 0.1), ("nnUNetTrainer__P__2d", 0.0)):
        val = ds / name / "fold_0" / "validation"
        val.mkdir(parents=True)
        (ds / name / "dataset.json").write_text(
            json.dumps({"labels": {"background": 0, "ggo": 1, "cons": 2}, "file_ending": ".png"})
        )
        per_case = [
            {
                "prediction_file": f"{c}.png",
                "metrics": {"1": {"Dice": 0.5 + shift}, "2": {"Dice": 0.3 + shift + i / 10}},
            }
            for i, c in enumerate(("a", "b", "c"))
        ]
        mean = {"1": {"Dice": 0.5 + shift}, "2": {"Dice": 0.4 + shift}}
        fg = {"Dice": 0.45 + shift}
        (val / "summary.json").write_text(
            json.dumps({"foreground_mean": fg, "mean": mean, "metric_per_case": per_case})
        )
    res = summary.summarize("10", tmp_path / "res", expected_folds=[0])
    m2s = res.model_table.set_index(["model", "label"]).loc["M2SNetTrainer__P__2d"]
    assert list(m2s.index) == ["1 (ggo)", "2 (cons)", "fg mean"]
    assert m2s.loc["fg mean", "Dice pooled"] == pytest.approx((0.6 + 0.5) / 2)
    stats = res.comparisons[0].stats.set_index("label")
    assert list(stats.index) == ["1 (ggo)", "2 (cons)", "fg mean"]
    assert stats.loc["fg mean", "mean diff"] == pytest.approx(0.1)
    assert stats.loc["2 (cons)", "n"] == 3
