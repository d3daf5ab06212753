"""``m2s_nnunet.evaluation.report``: the Markdown table and the files an evaluation writes (the command: tests/cli)."""

from __future__ import annotations

import pandas as pd
from fake_predictions import make_folders

from m2s_nnunet import evaluation


def test_markdown_table_formats_numbers():
    df = pd.DataFrame({"label": ["1", "2"], "Dice": [0.5, float("nan")], "p": [1e-6, 0.25]})
    assert evaluation.markdown_table(df).splitlines() == [
        "| label | Dice | p |", "|---|---|---|", "| 1 | 0.5000 | 1.00e-06 |", "| 2 | nan | 0.2500 |"]


def test_write_evaluation_files(tmp_path):
    pred_dir, gt_dir, _ = make_folders(tmp_path)
    res = evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    written = evaluation.write_evaluation_files(res, tmp_path / "ev")
    assert [p.name for p in written] == ["per_case.csv", "aggregate.csv", "aggregate.md"]
    md = (tmp_path / "ev" / "aggregate.md").read_text()
    assert md.startswith("# Evaluation\n") and "## Notes" in md and "py_sod_metrics.WeightedFmeasure" in md
