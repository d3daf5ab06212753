"""``m2s-nnunet summarize``: tables and plots written, missing folds reported, the output folder checked first
(the ``results`` fixture comes from ``tests/fake_results.py`` through ``conftest.py``)."""

from __future__ import annotations

import argparse

import pytest

from m2s_nnunet import cli, summary
from m2s_nnunet.cli import summarize as summarize_command


def test_outputs_written_and_missing_fold_reported(results, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    summarize_command.add_parser(parser.add_subparsers())
    out = tmp_path / "out"
    args = parser.parse_args(["summarize", "777", "--results", str(results), "-o", str(out)])
    assert summarize_command.run(args) == 0
    for name in (
        "folds.csv",
        "models.csv",
        "comparisons.csv",
        "paired_cases.csv",
        "summary.md",
        "folds_dice.png",
        "paired_1.png",
        "paired_2.png",
        "training_curves.png",
    ):
        assert (out / name).stat().st_size > 0, name
    md = (out / "summary.md").read_text()
    assert "MISSING: M2SNetTrainer__nnUNetPlans__2d fold 3: no fold folder" in md
    assert "INCOMPLETE" in md and "![folds_dice](folds_dice.png)" in md
    text = capsys.readouterr().out
    assert "MISSING" in text and "Paired comparison" in text and "±" in text
    assert cli.main(["summarize", "999", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err


def test_unwritable_summary_output_is_refused_before_work(results, readonly_dir, capsys, monkeypatch):
    monkeypatch.setattr(summary, "summarize", lambda *a, **k: pytest.fail("summarised before the check"))
    assert cli.main(["summarize", "777", "--results", str(results), "-o", str(readonly_dir / "out")]) == 2
    err = capsys.readouterr().err
    assert "not writable" in err and "Traceback" not in err
