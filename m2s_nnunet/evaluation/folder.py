"""Scoring a whole prediction folder: pair, resolve labels, score every case (optionally in parallel), aggregate.

Everything the user should know about how the numbers were made (label source, values counted as background,
alpha channels, absent labels, where the soft metrics came from) becomes a note of the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from m2s_nnunet import metrics
from m2s_nnunet.evaluation.cases import match_cases
from m2s_nnunet.evaluation.errors import EvaluationError
from m2s_nnunet.evaluation.labels import resolve_labels
from m2s_nnunet.evaluation.scoring import evaluate_case
from m2s_nnunet.naming import short_list


@dataclass
class EvaluationResult:
    """Per-case rows (one per case and label), the aggregate table, whether the cases were volumes, and notes."""

    per_case: pd.DataFrame
    aggregate: pd.DataFrame
    is_3d: bool
    notes: list[str] = field(default_factory=list)


def _evaluate_case_star(args: tuple) -> list[dict]:
    return evaluate_case(*args)


def evaluate_folder(
    pred_dir: Path,
    gt_dir: Path,
    labels: Sequence[str] | None = None,
    num_processes: int = 1,
    allow_missing: bool = False,
    soft_png: bool = False,
    progress: bool = True,
    drop_alpha: bool = False,
) -> EvaluationResult:
    """Score every prediction in ``pred_dir`` against ``gt_dir``; see :mod:`m2s_nnunet.evaluation` for conventions."""
    from tqdm import tqdm

    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    cases = match_cases(pred_dir, gt_dir, allow_missing)
    label_map, ignore, label_source = resolve_labels(cases, labels, pred_dir, gt_dir, drop_alpha)
    jobs = [(c, label_map, ignore, soft_png, label_source, drop_alpha) for c in cases]
    bar = dict(total=len(jobs), desc="evaluate", unit="case", disable=None if progress else True)
    if num_processes > 1:
        with ProcessPoolExecutor(num_processes) as pool:
            results = list(tqdm(pool.map(_evaluate_case_star, jobs, chunksize=4), **bar))
    else:
        results = [evaluate_case(*j) for j in tqdm(jobs, **bar)]
    rows = [r for case_rows in results for r in case_rows]
    is_3d = "dice" not in rows[0]
    notes = [f"labels from {label_source}: " + ", ".join(f"{v}={n}" for v, n in label_map.items())]
    if ignore is not None:
        notes.append(f"ignore label {ignore} excluded from the nnU-Net counts")
    per_case = pd.DataFrame(rows)
    unscored = sorted({v for values in per_case["_unscored"] for v in values})
    present = per_case.groupby("label")[["n_pred", "n_ref"]].sum().sum(axis=1)
    absent = [lab for lab in label_map if present.get(lab, 0) == 0]
    if unscored and len(absent) == len(label_map):
        raise EvaluationError(
            f"--labels {sorted(label_map)}: none of these labels occurs in any reference or prediction, while the "
            f"data holds the value(s) {unscored[:10]}: every score would be the empty-empty convention, not a "
            "measurement", fix="pass --labels with label values present in the data")
    if unscored:
        holders = per_case.loc[per_case["_unscored"].map(bool), "case"].drop_duplicates().tolist()
        notes.append(f"value(s) {unscored[:20]} are not among the scored labels (--labels) and count as background "
                     f"(in {len(holders)} case(s), e.g. {short_list(holders, 5)})")
    read_notes = list(dict.fromkeys(n for values in per_case["_read_notes"] for n in values))
    if read_notes:
        notes.append(f"alpha channels of {len(read_notes)} file(s): " + "; ".join(read_notes[:5])
                     + (f"; ... (+{len(read_notes) - 5} more)" if len(read_notes) > 5 else ""))
    if is_3d:
        notes.append(
            "3D volumes: only the nnU-Net convention is reported (per-slice salient-object metrics "
            "are not meaningful for volumes)"
        )
    if absent:
        notes.append(f"label(s) {absent} occur in no reference and no prediction: their nnU-Net Dice is NaN and "
                     "their benchmark scores are 1.0 by the empty-empty convention, not a measurement")
    aggregate = aggregate_table(per_case, label_map, is_3d)
    if not is_3d:
        counts = per_case.drop_duplicates("case")["source"].value_counts().to_dict()
        notes.append("soft metrics computed from: " + ", ".join(f"{k} ({v} cases)" for k, v in counts.items()))
    per_case = per_case.drop(columns=["em_curve", "_unscored", "_read_notes"], errors="ignore")
    return EvaluationResult(per_case, aggregate, is_3d, notes)


def aggregate_table(per_case: pd.DataFrame, labels: dict[int, str], is_3d: bool) -> pd.DataFrame:
    """One row per label (nnU-Net means, benchmark means for 2D), plus a foreground mean row for several labels."""
    rows = []
    for lab, name in labels.items():
        sub = per_case[per_case["label"] == lab]
        row = {
            "label": f"{lab} ({name})" if name != str(lab) else str(lab),
            "n_cases": len(sub),
            "n_empty_empty": int(sub["nnunet_Dice"].isna().sum()),
            "nnU-Net Dice": metrics.nnunet_mean(sub["nnunet_Dice"]),
            "nnU-Net IoU": metrics.nnunet_mean(sub["nnunet_IoU"]),
        }
        if not is_3d:
            row.update(metrics.aggregate_benchmark(sub.to_dict("records")))
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(labels) > 1:
        fg = {
            "label": "foreground mean",
            "n_cases": int(table["n_cases"].max()),
            "n_empty_empty": int(table["n_empty_empty"].sum()),
        }
        fg.update({c: float(table[c].mean()) for c in table.columns[3:]})
        table = pd.concat([table, pd.DataFrame([fg])], ignore_index=True)
    return table
