"""RESULTS.md's tables of the committed result files trace to those files (issue 23).

``bench/results_tables.py`` renders each file of ``bench/results`` with the code that wrote it. These tests fail
when a generated block in RESULTS.md differs from its file, when a number in a block is edited by hand, when a
committed result file has no block, when a block names a file that is gone, and when a file is missing from
the index of bench/results/README.md.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def results_tables(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import results_tables

    return results_tables


def test_every_result_file_has_its_block_and_each_matches(results_tables):
    assert results_tables.main(["--check"]) == 0


def test_every_result_file_is_listed_with_its_command():
    """bench/results/README.md is the index of the result files: each one named in a row of its table."""
    index = (BENCH / "results" / "README.md").read_text()
    unlisted = [f.name for f in sorted((BENCH / "results").glob("*.json")) if f"`{f.name}`" not in index]
    assert not unlisted, f"add a row (section, command) to bench/results/README.md for: {unlisted}"


def test_a_number_edited_in_a_block_is_caught_and_rewritten(results_tables, tmp_path, capsys):
    text = results_tables.RESULTS_MD.read_text()
    match = next(m for m in results_tables.BLOCK.finditer(text) if m["file"] == "covid_fold0_4seeds.json")
    number = re.search(r"\| (0\.\d{3}) \|", match.group(0))
    assert number, "the COVID block holds no mean Dice"
    edited = tmp_path / "RESULTS.md"
    edited.write_text(text[:match.start()] + match.group(0).replace(number.group(0), "| 0.999 |", 1)
                      + text[match.end():])
    assert results_tables.main(["--check", "--results-md", str(edited)]) == 1
    assert "the blocks of covid_fold0_4seeds.json differ from their files" in capsys.readouterr().err
    assert results_tables.main(["--write", "--results-md", str(edited)]) == 0
    assert edited.read_text() == text


def test_a_result_file_without_a_block_is_caught(results_tables, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(results_tables.RESULTS, results)
    shutil.copy(results / "covid_fold0_4seeds.json", results / "covid_fold9_new.json")
    assert results_tables.main(["--check", "--results-dir", str(results)]) == 1
    err = capsys.readouterr().err
    assert "no generated block for covid_fold9_new.json" in err and "--show FILE" in err


def test_a_block_whose_file_is_gone_is_refused(results_tables, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(results_tables.RESULTS, results)
    (results / "covid_fold0_4seeds.json").unlink()
    with pytest.raises(SystemExit, match="a block for covid_fold0_4seeds.json, which is not in"):
        results_tables.main(["--check", "--results-dir", str(results)])


def test_each_kind_of_file_renders_its_numbers(results_tables, tmp_path):
    """An accuracy.py run (its per-case means and paired test), a speed_table.py run (its ratios) and a record
    written by hand (each number under its key path); a file of no known kind is refused with a fix."""
    run = {"seed": 0, "bench": {"iterations": 150, "batch_size": 12, "seconds_per_iteration": 2.0,
                                "train_seconds": 300.0}, "val_dice": 0.5,
           "tests": {"busi": {"per_case": {"a": 0.6, "b": 0.8}}}}
    other = json.loads(json.dumps(run))
    other["tests"]["busi"]["per_case"] = {"a": 0.7, "b": 0.9}
    accuracy = {"args": {"dataset": "busi", "fold": "0", "epochs": "6", "iters": "25", "val_tta": "False",
                         "score_at": "None"}, "results": {"unet": [run], "m2s": [other]}}
    (tmp_path / "acc.json").write_text(json.dumps(accuracy))
    text = results_tables.render_file("acc.json", tmp_path)
    assert "No commit recorded" in text and "**Accuracy: busi (2d), fold 0, 6 epochs x 25 iterations**" in text
    assert "| m2s | 0 | 150 x 12 | 2.000 | 5.000 | 0.500 | 0.800 | 0.800 | +0.100 [+0.100, +0.100] |" in text
    speed = {"device": "cpu: test CPU", "provenance": {"git_commit": "abcdef0123", "git_dirty": True,
                                                       "m2s_nnunet": "9.9", "nnunetv2": "2.8.1", "torch": "2",
                                                       "environment": {"CPU_ONEDNN": "0"}},
             "matmul_peak_gflops": 100.0, "rows": [["a row", 1.234, None]],
             "args": {"warmup": 1, "repeats": 3, "matmul_n": 64, "compile": False, "channels_last": False}}
    (tmp_path / "speed.json").write_text(json.dumps(speed))
    text = results_tables.render_file("speed.json", tmp_path)
    assert text.startswith("*Recorded: commit abcdef0 with uncommitted changes, m2s-nnunet 9.9")
    assert "set in the shell: CPU_ONEDNN=0" in text and "| a row | 1.23 | - |" in text
    assert "Per network" not in text  # no training rows were measured
    (tmp_path / "hand.json").write_text(json.dumps({"what": "a timing", "commit": "c0ffee",
                                                    "times": {"fast": 1.5}, "script": "long code"}))
    text = results_tables.render_file("hand.json", tmp_path)
    assert "| times / fast | 1.5 |" in text and "long code" not in text
    (tmp_path / "odd.json").write_text("{}")
    with pytest.raises(SystemExit, match="add a renderer"):
        results_tables.render_file("odd.json", tmp_path)


def test_blocks_that_do_not_pair_up_are_refused_before_any_rewrite(results_tables, tmp_path, capsys):
    """A file with two blocks, or a block whose end line was lost: --write would otherwise rewrite the wrong span."""
    text = results_tables.RESULTS_MD.read_text()
    match = next(m for m in results_tables.BLOCK.finditer(text) if m["file"] == "covid_fold0_4seeds.json")
    edited = tmp_path / "RESULTS.md"
    for broken, expected in ((text + "\n" + match.group(0) + "\n", "covid_fold0_4seeds.json: 2 blocks"),
                             (text.replace(results_tables.END.format(file="covid_fold0_4seeds.json"), "", 1),
                              "covid_fold0_4seeds.json: 1 a start marker(s) but 0 complete block(s)")):
        edited.write_text(broken)
        assert results_tables.main(["--write", "--results-md", str(edited)]) == 1
        assert expected in capsys.readouterr().err
        assert edited.read_text() == broken  # nothing rewritten


def test_show_names_the_files_it_knows(results_tables, capsys):
    assert results_tables.main(["--show", "bench/results/covid_fold0_4seeds.json"]) == 0
    assert capsys.readouterr().out.startswith(results_tables.BEGIN.format(file="covid_fold0_4seeds.json"))
    assert results_tables.main(["--show", "nosuch.json"]) == 2
    assert "no result file nosuch.json" in capsys.readouterr().err


def test_speed_report_renders_the_same_from_its_json(results_tables):
    """``speed_table.render`` is what the script prints and what section 8 shows: the data must give the same text
    after the JSON round trip, and the predictor rows' repeat count is named where it differs."""
    import speed_table

    data = {"device": "cpu: test CPU", "provenance": {"git_commit": None, "git_dirty": False, "m2s_nnunet": "9.9",
                                                       "nnunetv2": "2.8.1", "torch": "2"},
            "2d_128": {"patch": (128, 128), "batch": 8, "steps": {"unet": {
                "params_m": 1.0, "step_s": 2.0, "gflops_per_s": 50.0, "activation_mib": 10.0,
                "profile": [["aten::conv", 3, 1.0, 50.0, 2.0]]}}},
            "predictor_repeats": 5, "predictor_128": {"U-Net": 0.25}, "matmul_peak_gflops": 100.0,
            "rows": [("a row", 1.5, None)],
            "args": {"warmup": 1, "repeats": 3, "matmul_n": 64, "compile": False, "channels_last": False}}
    text = speed_table.render(data)
    assert speed_table.render(json.loads(json.dumps(data, default=str))) == text
    assert "median of 3 interleaved repeats (5 for the predictor rows)" in text
    assert "| 2d_128 | unet | 1.00 | 2.00 | 50.00 | 50.00 | 10.00 |" in text and "Profile: 2d_128, unet" in text
    assert "predictor_128, s per image of one patch with TTA: U-Net 0.250" in text
    assert results_tables.provenance_line(data).startswith("*Recorded: commit not recorded (no git),")
