"""``m2s_nnunet.summary.report``: the files a summary writes and the terminal text (the command: tests/cli)."""

from __future__ import annotations

from m2s_nnunet import summary


def test_write_summary_files_lists_what_it_wrote(results, tmp_path):
    res = summary.summarize("777", results, compare_pairs=[("M2SNetTrainer", "nnUNetTrainer")])
    written = summary.write_summary_files(res, tmp_path / "out")
    names = [p.name for p in written]
    assert names == ["folds.csv", "models.csv", "comparisons.csv", "paired_cases.csv", "folds_dice.png",
                     "paired_1.png", "training_curves.png", "summary.md"]
    assert all(p.stat().st_size > 0 for p in written)
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "## Paired comparison: A = `M2SNetTrainer__nnUNetPlans__2d`" in md and "![paired_1](paired_1.png)" in md
    text = summary.format_text(res)
    assert text.startswith(f"Cross-validation summary of {res.results_dir}") and "Dice (mean ± std)" in text
