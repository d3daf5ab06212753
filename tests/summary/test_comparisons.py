"""``m2s_nnunet.summary.comparisons``: default pairs, paired statistics and split checks."""

from __future__ import annotations

import numpy as np
import pytest
from fake_results import BASE, BETTER, EMPTY, fold_cases, write_fold

from m2s_nnunet import summary


def test_default_pairs_and_paired_statistics(results):
    res = summary.summarize("Dataset777_Fake", results)
    pairs = {(c.a, c.b) for c in res.comparisons}
    assert pairs == {
        ("M2SNetTrainer__nnUNetPlans__2d", "nnUNetTrainer__nnUNetPlans__2d"),
        ("M2SNetTrainer_5epochs__nnUNetPlans__2d", "nnUNetTrainer__nnUNetPlans__2d"),
    }
    comp = next(c for c in res.comparisons if c.a == "M2SNetTrainer__nnUNetPlans__2d")
    assert comp.identical_splits
    assert any("only nnUNetTrainer__nnUNetPlans__2d has validation results" in n for n in comp.split_notes)
    row = comp.stats.iloc[0]
    common = [c for f in (0, 1, 2, 4) for c in fold_cases(f) if c != EMPTY]
    diffs = np.array([BETTER[c] - BASE[c] for c in common])
    assert row["n"] == 15 and row["excluded (NaN)"] == 1
    assert row["mean diff"] == pytest.approx(diffs.mean())
    assert row["CI low"] <= diffs.mean() <= row["CI high"]
    assert row["CI low"] >= diffs.min() and row["CI high"] <= diffs.max()
    assert row["A better"] == 15 and row["B better"] == 0
    assert row["p"] == pytest.approx(2 / 2**15)  # exact two-sided Wilcoxon, all 15 differences positive


def test_explicit_compare_and_split_mismatch(results):
    ds = results / "Dataset777_Fake"
    other = ds / "OtherTrainer__nnUNetPlans__2d"
    other.mkdir()
    (other / "dataset.json").write_text((ds / "nnUNetTrainer__nnUNetPlans__2d" / "dataset.json").read_text())
    swapped = [fold_cases(0)[:3] + [fold_cases(1)[0]], fold_cases(1)[1:] + [fold_cases(0)[3]]]
    for f, cases in enumerate(swapped):
        write_fold(other, f, BASE, cases)
    res = summary.summarize("777", results, compare_pairs=[("OtherTrainer", "nnUNetTrainer")], expected_folds=[0, 1])
    comp = res.comparisons[0]
    assert not comp.identical_splits
    assert "NOT identical" in comp.split_notes[0]
    assert any("fold 0: validation cases differ" in n for n in comp.split_notes)
    assert comp.stats.iloc[0]["n"] == 7 and comp.stats.iloc[0]["p"] == 1.0  # same Dice: every difference 0
    with pytest.raises(summary.SummaryError, match="ambiguous"):
        summary.summarize("777", results, compare_pairs=[("M2SNet", "nnUNetTrainer")])
