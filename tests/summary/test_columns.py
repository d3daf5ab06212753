"""``m2s_nnunet.summary.columns``: one spelling of every table column, and the tables use it."""

from __future__ import annotations

from m2s_nnunet import summary
from m2s_nnunet.summary.columns import Stat, column, is_crossval_column, split_column


def test_column_names_round_trip():
    assert column("Dice", Stat.MEAN) == "Dice mean"
    assert column("IoU", Stat.MEAN_STD) == "IoU (mean ± std)"
    assert column("Dice", "crossval_results_folds_0_1") == "Dice crossval_results_folds_0_1"
    assert split_column(column("Dice", Stat.A)) == ("Dice", "A")
    assert is_crossval_column("Dice crossval_results_folds_0_1") and not is_crossval_column("Dice pooled")


def test_model_table_columns_are_spelled_by_column(results):
    table = summary.summarize("777", results).model_table
    for metric in summary.METRICS:
        for stat in (Stat.MEAN, Stat.STD, Stat.POOLED):
            assert column(metric, stat) in table.columns
    assert [c for c in table.columns if is_crossval_column(c)] == ["Dice crossval_results_folds_0_1_2_3_4"]
