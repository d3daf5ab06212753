"""The README's accuracy numbers trace to committed result files (issue 23).

``bench/readme_table.py`` regenerates the README's accuracy block from ``bench/results/*.json``. These tests fail
when the block differs from what the files give, when a number is edited by hand, when "Which trainer to pick"
quotes a Dice outside the block, and when a row would pair runs scored on different cases.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"


@pytest.fixture
def readme_table(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import readme_table

    return readme_table


def test_readme_block_matches_the_result_files(readme_table):
    assert readme_table.main(["--check"]) == 0


def test_a_number_edited_by_hand_is_caught(readme_table, tmp_path, capsys):
    text = (REPO / "README.md").read_text()
    start, end = text.index(readme_table.BEGIN), text.index(readme_table.END)
    number = re.search(r"\| (0\.\d{3}) \|", text[start:end])
    assert number, "the block holds no mean Dice"
    edited = text[:start] + text[start:end].replace(number.group(0), "| 0.999 |", 1) + text[end:]
    readme = tmp_path / "README.md"
    readme.write_text(edited)
    assert readme_table.main(["--check", "--readme", str(readme)]) == 1
    assert "differs from bench/results" in capsys.readouterr().err
    assert readme_table.main(["--write", "--readme", str(readme)]) == 0
    assert readme.read_text() == text


def test_which_trainer_to_pick_quotes_no_dice_outside_the_block(readme_table):
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Which trainer to pick"):]
    section = section[:section.index("\n## ", 1)]
    start, end = section.index(readme_table.BEGIN), section.index(readme_table.END)
    outside = section[:start] + section[end:]
    assert not re.findall(r"(?<![\w.])[+-]?0\.\d{2,}", outside), "a Dice-like number outside the generated block"


def test_a_row_refuses_runs_scored_on_different_cases(readme_table, tmp_path):
    def result(cases):
        run = {"seed": 0, "bench": {"iterations": 150}, "tests": {"busi": {"per_case": {c: 0.5 for c in cases}}}}
        return {"results": {"m": [run]}}

    (tmp_path / "a.json").write_text(json.dumps(result(["x", "y", "z"])))
    (tmp_path / "b.json").write_text(json.dumps(result(["x", "y"])))
    row = readme_table.Row("BUSI", "busi", readme_table.Arm("a.json", "m"), readme_table.Arm("b.json", "m"))
    with pytest.raises(SystemExit, match="scored different cases"):
        readme_table.block(tmp_path, (row,))
    shutil.copy(tmp_path / "a.json", tmp_path / "b.json")
    assert "| BUSI | 150 | 0.500 | 0.500 | +0.000 [+0.000, +0.000], p = 1 |" in readme_table.block(tmp_path, (row,))


def test_results_shows_each_curve_table_as_its_file_gives_it(readme_table, tmp_path):
    """RESULTS.md section 6.8 holds every curve file's score-point table verbatim; an edited number is caught."""
    assert readme_table.stale_curve_tables() == []
    text = readme_table.RESULTS_MD.read_text()
    for file in readme_table.CURVES:
        table = readme_table.curve_table(file)
        number = re.search(r"\| (0\.\d{3}) \|", table)
        edited = tmp_path / "RESULTS.md"
        edited.write_text(text.replace(table, table.replace(number.group(0), "| 0.999 |", 1)))
        assert readme_table.stale_curve_tables(edited) == [file]
