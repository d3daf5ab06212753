"""``m2s_nnunet.summary.results``: finding the dataset folder, and broken folds or side files as notes."""

from __future__ import annotations

import json

import pytest

from m2s_nnunet import cli, summary


def test_find_dataset_dir_by_id_or_name(results):
    for ident in ("777", "Dataset777", "Dataset777_Fake", "Fake"):
        assert summary.find_dataset_dir(ident, results).name == "Dataset777_Fake"
    with pytest.raises(summary.SummaryError, match="not found.*Dataset777_Fake"):
        summary.find_dataset_dir("778", results)


BROKEN_SUMMARIES = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty object": lambda text: "{}",
    "a list": lambda text: "[1, 2]",
    "string entries": lambda text: json.dumps({"mean": "0.5", "foreground_mean": {}, "metric_per_case": ["x"]}),
    "non-numeric Dice": lambda text: text.replace('"Dice": 0.', '"Dice": "0.').replace(', "IoU"', '", "IoU"'),
    "Dice out of range": lambda text: json.dumps({**json.loads(text), "mean": {"1": {"Dice": 1.7}}}),
    "binary garbage": lambda text: "\udcff\x00\x01",
}


@pytest.mark.parametrize("kind", list(BROKEN_SUMMARIES))
def test_a_broken_fold_summary_is_reported_and_the_others_are_summarised(results, tmp_path, capsys, kind):
    model = results / "Dataset777_Fake" / "nnUNetTrainer__nnUNetPlans__2d"
    path = model / "fold_2" / "validation" / "summary.json"
    text = path.read_text()
    broken = BROKEN_SUMMARIES[kind](text)
    path.write_bytes(broken.encode("utf-8", "surrogateescape"))
    res = summary.summarize("777", results)
    assert model.name in res.model_table["model"].tolist()
    row = res.model_table.set_index("model").loc[model.name]
    assert row["folds_ok"] == "4/5"  # the broken fold is not counted, the four others are summarised
    assert res.models[[m.name for m in res.models].index(model.name)].folds["2"].status == "broken"
    assert any(n.startswith(f"BROKEN: {model.name} fold 2: {path}") for n in res.notes)
    assert cli.main(["summarize", "777", "--results", str(results), "-o", str(tmp_path / "out")]) == 0
    assert f"BROKEN: {model.name} fold 2: {path}" in capsys.readouterr().out


def test_broken_dataset_json_and_crossval_summary_become_notes(results):
    model = results / "Dataset777_Fake" / "nnUNetTrainer__nnUNetPlans__2d"
    (model / "dataset.json").write_text('{"labels": ')
    (model / "crossval_results_folds_0_1_2_3_4" / "summary.json").write_text("[]")
    res = summary.summarize("777", results)
    problems = [n for n in res.notes if n.startswith("PROBLEM")]
    assert any("dataset.json" in n and "not valid JSON" in n for n in problems)
    assert any("crossval_results_folds_0_1_2_3_4/summary.json" in n for n in problems)
    assert res.model_table.set_index("model").loc[model.name, "folds_ok"] == "5/5"
