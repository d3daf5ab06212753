"""``summarize`` on a synthetic nnU-Net results tree with known numbers, a missing and an unfinished fold."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from m2s_nnunet import cli, cli_analysis, summary

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


def test_parse_training_log(tmp_path):
    write_log(tmp_path / "log.txt", offset=0.0)
    log = summary.parse_training_log([tmp_path / "log.txt"])
    assert log["epoch"].tolist() == [0, 1, 2]
    assert log["train_loss"].tolist() == pytest.approx([0.0, -0.1, -0.2])
    assert log["val_loss"].tolist() == pytest.approx([0.0, -0.05, -0.1])
    assert log["lr"].tolist() == pytest.approx([0.09, 0.08, 0.07])
    assert log["pseudo_dice"].tolist() == pytest.approx([0.0, 0.2, 0.4])
    assert log["pseudo_dice_ema"].tolist() == pytest.approx([0.0, 0.02, 0.058])
    assert log["epoch_time"].tolist() == pytest.approx([12.30, 12.31, 12.32])


def test_find_dataset_dir_by_id_or_name(results):
    for ident in ("777", "Dataset777", "Dataset777_Fake", "Fake"):
        assert summary.find_dataset_dir(ident, results).name == "Dataset777_Fake"
    with pytest.raises(summary.SummaryError, match="not found.*Dataset777_Fake"):
        summary.find_dataset_dir("778", results)


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


def test_outputs_written_and_missing_fold_reported(results, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli_analysis.add_summarize_parser(parser.add_subparsers())
    out = tmp_path / "out"
    args = parser.parse_args(["summarize", "777", "--results", str(results), "-o", str(out)])
    assert args.func(args) == 0
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


# ---------------------------------------------------------------------------------------------- bad inputs (issue 10)
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


def test_unwritable_summary_output_is_refused_before_work(results, readonly_dir, capsys, monkeypatch):
    monkeypatch.setattr(summary, "summarize", lambda *a, **k: pytest.fail("summarised before the check"))
    assert cli.main(["summarize", "777", "--results", str(results), "-o", str(readonly_dir / "out")]) == 2
    err = capsys.readouterr().err
    assert "not writable" in err and "Traceback" not in err
