"""Writing an evaluation to disk (CSV tables and a Markdown report) and the Markdown table renderer it uses."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from m2s_nnunet import metrics
from m2s_nnunet.errors import writing
from m2s_nnunet.evaluation.folder import EvaluationResult


def markdown_table(df: pd.DataFrame, digits: int = 4) -> str:
    """Render a DataFrame as a Markdown table (pandas' to_markdown needs tabulate, not a dependency)."""

    def fmt(v: object) -> str:
        if isinstance(v, float | np.floating):
            if math.isnan(v):
                return "nan"
            return f"{v:.2e}" if 0 < abs(v) < 10**-digits * 10 else f"{v:.{digits}f}"
        return str(v)

    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def write_evaluation_files(result: EvaluationResult, out_dir: Path) -> list[Path]:
    """Write per_case.csv, aggregate.csv and aggregate.md; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "per_case.csv", out_dir / "aggregate.csv", out_dir / "aggregate.md"]
    with writing(paths[0]):
        result.per_case.to_csv(paths[0], index=False)
    with writing(paths[1]):
        result.aggregate.to_csv(paths[1], index=False)
    refs = (
        metrics.METRIC_REFERENCES
        if not result.is_3d
        else {"nnU-Net Dice/IoU": metrics.METRIC_REFERENCES["nnU-Net Dice/IoU"]}
    )
    lines = ["# Evaluation", "", markdown_table(result.aggregate), "", "## Notes", ""]
    lines += [f"- {n}" for n in result.notes]
    lines += ["", "## Reference implementations", ""] + [f"- **{k}**: {v}" for k, v in refs.items()]
    with writing(paths[2]):
        paths[2].write_text("\n".join(lines) + "\n")
    return paths
