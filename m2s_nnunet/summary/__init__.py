"""Cross-validation summary of an nnU-Net results folder, with paired M2SNet-vs-baseline statistics.

Reads only what nnU-Net itself writes (``fold_X/validation/summary.json``, ``fold_X/training_log_*.txt``,
``crossval_results_folds_*/summary.json``, ``dataset.json``), so it works for any trainer. Missing,
unfinished and broken folds (a truncated or malformed ``summary.json``, checked field by field in
``m2s_nnunet.inputs.nnunet_json``) are listed in every output, with the file named, instead of being skipped
silently or aborting the whole summary.

The data path, one module each: ``results`` (find and load the folders; ``logs`` parses training logs) ->
``tables`` (per fold, per model; column names from ``columns``) -> ``comparisons`` (paired tests) -> ``build``
(all of it, plus the notes) -> ``report`` (terminal text and files; ``plots`` draws the PNGs).
"""

from __future__ import annotations

from m2s_nnunet.summary.build import SummaryResult, summarize
from m2s_nnunet.summary.columns import FG, METRICS, Stat, column
from m2s_nnunet.summary.comparisons import Comparison, compare, default_pairs, paired_stats, resolve_model, split_check
from m2s_nnunet.summary.logs import parse_training_log
from m2s_nnunet.summary.plots import plot_folds, plot_paired, plot_training_curves
from m2s_nnunet.summary.report import format_text, write_summary_files
from m2s_nnunet.summary.results import (
    FoldResult,
    ModelResult,
    SummaryError,
    find_dataset_dir,
    load_model,
    load_models,
)
from m2s_nnunet.summary.tables import display_model_table, folds_table, model_table

__all__ = [
    "FG",
    "METRICS",
    "Comparison",
    "FoldResult",
    "ModelResult",
    "Stat",
    "SummaryError",
    "SummaryResult",
    "column",
    "compare",
    "default_pairs",
    "display_model_table",
    "find_dataset_dir",
    "folds_table",
    "format_text",
    "load_model",
    "load_models",
    "model_table",
    "paired_stats",
    "parse_training_log",
    "plot_folds",
    "plot_paired",
    "plot_training_curves",
    "resolve_model",
    "split_check",
    "summarize",
    "write_summary_files",
]
