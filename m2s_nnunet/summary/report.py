"""The summary as the user reads it: the terminal text, and the files (CSV tables, plots, ``summary.md``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from m2s_nnunet.errors import writing
from m2s_nnunet.evaluation.report import markdown_table
from m2s_nnunet.summary.build import SummaryResult
from m2s_nnunet.summary.plots import plot_folds, plot_paired, plot_training_curves
from m2s_nnunet.summary.tables import display_model_table


def format_text(res: SummaryResult) -> str:
    """The terminal report: completeness, per-model table, comparisons."""
    lines = [f"Cross-validation summary of {res.results_dir}", ""]
    lines += [f"  {n}" for n in res.notes] or ["  all expected folds finished"]
    lines += ["", markdown_table(display_model_table(res.model_table)), ""]
    for c in res.comparisons:
        lines += [f"Paired comparison A={c.a} vs B={c.b}"] + [f"  {n}" for n in c.split_notes]
        if len(c.stats):
            lines += [markdown_table(c.stats.drop(columns=["A", "B"]))]
        lines.append("")
    return "\n".join(lines)


def write_summary_files(res: SummaryResult, out_dir: Path) -> list[Path]:
    """CSV tables, summary.md and PNG plots; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def csv(df: pd.DataFrame, name: str) -> None:
        with writing(out_dir / name):
            df.to_csv(out_dir / name, index=False)
        written.append(out_dir / name)

    csv(res.folds_table, "folds.csv")
    csv(res.model_table, "models.csv")
    if res.comparisons:
        csv(pd.concat([c.stats for c in res.comparisons], ignore_index=True), "comparisons.csv")
        csv(
            pd.concat([c.paired.assign(A=c.a, B=c.b) for c in res.comparisons], ignore_index=True),
            "paired_cases.csv",
        )
    plots = [plot_folds(res, out_dir / "folds_dice.png")]
    plots += [plot_paired(c, out_dir / f"paired_{i}.png") for i, c in enumerate(res.comparisons, 1)]
    plots.append(plot_training_curves(res.models, out_dir / "training_curves.png"))
    plots = [p for p in plots if p is not None]
    written += plots
    md = out_dir / "summary.md"
    with writing(md):
        md.write_text(_markdown(res, plots))
    written.append(md)
    return written


def _markdown(res: SummaryResult, plots: list[Path]) -> str:
    lines = [
        f"# Cross-validation summary: {res.dataset}",
        "",
        f"Results folder: `{res.results_dir}`",
        "",
        "## Completeness",
        "",
    ]
    lines += [f"- {n}" for n in res.notes] or ["- all expected folds finished"]
    lines += [
        "",
        "## Per model",
        "",
        "Mean ± sample std (ddof=1) over finished folds of each fold's `summary.json` mean; *pooled* = "
        "nanmean over all validation cases of those folds (the merged cross-validation result).",
        "",
        markdown_table(display_model_table(res.model_table)),
        "",
        "## Per fold",
        "",
        markdown_table(res.folds_table),
        "",
    ]
    for c in res.comparisons:
        lines += [f"## Paired comparison: A = `{c.a}` vs B = `{c.b}`", ""]
        lines += [f"- {n}" for n in c.split_notes] + [""]
        if len(c.stats):
            lines += [markdown_table(c.stats.drop(columns=["A", "B"])), ""]
    lines += [
        "## Conventions",
        "",
        "- Dice/IoU per case as nnU-Net computes them (NaN when prediction and reference are empty; "
        "such cases are skipped in means and excluded from paired tests).",
        "- Paired tests match cases by name; diff = A - B; 95% CI: percentile bootstrap of the mean "
        "difference (10000 resamples, seed 0); p: two-sided Wilcoxon signed-rank test "
        "(scipy.stats.wilcoxon, zero differences dropped).",
        "",
    ]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"
