"""Score a folder of predictions against ground truth in both the nnU-Net and the polyp-benchmark convention.

Predictions are label maps as nnU-Net writes them (``<case>.png`` or ``<case>.nii.gz``); when
``<case>.npz`` (nnU-Net ``--save_probabilities`` / ``--npz``: array ``probabilities`` of shape
(C, 1, H, W) for 2D images, (C, Z, Y, X) for volumes) sits next to a prediction, the soft
benchmark metrics use the class probability map instead of the hard mask. The source is recorded per case.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from m2s_nnunet import metrics
from m2s_nnunet.naming import short_list, split_ending

IMAGE_ENDINGS_2D = (".png", ".bmp", ".tif", ".tiff")
VOLUME_ENDINGS = (".nii.gz", ".nii", ".mha", ".nrrd")
ALL_ENDINGS = VOLUME_ENDINGS + IMAGE_ENDINGS_2D


class EvaluationError(Exception):
    """Inputs that cannot be scored; the message names the files and the fix."""


@dataclass
class CaseFiles:
    case: str
    pred: Path
    gt: Path
    npz: Path | None = None


@dataclass
class EvaluationResult:
    per_case: pd.DataFrame
    aggregate: pd.DataFrame
    is_3d: bool
    notes: list[str] = field(default_factory=list)


def _label_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        case, end = split_ending(p.name, ALL_ENDINGS)
        if p.is_file() and end:
            if case in files:
                raise EvaluationError(f"{folder}: case '{case}' exists twice ({files[case].name}, {p.name})")
            files[case] = p
    return files


def match_cases(pred_dir: Path, gt_dir: Path, allow_missing: bool = False) -> list[CaseFiles]:
    """Pair predictions with references by case name; unmatched predictions are always an error."""
    for d in (pred_dir, gt_dir):
        if not d.is_dir():
            raise EvaluationError(f"not a folder: {d}")
    preds, gts = _label_files(pred_dir), _label_files(gt_dir)
    if not preds:
        raise EvaluationError(f"no prediction files ({', '.join(ALL_ENDINGS)}) in {pred_dir}")
    no_gt = sorted(set(preds) - set(gts))
    no_pred = sorted(set(gts) - set(preds))
    if no_gt:
        raise EvaluationError(
            f"{len(no_gt)} prediction(s) have no reference in {gt_dir}: {short_list(no_gt)}. "
            "Check that both folders use the same case names (<case>.png / <case>.nii.gz)."
        )
    if no_pred and not allow_missing:
        raise EvaluationError(
            f"{len(no_pred)} reference case(s) have no prediction in {pred_dir}: {short_list(no_pred)}. "
            "Predict them, or pass --chill to score only the predicted cases."
        )
    out = []
    for case, p in preds.items():
        npz = p.parent / f"{case}.npz"
        out.append(CaseFiles(case, p, gts[case], npz if npz.is_file() else None))
    return out


def read_label_map(path: Path) -> np.ndarray:
    """Read a label map as (H, W) for 2D images or (Z, Y, X) for volumes."""
    try:
        if split_ending(path.name, ALL_ENDINGS)[1] in IMAGE_ENDINGS_2D:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im)
        else:
            import SimpleITK as sitk

            arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes a clear message
        raise EvaluationError(f"cannot read {path}: {exc}") from exc
    if arr.ndim == 3 and split_ending(path.name, ALL_ENDINGS)[1] in IMAGE_ENDINGS_2D:
        raise EvaluationError(f"{path} has {arr.shape[-1]} colour channels; label maps must be single-channel")
    return arr


def read_probabilities(npz: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Load nnU-Net's ``probabilities`` (class axis first) and drop the dummy z axis of 2D images."""
    with np.load(npz) as data:
        if "probabilities" not in data:
            raise EvaluationError(f"{npz} has no 'probabilities' array (keys: {list(data.keys())})")
        prob = data["probabilities"]
    if len(shape) == 2 and prob.ndim == 4 and prob.shape[1] == 1:
        prob = prob[:, 0]
    if prob.shape[1:] != tuple(shape):
        raise EvaluationError(f"{npz}: probabilities shape {prob.shape} does not match the reference {shape}")
    return prob


def resolve_labels(
    cases: list[CaseFiles], labels: Sequence[str] | None, pred_dir: Path, gt_dir: Path
) -> tuple[dict[int, str], int | None, str]:
    """Foreground labels to score (value -> name), the ignore label, and where they came from."""
    if labels:
        out: dict[int, str] = {}
        for item in labels:
            name, _, value = item.rpartition("=")
            try:
                v = int(value)
            except ValueError as exc:
                raise EvaluationError(f"--labels expects VALUE or NAME=VALUE, got '{item}'") from exc
            out[v] = name or str(v)
        return out, None, "--labels"
    for candidate in (
        pred_dir / "dataset.json",
        pred_dir.parent.parent / "dataset.json",
        gt_dir.parent / "dataset.json",
        gt_dir / "dataset.json",
    ):
        if candidate.is_file():
            ds = json.loads(candidate.read_text())
            fg: dict[int, str] = {}
            ignore = None
            for name, value in ds.get("labels", {}).items():
                if isinstance(value, list | tuple):
                    raise EvaluationError(f"{candidate} defines regions; region-based evaluation is not supported")
                if name == "ignore":
                    ignore = int(value)
                elif int(value) != 0:
                    fg[int(value)] = name
            if fg:
                return dict(sorted(fg.items())), ignore, str(candidate)
    values: set[int] = set()
    for c in cases:
        values.update(int(v) for v in np.unique(_binary_255_to_1(read_label_map(c.gt))))
    values.discard(0)
    if not values:
        raise EvaluationError(f"no foreground label in any reference of {gt_dir}; pass --labels")
    return {v: str(v) for v in sorted(values)}, None, "values found in the references"


def _binary_255_to_1(arr: np.ndarray, labels: dict[int, str] | None = None) -> np.ndarray:
    """Raw 0/255 masks mean label 1 (unless 255 is a scored label); leave every other label map untouched."""
    if labels is not None and (255 in labels or 1 not in labels):
        return arr
    if arr.dtype != bool and arr.size and arr.max() == 255 and np.isin(arr, (0, 255)).all():
        return (arr == 255).astype(np.uint8)
    return arr


def evaluate_case(
    files: CaseFiles, labels: dict[int, str], ignore_label: int | None, soft_png: bool = False
) -> list[dict]:
    """Rows (one per foreground label) with both conventions; soft metrics only for 2D cases."""
    gt = _binary_255_to_1(read_label_map(files.gt), labels)
    raw_pred = read_label_map(files.pred)
    if raw_pred.shape != gt.shape:
        raise EvaluationError(
            f"shape mismatch for case '{files.case}': prediction {files.pred} {raw_pred.shape} vs "
            f"reference {files.gt} {gt.shape}"
        )
    is_2d = gt.ndim == 2
    prob = read_probabilities(files.npz, gt.shape) if files.npz is not None and is_2d else None
    if soft_png and prob is None:
        if len(labels) != 1:
            raise EvaluationError("--soft-png (grey 0..255 probability maps) needs exactly one foreground label")
        source = "grey map"
        grey = raw_pred.astype(np.float64) / (65535.0 if raw_pred.max() > 255 else 255.0)
        pred = (grey > 0.5).astype(np.uint8) * next(iter(labels))
    else:
        source = "probabilities" if prob is not None else "mask"
        grey = None
        pred = _binary_255_to_1(raw_pred, labels) if list(labels) == [1] else raw_pred
    nn = metrics.nnunet_case_metrics(gt, pred, labels, ignore_label)
    rows = []
    for lab, name in labels.items():
        row: dict = {
            "case": files.case,
            "label": lab,
            "label_name": name,
            "source": source if is_2d else "mask",
        }
        row.update({f"nnunet_{k}" if k in ("Dice", "IoU") else k: v for k, v in nn[lab].items()})
        if is_2d:
            class_prob = prob[lab] if prob is not None else grey
            bench = metrics.benchmark_case_metrics(gt == lab, pred == lab, class_prob)
            row.update({k: bench[k] for k in metrics.BENCHMARK_KEYS})
            row["em_curve"] = bench["em_curve"]
        rows.append(row)
    return rows


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
) -> EvaluationResult:
    """Score every prediction in ``pred_dir`` against ``gt_dir``; see the module docstring for conventions."""
    from tqdm import tqdm

    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    cases = match_cases(pred_dir, gt_dir, allow_missing)
    label_map, ignore, label_source = resolve_labels(cases, labels, pred_dir, gt_dir)
    jobs = [(c, label_map, ignore, soft_png) for c in cases]
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
    if is_3d:
        notes.append(
            "3D volumes: only the nnU-Net convention is reported (per-slice salient-object metrics "
            "are not meaningful for volumes)"
        )
    per_case = pd.DataFrame(rows)
    aggregate = _aggregate(per_case, label_map, is_3d)
    if not is_3d:
        counts = per_case.drop_duplicates("case")["source"].value_counts().to_dict()
        notes.append("soft metrics computed from: " + ", ".join(f"{k} ({v} cases)" for k, v in counts.items()))
    return EvaluationResult(per_case.drop(columns=["em_curve"], errors="ignore"), aggregate, is_3d, notes)


def _aggregate(per_case: pd.DataFrame, labels: dict[int, str], is_3d: bool) -> pd.DataFrame:
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


def write_outputs(result: EvaluationResult, out_dir: Path) -> list[Path]:
    """Write per_case.csv, aggregate.csv and aggregate.md; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "per_case.csv", out_dir / "aggregate.csv", out_dir / "aggregate.md"]
    result.per_case.to_csv(paths[0], index=False)
    result.aggregate.to_csv(paths[1], index=False)
    refs = (
        metrics.METRIC_REFERENCES
        if not result.is_3d
        else {"nnU-Net Dice/IoU": metrics.METRIC_REFERENCES["nnU-Net Dice/IoU"]}
    )
    lines = ["# Evaluation", "", markdown_table(result.aggregate), "", "## Notes", ""]
    lines += [f"- {n}" for n in result.notes]
    lines += ["", "## Reference implementations", ""] + [f"- **{k}**: {v}" for k, v in refs.items()]
    paths[2].write_text("\n".join(lines) + "\n")
    return paths
