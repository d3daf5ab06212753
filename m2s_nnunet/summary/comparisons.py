"""Paired per-case comparisons of two models (``--compare A B``, or every M2SNet model against nnUNetTrainer).

Cases are matched by name, so the statistics stay valid when the splits differ; whether they differ is
checked fold by fold and reported, because unequal splits make fold means incomparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from m2s_nnunet.summary.columns import FG, Stat, column
from m2s_nnunet.summary.results import ModelResult, SummaryError
from m2s_nnunet.summary.tables import label_display


@dataclass
class Comparison:
    """Model A against model B: the statistics per label, the paired cases (with ``diff`` = A - B) and notes."""

    a: str
    b: str
    stats: pd.DataFrame
    paired: pd.DataFrame
    split_notes: list[str]
    identical_splits: bool


def default_pairs(models: list[ModelResult]) -> tuple[list[tuple[str, str]], list[str]]:
    """Every M2SNet* model vs nnUNetTrainer (same plans+config, else same config, else any)."""
    base = [m for m in models if m.trainer == "nnUNetTrainer"]
    pairs, notes = [], []
    for m in models:
        if not m.trainer.startswith("M2SNetTrainer"):
            continue
        pick = (
            [b for b in base if (b.plans, b.config) == (m.plans, m.config)]
            or [b for b in base if b.config == m.config]
            or base
        )
        if pick:
            pairs.append((m.name, pick[0].name))
        else:
            notes.append(f"{m.name}: no nnUNetTrainer model to compare with (use --compare A B)")
    return pairs, notes


def resolve_model(models: list[ModelResult], ident: str) -> ModelResult:
    """A model by full folder name, or by trainer name when that is unique."""
    exact = [m for m in models if m.name == ident]
    hits = exact or [m for m in models if m.trainer == ident] or [m for m in models if m.name.startswith(ident)]
    if len(hits) != 1:
        raise SummaryError(
            f"--compare '{ident}' {'is ambiguous' if hits else 'matches no model'}; "
            f"use one of {[m.name for m in models]}"
        )
    return hits[0]


def paired_stats(a: np.ndarray, b: np.ndarray, n_boot: int = 10000, seed: int = 0) -> dict[str, float]:
    """Mean difference a-b with a percentile bootstrap 95% CI and a two-sided Wilcoxon signed-rank test."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    out = {
        "n": int(len(d)),
        "mean A": np.nan,
        "mean B": np.nan,
        "mean diff": np.nan,
        "median diff": np.nan,
        "CI low": np.nan,
        "CI high": np.nan,
        "W": np.nan,
        "p": np.nan,
        "A better": int((d > 0).sum()),
        "B better": int((d < 0).sum()),
        "ties": int((d == 0).sum()),
    }
    if len(d) == 0:
        return out
    out.update({"mean A": a.mean(), "mean B": b.mean(), "mean diff": d.mean(), "median diff": float(np.median(d))})
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    out["CI low"], out["CI high"] = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
    if np.any(d != 0):
        res = wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
        out["W"], out["p"] = float(res.statistic), float(res.pvalue)
    else:
        out["p"] = 1.0
    return out


def split_check(a: ModelResult, b: ModelResult) -> tuple[bool, list[str]]:
    """Compare the validation cases of every fold both models finished; folds only one finished are listed."""
    notes, identical, common = [], True, []
    for fold in [f for f in a.expected if f in b.expected]:
        fa, fb = a.folds.get(fold), b.folds.get(fold)
        ok_a, ok_b = fa is not None and fa.status == "ok", fb is not None and fb.status == "ok"
        if not (ok_a and ok_b):
            if ok_a or ok_b:
                notes.append(f"fold {fold}: only {(a if ok_a else b).name} has validation results (not paired)")
            continue
        common.append(fold)
        ca, cb = set(fa.per_case["case"]), set(fb.per_case["case"])
        if ca != cb:
            identical = False
            notes.append(
                f"fold {fold}: validation cases differ ({len(ca - cb)} only in {a.name}, "
                f"{len(cb - ca)} only in {b.name}; e.g. {sorted(ca ^ cb)[:5]})"
            )
    if not common:
        return False, ["no fold finished by both models: nothing to pair", *notes]
    head = (
        f"validation splits are identical in the {len(common)} fold(s) both finished ({', '.join(common)})"
        if identical
        else "validation splits are NOT identical: the models were validated on different case sets; "
        "paired results use only the cases both validated"
    )
    return identical, [head, *notes]


def compare(a: ModelResult, b: ModelResult, metric: str = "Dice") -> Comparison:
    """Per-case paired differences (matched by case name) and tests, per label and for the fg mean."""
    identical, notes = split_check(a, b)
    pa, pb = a.pooled_cases(), b.pooled_cases()
    if not len(pa) or not len(pb):
        return Comparison(a.name, b.name, pd.DataFrame(), pd.DataFrame(), notes + ["no finished folds"], False)
    for name, p in ((a.name, pa), (b.name, pb)):
        dup = p.duplicated(["case", "label"])
        if dup.any():
            notes.append(f"{name}: {dup.sum()} case(s) validated in several folds; the first is used")
    pa, pb = pa.drop_duplicates(["case", "label"]), pb.drop_duplicates(["case", "label"])
    col_a, col_b = column(metric, Stat.A), column(metric, Stat.B)
    merged = pa[["case", "label", metric]].rename(columns={metric: col_a}).merge(
        pb[["case", "label", metric]].rename(columns={metric: col_b}), on=["case", "label"]
    )
    merged["label"] = [label_display(a, str(k)) for k in merged["label"]]
    if merged["label"].nunique() > 1:
        fg = merged.groupby("case")[[col_a, col_b]].mean().reset_index().assign(label=FG)
        merged = pd.concat([merged, fg], ignore_index=True)
    rows = []
    for label, sub in merged.groupby("label", sort=True):
        valid = sub.dropna(subset=[col_a, col_b])
        stats = paired_stats(valid[col_a].to_numpy(), valid[col_b].to_numpy())
        rows.append(
            {
                "A": a.name,
                "B": b.name,
                "label": label,
                "metric": metric,
                "excluded (NaN)": len(sub) - len(valid),
                **stats,
            }
        )
    only = set(pa["case"]) ^ set(pb["case"])
    if only:
        notes.append(f"{len(only)} case(s) validated by only one model are not paired")
    merged["diff"] = merged[col_a] - merged[col_b]
    return Comparison(a.name, b.name, pd.DataFrame(rows), merged, notes, identical)
