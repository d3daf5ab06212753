"""How the summary tables name their columns: ``"<metric> <statistic>"``, spelled here and nowhere else.

The model table has ``Dice mean``, ``Dice std``, ``Dice pooled`` and one ``Dice crossval_results_folds_...``
column per nnU-Net cross-validation result; the paired table has ``Dice A`` and ``Dice B``. Code builds and reads
these names with :func:`column` (and takes them apart with :func:`split_column`), so a rename happens once.
"""

from __future__ import annotations

from enum import Enum

METRICS = ("Dice", "IoU")  # what nnU-Net's summary.json reports per case and label
CROSSVAL_METRIC = "Dice"  # the metric shown for nnU-Net's own cross-validation results
FG = "fg mean"  # the label key of the foreground mean
CROSSVAL_PREFIX = "crossval_results"  # nnU-Net's crossval_results_folds_* folders


class Stat(str, Enum):
    """The statistic half of a column name."""

    MEAN = "mean"  # mean over the finished folds
    STD = "std"  # sample std (ddof=1) over the finished folds
    POOLED = "pooled"  # nanmean over all validation cases of those folds
    MEAN_STD = "(mean ± std)"  # the two as text, in the displayed table
    A = "A"  # model A of a paired comparison
    B = "B"  # model B of a paired comparison


def column(metric: str, stat: Stat | str) -> str:
    """The column of ``metric`` for ``stat``: ``column("Dice", Stat.MEAN) == "Dice mean"``; a plain string
    ``stat`` names an nnU-Net cross-validation result folder."""
    return f"{metric} {stat.value if isinstance(stat, Stat) else stat}"


def split_column(name: str) -> tuple[str, str]:
    """``(metric, stat)`` of a column made by :func:`column`: ``"Dice A"`` -> ``("Dice", "A")``."""
    metric, _, stat = name.partition(" ")
    return metric, stat


def is_crossval_column(name: str) -> bool:
    """Whether a model-table column holds one of nnU-Net's cross-validation results."""
    return name.startswith(column(CROSSVAL_METRIC, CROSSVAL_PREFIX))
