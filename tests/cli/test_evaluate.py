"""``m2s-nnunet evaluate``: outputs written, the output folder checked before scoring, write errors named."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from fake_predictions import make_folders

from m2s_nnunet import cli, evaluation
from m2s_nnunet.cli import evaluate as evaluate_command


def test_cli_evaluate_writes_outputs(tmp_path, capsys):
    pred_dir, gt_dir, _ = make_folders(tmp_path)
    parser = argparse.ArgumentParser()
    evaluate_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["evaluate", str(pred_dir), str(gt_dir), "-o", str(tmp_path / "ev")])
    assert evaluate_command.run(args) == 0
    for name in ("per_case.csv", "aggregate.csv", "aggregate.md"):
        assert (tmp_path / "ev" / name).stat().st_size > 0
    out = capsys.readouterr().out
    assert "mDice" in out and "py_sod_metrics.WeightedFmeasure" in out
    assert cli.main(["evaluate", str(pred_dir), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "reference folder does not exist" in err and str(tmp_path / "nope") in err and "Traceback" not in err


def test_unwritable_output_is_refused_before_scoring(tmp_path, readonly_dir, capsys, monkeypatch):
    pred_dir, gt_dir, _ = make_folders(tmp_path)
    monkeypatch.setattr(evaluation, "evaluate_folder", lambda *a, **k: pytest.fail("scored before the check"))
    assert cli.main(["evaluate", str(pred_dir), str(gt_dir), "-o", str(readonly_dir / "ev")]) == 2
    err = capsys.readouterr().err
    assert "not writable" in err and str(readonly_dir) in err and "Traceback" not in err


def test_full_disk_while_writing_names_the_file(tmp_path, capsys):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    pred_dir, gt_dir, _ = make_folders(tmp_path)
    out = tmp_path / "ev"
    out.mkdir()
    (out / "per_case.csv").symlink_to("/dev/full")  # every write there fails with ENOSPC, as on a full disk
    assert cli.main(["evaluate", str(pred_dir), str(gt_dir), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "per_case.csv" in err and "disk is full" in err
