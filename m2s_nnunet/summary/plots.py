"""The summary's PNG plots: Dice per fold, paired per-case differences, training curves.

matplotlib is imported on first use (Agg backend), so loading a summary needs neither it nor a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from m2s_nnunet.errors import writing
from m2s_nnunet.summary.columns import FG, Stat, column, split_column
from m2s_nnunet.summary.comparisons import Comparison
from m2s_nnunet.summary.results import ModelResult

if TYPE_CHECKING:
    from m2s_nnunet.summary.build import SummaryResult


def _short_names(names: list[str]) -> dict[str, str]:
    trainers = [n.split("__")[0] for n in names]
    return {n: t if trainers.count(t) == 1 else n for n, t in zip(names, trainers, strict=True)}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_folds(res: SummaryResult, path: Path) -> Path | None:
    """Grouped bars of the fg-mean Dice per fold and model, plus mean ± std; missing folds are marked."""
    plt = _pyplot()
    metric = "Dice"  # what the axis label promises
    folds = sorted({f for m in res.models for f in m.folds})
    short = _short_names([m.name for m in res.models])
    width = 0.8 / len(res.models)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(folds) + 3), 4))
    for i, m in enumerate(res.models):
        xs = np.arange(len(folds) + 1) + i * width
        vals = [m.folds[f].mean[FG][metric] if f in m.folds and m.folds[f].status == "ok" else np.nan for f in folds]
        rows = res.model_table[res.model_table["model"] == m.name]
        head = rows[rows["label"] == FG] if (rows["label"] == FG).any() else rows.iloc[:1]
        mean = float(head[column(metric, Stat.MEAN)].iloc[0])
        std = float(head[column(metric, Stat.STD)].iloc[0])
        ax.bar(xs[:-1], np.nan_to_num(vals), width, color=f"C{i}", label=short[m.name])
        ax.bar(xs[-1], np.nan_to_num(mean), width, color=f"C{i}", yerr=0 if np.isnan(std) else std, capsize=3)
        for x, v, f in zip(xs, vals, folds, strict=False):
            if np.isnan(v):
                status = m.folds[f].status if f in m.folds else "absent"
                ax.text(x, 0.02, status, rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(folds) + 1) + 0.4 - width / 2, [f"fold {f}" for f in folds] + ["mean ± std"])
    ax.set_ylabel("validation Dice (fg mean, nnU-Net)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with writing(path):
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_paired(c: Comparison, path: Path) -> Path | None:
    """Per-case scatter (B on x, A on y) and box plot of the differences, one colour per label."""
    if not len(c.paired):
        return None
    plt = _pyplot()
    metric = next(m for m, stat in map(split_column, c.paired.columns) if stat == Stat.A.value)
    col_a, col_b = column(metric, Stat.A), column(metric, Stat.B)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5))
    labels = list(dict.fromkeys(c.paired["label"]))
    for label in labels:
        sub = c.paired[c.paired["label"] == label]
        ax1.scatter(sub[col_b], sub[col_a], s=10, alpha=0.6, label=str(label))
    ax1.plot([0, 1], [0, 1], "k--", lw=1)
    short = _short_names([c.a, c.b])
    ax1.set_xlabel(f"{metric} {short[c.b]}")
    ax1.set_ylabel(f"{metric} {short[c.a]}")
    ax1.legend(fontsize=8, title="label")
    data = [c.paired.loc[c.paired["label"] == lab, "diff"].dropna().to_numpy() for lab in labels]
    ax2.boxplot(data, tick_labels=[str(x) for x in labels])
    ax2.axhline(0, color="k", lw=1, ls="--")
    ax2.set_ylabel(f"{metric} difference (A - B)")
    fig.suptitle(f"A = {short[c.a]} vs B = {short[c.b]}", fontsize=10)
    fig.tight_layout()
    with writing(path):
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_training_curves(models: list[ModelResult], path: Path) -> Path | None:
    """Losses and EMA pseudo Dice per fold, one column per model, side by side."""
    with_logs = [m for m in models if any(r.log is not None and len(r.log) for r in m.folds.values())]
    if not with_logs:
        return None
    plt = _pyplot()
    short = _short_names([m.name for m in models])
    fig, axes = plt.subplots(2, len(with_logs), figsize=(5 * len(with_logs), 7), squeeze=False, sharex="col")
    for j, m in enumerate(with_logs):
        for k, (f, r) in enumerate(m.folds.items()):
            if r.log is None or not len(r.log):
                continue
            color = f"C{k % 10}"
            log = r.log
            for key, ls in (("train_loss", "-"), ("val_loss", "--")):
                if key in log:
                    axes[0, j].plot(log["epoch"], log[key], ls, color=color, label=f"fold {f} {key}")
            if "pseudo_dice_ema" in log:
                axes[1, j].plot(log["epoch"], log["pseudo_dice_ema"], color=color, label=f"fold {f}")
        axes[0, j].set_title(short[m.name], fontsize=10)
        axes[0, j].set_ylabel("loss (solid train, dashed val)")
        axes[1, j].set_ylabel("EMA pseudo Dice")
        axes[1, j].set_xlabel("epoch")
        axes[1, j].legend(fontsize=7)
    fig.tight_layout()
    with writing(path):
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
