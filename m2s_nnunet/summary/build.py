"""Building a whole summary: load every model of a dataset, make the tables, run the comparisons, collect notes.

The notes gather everything a reader must know before trusting the numbers (missing, unfinished or broken folds,
unreadable files, nnU-Net's own cross-validation result disagreeing with the pooled one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from m2s_nnunet.splits import dataset_folds
from m2s_nnunet.summary.columns import Stat, column, is_crossval_column, split_column
from m2s_nnunet.summary.comparisons import Comparison, compare, default_pairs, resolve_model
from m2s_nnunet.summary.results import ModelResult, find_dataset_dir, load_models
from m2s_nnunet.summary.tables import folds_table, model_table


@dataclass
class SummaryResult:
    """Everything ``m2s-nnunet summarize`` reports for one dataset."""

    dataset: str
    results_dir: Path
    models: list[ModelResult]
    folds_table: pd.DataFrame
    model_table: pd.DataFrame
    comparisons: list[Comparison]
    notes: list[str]


def _completeness_notes(models: list[ModelResult]) -> list[str]:
    notes = []
    for m in models:
        notes += [f"PROBLEM: {m.name}: {p}" for p in m.problems]
        for f, r in m.folds.items():
            if r.status != "ok":
                notes.append(f"{r.status.upper()}: {m.name} fold {f}: {r.detail}")
        if not m.ok_folds:
            notes.append(f"{m.name}: no finished fold")
    return notes


def _crossval_notes(table: pd.DataFrame, folds: list[str]) -> list[str]:
    """nnU-Net's own cross-validation result should equal the pooled one once every fold finished."""
    notes = []
    for row in table.to_dict("records"):
        for col in (c for c in row if is_crossval_column(c)):
            metric, cv_name = split_column(col)
            pooled = row[column(metric, Stat.POOLED)]
            complete = row["folds_ok"] == f"{len(folds)}/{len(folds)}"
            if complete and np.isfinite(row[col]) and abs(row[col] - pooled) > 1e-6:
                notes.append(
                    f"{row['model']} {row['label']}: nnU-Net's {cv_name} {metric} {row[col]:.4f} differs from the "
                    f"pooled fold results {pooled:.4f} (re-run nnUNetv2_find_best_configuration?)"
                )
    return notes


def summarize(
    dataset: str,
    results: Path | None = None,
    compare_pairs: list[tuple[str, str]] | None = None,
    expected_folds: list[str] | None = None,
    metric: str = "Dice",
) -> SummaryResult:
    """Load every model of a dataset, build the tables and run the paired comparisons.

    ``expected_folds``: default every fold of the dataset's ``splits_final.json`` in ``$nnUNet_preprocessed``
    (nnU-Net's five where there is none)."""
    ds_dir = find_dataset_dir(dataset, results)
    folds = [str(f) for f in (expected_folds or dataset_folds(ds_dir.name))]
    models = load_models(ds_dir, folds)
    notes = _completeness_notes(models)
    mt = model_table(models, folds)
    notes += _crossval_notes(mt, folds)
    if compare_pairs:
        pairs = [(resolve_model(models, a).name, resolve_model(models, b).name) for a, b in compare_pairs]
    else:
        pairs, pair_notes = default_pairs(models)
        notes += pair_notes
    by_name = {m.name: m for m in models}
    comps = [compare(by_name[a], by_name[b], metric) for a, b in pairs]
    return SummaryResult(ds_dir.name, ds_dir, models, folds_table(models), mt, comps, notes)
