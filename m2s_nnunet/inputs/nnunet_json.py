"""The JSON files nnU-Net writes and reads: ``dataset.json`` (labels) and ``summary.json`` (validation metrics).

Both are read with every field checked, so that a truncated file, a hand-edited label table or a summary of
the wrong shape is refused with the file and the field named, instead of a traceback or a silently wrong table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from m2s_nnunet.errors import UserError
from m2s_nnunet.inputs.textfiles import read_json

METRICS = ("Dice", "IoU")
SUMMARY_FIX = "re-create it with nnUNetv2_train ... --val (or delete the fold folder if the fold is abandoned)"


@dataclass
class DatasetLabels:
    """Foreground labels (value -> name), the ignore label, and whether the dataset is region-based."""

    foreground: dict[int, str]
    ignore: int | None = None
    regions: bool = False
    file_ending: str = ""


def read_dataset_labels(path: str | Path) -> DatasetLabels:
    """The ``labels`` table of an nnU-Net ``dataset.json`` (values must be integers, or lists of them for regions)."""
    fix = "repair its \"labels\" entry, e.g. {\"background\": 0, \"lesion\": 1}, or remove the stale file"
    data = read_json(path, dict, "dataset.json", fix)
    labels = data.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise UserError("dataset.json has no \"labels\" object", path, fix)
    out = DatasetLabels({}, file_ending=str(data.get("file_ending", "")))
    for name, value in labels.items():
        if isinstance(value, list | tuple):
            if not value or not all(_is_int(v) for v in value):
                raise UserError(f"label '{name}' has the region value {value!r}; expected integers", path, fix)
            out.regions = True
            continue
        if not _is_int(value):
            raise UserError(f"label '{name}' has the value {value!r}; label values must be integers", path, fix)
        if name == "ignore":
            out.ignore = int(value)
        elif int(value) != 0:
            if int(value) in out.foreground:
                raise UserError(f"labels '{out.foreground[int(value)]}' and '{name}' share the value {value}",
                                path, fix)
            out.foreground[int(value)] = str(name)
    out.foreground = dict(sorted(out.foreground.items()))
    return out


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class ValidationSummary:
    """A checked nnU-Net ``summary.json``: per-label means, the foreground mean, and one row per case and label."""

    mean: dict[str, dict[str, float]]
    foreground_mean: dict[str, float]
    cases: list[dict] = field(default_factory=list)  # {"file": str, "label": str, "Dice": float, "IoU": float}


def read_validation_summary(path: str | Path, require_cases: bool = True) -> ValidationSummary:
    """Parse nnU-Net's ``summary.json``; ``require_cases``: a fold must have scored at least one case."""
    data = read_json(path, dict, "summary.json", SUMMARY_FIX)
    mean = data.get("mean")
    if not isinstance(mean, dict) or not mean:
        raise UserError("summary.json has no per-label \"mean\" object", path, SUMMARY_FIX)
    per_case = data.get("metric_per_case")
    if not isinstance(per_case, list) or (require_cases and not per_case):
        raise UserError("summary.json has no \"metric_per_case\" list of validated cases", path, SUMMARY_FIX)
    fg = data.get("foreground_mean", {})
    if not isinstance(fg, dict):
        raise UserError("\"foreground_mean\" is not an object", path, SUMMARY_FIX)
    out = ValidationSummary(
        {str(label): _metrics(vals, path, f"mean[{label!r}]") for label, vals in mean.items()},
        _metrics(fg, path, "foreground_mean"),
    )
    for i, case in enumerate(per_case):
        where = f"metric_per_case[{i}]"
        if not isinstance(case, dict) or not isinstance(case.get("metrics"), dict):
            raise UserError(f"{where} is not an object with \"metrics\"", path, SUMMARY_FIX)
        name = case.get("prediction_file") or case.get("reference_file") or f"case_{i}"
        if not isinstance(name, str):
            raise UserError(f"{where}: the file name {name!r} is not a string", path, SUMMARY_FIX)
        for label, vals in case["metrics"].items():
            out.cases.append({"file": name, "label": str(label), **_metrics(vals, path, f"{where}[{label!r}]")})
    return out


def _metrics(values: object, path: str | Path, where: str) -> dict[str, float]:
    """Dice and IoU of one entry: numbers in 0..1, or null/NaN (nnU-Net's value when both masks are empty)."""
    if not isinstance(values, dict):
        raise UserError(f"{where} is {type(values).__name__} {values!r:.40}, expected an object of metrics",
                        path, SUMMARY_FIX)
    out = {}
    for metric in METRICS:
        v = values.get(metric)
        if v is None:
            out[metric] = float("nan")
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise UserError(f"{where}: {metric} is {v!r:.40}, not a number", path, SUMMARY_FIX)
        v = float(v)
        if not math.isnan(v) and not 0.0 <= v <= 1.0:
            raise UserError(f"{where}: {metric} {v} is outside 0..1", path, SUMMARY_FIX)
        out[metric] = v
    return out
