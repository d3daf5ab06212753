"""Score a folder of predictions against ground truth in both the nnU-Net and the polyp-benchmark convention.

Predictions are label maps as nnU-Net writes them (``<case>.png`` or ``<case>.nii.gz``); when
``<case>.npz`` (nnU-Net ``--save_probabilities`` / ``--npz``: array ``probabilities`` of shape
(C, 1, H, W) for 2D images, (C, Z, Y, X) for volumes) sits next to a prediction, the soft
benchmark metrics use the class probability map instead of the hard mask. The source is recorded per case.

Every file goes through the shared readers of ``m2s_nnunet.inputs`` (decoded in full, finite values). With labels
from a ``dataset.json`` or from the references, every value of every prediction and reference must be background,
a scored label or the ignore label: a stale ``dataset.json`` is refused with the file named, instead of scoring
labels that exist nowhere (mDice 1.0) while the real one is never scored. With ``--labels`` (a subset of the
labels may be scored), other values count as background and are listed in the notes; a ``--labels`` list none of
whose labels occurs anywhere while other values do is refused, and so is a 0..255 probability PNG given as a
prediction (``--soft-png``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from m2s_nnunet import metrics
from m2s_nnunet.errors import UserError, writing
from m2s_nnunet.inputs import arrays, folders, pictures, volumes
from m2s_nnunet.inputs.nnunet_json import read_dataset_labels
from m2s_nnunet.naming import short_list, split_ending

IMAGE_ENDINGS_2D = (".png", ".bmp", ".tif", ".tiff")
GREY_MAP_MIN_VALUES = 16  # a picture with this many distinct values is a grey map, not a label map
VOLUME_ENDINGS = (".nii.gz", ".nii", ".mha", ".nrrd")
ALL_ENDINGS = VOLUME_ENDINGS + IMAGE_ENDINGS_2D


class EvaluationError(UserError):
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
    broken = [p.name for p in folders.broken_links(folder) if split_ending(p.name, ALL_ENDINGS)[1]]
    if broken:
        raise EvaluationError(f"{folder}: broken symbolic link(s) (their targets do not exist): {short_list(broken)}; "
                              "fix or remove them")
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
    for d, what in ((pred_dir, "prediction folder"), (gt_dir, "reference folder")):
        try:
            folders.check_input_folder(d, what)
        except UserError as err:
            raise EvaluationError(str(err)) from err
    preds, gts = _label_files(pred_dir), _label_files(gt_dir)
    if not preds:
        raise EvaluationError(f"no prediction files ({', '.join(ALL_ENDINGS)}) in {pred_dir}")
    for files, d in ((preds, pred_dir), (gts, gt_dir)):
        kinds = {_is_picture(p) for p in files.values()}
        if len(kinds) > 1:
            raise EvaluationError(f"{d} mixes 2D pictures and volumes; evaluate one kind at a time (move the "
                                  "others to another folder)")
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


def _is_picture(path: Path) -> bool:
    return split_ending(path.name, ALL_ENDINGS)[1] in IMAGE_ENDINGS_2D


def read_label_map(path: Path, drop_alpha: bool = False, notes: list[str] | None = None) -> np.ndarray:
    """Read a label map as (H, W) for 2D pictures and 2D ``.mha``/``.nrrd``/NIfTI files, or (Z, Y, X) for volumes
    (finite integers, fully decoded, one component per pixel). Alpha channels: see ``pictures.label_picture``."""
    try:
        if _is_picture(path):
            return pictures.label_picture(path, drop_alpha, notes)
        image = volumes.read_volume(path)
        dim, comps = image.GetDimension(), image.GetNumberOfComponentsPerPixel()
        if dim not in (2, 3) or comps != 1:
            raise EvaluationError(f"{path}: a label map must be a 2D (Y, X) or 3D (Z, Y, X) image with one value per "
                                  f"pixel; this one is {dim}D with {comps} component(s) per pixel")
        return volumes.label_array(image, path)
    except UserError as err:
        if isinstance(err, EvaluationError):
            raise
        raise EvaluationError(str(err)) from err


def read_grey_map(path: Path, drop_alpha: bool = False, notes: list[str] | None = None) -> np.ndarray:
    """A ``--soft-png`` prediction as probabilities in 0..1 (8-bit /255, 16-bit /65535, floats as they are)."""
    try:
        arr = (pictures.picture_array(path, drop_alpha, notes) if _is_picture(path)
               else volumes.finite_array(volumes.read_volume(path), path))
    except UserError as err:
        raise EvaluationError(str(err)) from err
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and arr.size and arr.min() >= 0 and arr.max() <= 1:
        return arr.astype(np.float64)
    top = 65535.0 if arr.dtype.kind in "iu" and arr.max(initial=0) > 255 else 255.0
    if arr.size and (arr.min() < 0 or arr.max() > top):
        raise EvaluationError(f"{path}: --soft-png expects grey maps 0..255 (or 0..65535, or 0..1 floats), found "
                              f"values {arr.min()}..{arr.max()}")
    return arr.astype(np.float64) / top


def read_probabilities(npz: Path, shape: tuple[int, ...], num_classes: int = 2) -> np.ndarray:
    """Load nnU-Net's ``probabilities`` (class axis first) and drop the dummy z axis of 2D images; checked in full
    (readable, one map per class, finite, 0..1), see ``m2s_nnunet.inputs.arrays``."""
    try:
        return arrays.read_probabilities(npz, tuple(shape), num_classes)
    except UserError as err:
        raise EvaluationError(str(err)) from err


def resolve_labels(
    cases: list[CaseFiles], labels: Sequence[str] | None, pred_dir: Path, gt_dir: Path, drop_alpha: bool = False,
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
            if v <= 0 or v in out:
                raise EvaluationError(f"--labels {item}: label values must be positive (0 is background) and "
                                      "given once each")
            out[v] = name or str(v)
        return out, None, "--labels"
    for candidate in (
        pred_dir / "dataset.json",
        pred_dir.parent.parent / "dataset.json",
        gt_dir.parent / "dataset.json",
        gt_dir / "dataset.json",
    ):
        if candidate.is_file():
            try:
                ds = read_dataset_labels(candidate)
            except UserError as err:
                raise EvaluationError(f"{err}\n  or pass --labels VALUE ... to score without it") from err
            if ds.regions:
                raise EvaluationError(f"{candidate} defines regions; region-based evaluation is not supported")
            if ds.foreground:
                return ds.foreground, ds.ignore, str(candidate)
    values: set[int] = set()
    for c in cases:
        values.update(int(v) for v in np.unique(_binary_mask_to_1(read_label_map(c.gt, drop_alpha))))
    values.discard(0)
    if not values:
        raise EvaluationError(f"no foreground label in any reference of {gt_dir}; pass --labels")
    return {v: str(v) for v in sorted(values)}, None, "values found in the references"


def _binary_mask_to_1(arr: np.ndarray, labels: dict[int, str] | None = None) -> np.ndarray:
    """Raw 0/255 (8-bit) and 0/65535 (16-bit) masks mean label 1 (unless that value is a scored label); every
    other label map is left untouched."""
    if labels is not None and (1 not in labels or 255 in labels or 65535 in labels):
        return arr
    if arr.dtype != bool and arr.size:
        top = arr.max()
        if top in (255, 65535) and np.isin(arr, (0, top)).all():
            return (arr == top).astype(np.uint8)
    return arr


def _check_values(arr: np.ndarray, path: Path, what: str, labels: dict[int, str], ignore_label: int | None,
                  source: str, soft_png: bool) -> list[int]:
    """Values that are neither background, a scored label nor the ignore label: refused (naming the file and why),
    except with labels given explicitly (``--labels``), where they count as background and are returned."""
    allowed = {0, *labels} | ({ignore_label} if ignore_label is not None else set())
    found = np.unique(arr)
    extra = [int(v) for v in found if int(v) not in allowed]
    if not extra:
        return []
    grey = _is_picture(path) and len(found) >= GREY_MAP_MIN_VALUES and found.max() <= 65535
    if source == "--labels" and not grey:
        return extra
    if grey and what == "prediction" and not soft_png:
        fix = ("it looks like a grey probability map: pass --soft-png to score it as one (thresholded at 0.5)"
               if len(labels) == 1 else "save predictions as label maps (nnUNetv2_predict writes them)")
    elif grey:
        fix = ("it looks like a grey (anti-aliased or JPEG-compressed) mask, not a label map: threshold it into a "
               "label map (m2s-nnunet convert --binarize-masks does)")
    elif source.endswith("dataset.json"):
        fix = (f"the labels come from {source}: is it stale (from another dataset)? Correct it, or pass "
               "--labels with the label values of your data (other values then count as background)")
    else:
        fix = ("pass --labels with the label values to score (e.g. --labels 1 2; other values then count as "
               "background), or fix the file")
    shown = f"{extra[:10]}" + (f" (+{len(extra) - 10} more)" if len(extra) > 10 else "")
    raise EvaluationError(
        f"{what} holds value(s) {shown} that are neither background (0), a scored label {sorted(labels)} "
        f"(from {source}) nor the ignore label", path, fix)


def evaluate_case(
    files: CaseFiles, labels: dict[int, str], ignore_label: int | None, soft_png: bool = False,
    label_source: str = "the label list", drop_alpha: bool = False,
) -> list[dict]:
    """Rows (one per foreground label) with both conventions; soft metrics only for 2D cases.

    Two private columns carry what :func:`evaluate_folder` turns into notes: ``_unscored`` (values counted as
    background, ``--labels`` only) and ``_read_notes`` (how alpha channels were read).
    """
    read_notes: list[str] = []
    gt = _binary_mask_to_1(read_label_map(files.gt, drop_alpha, read_notes), labels)
    unscored = _check_values(gt, files.gt, "reference", labels, ignore_label, label_source, soft_png)
    raw_pred = (read_grey_map(files.pred, drop_alpha, read_notes) if soft_png
                else read_label_map(files.pred, drop_alpha, read_notes))
    if raw_pred.shape != gt.shape:
        raise EvaluationError(
            f"shape mismatch for case '{files.case}': prediction {files.pred} {raw_pred.shape} vs "
            f"reference {files.gt} {gt.shape}"
        )
    is_2d = gt.ndim == 2
    num_classes = max(labels) + 1
    prob = read_probabilities(files.npz, gt.shape, num_classes) if files.npz is not None and is_2d else None
    if soft_png and prob is None:
        if len(labels) != 1:
            raise EvaluationError("--soft-png (grey 0..255 probability maps) needs exactly one foreground label")
        source = "grey map"
        grey = raw_pred
        pred = (grey > 0.5).astype(np.uint8) * next(iter(labels))
    else:
        if soft_png:
            raw_pred = np.argmax(prob, axis=0)  # the npz is the prediction; the grey map is not a label map
        source = "probabilities" if prob is not None else "mask"
        grey = None
        pred = _binary_mask_to_1(raw_pred, labels) if list(labels) == [1] else raw_pred
        unscored += _check_values(pred, files.pred, "prediction", labels, ignore_label, label_source, soft_png)
    nn = metrics.nnunet_case_metrics(gt, pred, labels, ignore_label)
    rows = []
    for lab, name in labels.items():
        row: dict = {
            "case": files.case,
            "label": lab,
            "label_name": name,
            "source": source if is_2d else "mask",
            "_unscored": tuple(sorted(set(unscored))),
            "_read_notes": tuple(read_notes),
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
    drop_alpha: bool = False,
) -> EvaluationResult:
    """Score every prediction in ``pred_dir`` against ``gt_dir``; see the module docstring for conventions."""
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
    aggregate = _aggregate(per_case, label_map, is_3d)
    if not is_3d:
        counts = per_case.drop_duplicates("case")["source"].value_counts().to_dict()
        notes.append("soft metrics computed from: " + ", ".join(f"{k} ({v} cases)" for k, v in counts.items()))
    per_case = per_case.drop(columns=["em_curve", "_unscored", "_read_notes"], errors="ignore")
    return EvaluationResult(per_case, aggregate, is_3d, notes)


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
