"""The per-fold and per-model tables of a summary, and the per-model table as text for terminal and Markdown.

Per model, each metric gets the mean and sample std over the finished folds and the pooled value over all their
validation cases (nnU-Net's merged result), so both ways of reporting cross-validation can be quoted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from m2s_nnunet.summary.columns import CROSSVAL_METRIC, FG, METRICS, Stat, column, is_crossval_column, split_column
from m2s_nnunet.summary.results import ModelResult


def label_display(model: ModelResult, key: str) -> str:
    """``"1 (polyp)"`` for a label key of ``model``, ``"fg mean"`` unchanged."""
    return key if key == FG else f"{key} ({model.label_names.get(key, '?')})"


def folds_table(models: list[ModelResult]) -> pd.DataFrame:
    """One row per model, fold and label (missing folds kept as rows with NaN and their status)."""
    rows = []
    for m in models:
        for f, r in m.folds.items():
            if r.status != "ok":
                rows.append({"model": m.name, "fold": f, "status": r.status, "detail": r.detail})
                continue
            for key, vals in r.mean.items():
                if key == FG and len(r.mean) == 2:  # a single label: its row already is the fg mean
                    continue
                rows.append(
                    {
                        "model": m.name,
                        "fold": f,
                        "status": "ok",
                        "detail": r.detail,
                        "label": label_display(m, key),
                        **vals,
                    }
                )
    return pd.DataFrame(rows, columns=["model", "fold", "status", "detail", "label", *METRICS])


def model_table(models: list[ModelResult], expected_folds: list[str]) -> pd.DataFrame:
    """Mean +- sample std (ddof=1) over the expected folds that finished, and pooled over all their cases."""
    rows = []
    for m in models:
        ok = m.ok_folds
        pooled = m.pooled_cases()
        keys = sorted({k for f in ok for k in m.folds[f].mean if k != FG})
        keys += [FG] if len(keys) != 1 else []
        for key in keys if ok else [FG]:
            row: dict = {
                "model": m.name,
                "label": label_display(m, key),
                "folds_ok": f"{len(ok)}/{len(expected_folds)}",
            }
            for met in METRICS:
                vals = np.array([m.folds[f].mean.get(key, {}).get(met, np.nan) for f in ok], dtype=float)
                row[column(met, Stat.MEAN)] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
                row[column(met, Stat.STD)] = float(np.nanstd(vals, ddof=1)) if np.isfinite(vals).sum() > 1 else np.nan
                row[column(met, Stat.POOLED)] = _pooled(pooled, key, met)
            row["n_cases"] = int(pooled["case"].nunique()) if len(pooled) else 0
            for cv_name, cv in m.crossval.items():
                row[column(CROSSVAL_METRIC, cv_name)] = cv.get(key, {}).get(CROSSVAL_METRIC, np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def _pooled(pooled: pd.DataFrame, key: str, metric: str) -> float:
    """nnU-Net's merged result: nanmean over all cases per label; the fg mean is the mean of those."""
    if not len(pooled):
        return float("nan")
    per_label = pooled.groupby("label")[metric].mean()  # pandas mean skips NaN like np.nanmean
    if key == FG:
        return float(per_label.mean()) if len(per_label) else float("nan")
    return float(per_label.get(key, np.nan))


def display_model_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean +- std as text for terminal and Markdown."""
    out = table[["model", "label", "folds_ok"]].copy()
    for met in METRICS:
        means, stds = table[column(met, Stat.MEAN)], table[column(met, Stat.STD)]
        out[column(met, Stat.MEAN_STD)] = [_pm(m, s) for m, s in zip(means, stds, strict=True)]
        out[column(met, Stat.POOLED)] = table[column(met, Stat.POOLED)]
    out["n_cases"] = table["n_cases"]
    for c in table.columns:
        if is_crossval_column(c):
            out[column("nnU-Net", split_column(c)[1])] = table[c]
    return out


def _pm(m: float, s: float) -> str:
    if np.isnan(m):
        return "nan"
    return f"{m:.4f} ± {s:.4f}" if not np.isnan(s) else f"{m:.4f}"
