"""Which label values are scored, where that list came from, and what to do with any other value found.

Labels come from ``--labels`` (the user's list: other values count as background), else from a ``dataset.json``
next to the folders, else from the values in the references. Only the explicit list tolerates unknown values;
with the other two sources an unknown value means stale labels or a grey map, and is refused with the file named.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from m2s_nnunet.errors import UserError
from m2s_nnunet.evaluation.cases import CaseFiles, is_picture
from m2s_nnunet.evaluation.errors import EvaluationError
from m2s_nnunet.evaluation.readers import binary_mask_to_1, read_label_map
from m2s_nnunet.inputs.nnunet_json import read_dataset_labels

EXPLICIT_LABELS = "--labels"  # the label source when the user listed the labels (also shown in the notes)
GREY_MAP_MIN_VALUES = 16  # a picture with this many distinct values is a grey map, not a label map


def _parse_explicit(labels: Sequence[str]) -> dict[int, str]:
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
    return out


def resolve_labels(
    cases: list[CaseFiles], labels: Sequence[str] | None, pred_dir: Path, gt_dir: Path, drop_alpha: bool = False,
) -> tuple[dict[int, str], int | None, str]:
    """Foreground labels to score (value -> name), the ignore label, and where they came from."""
    if labels:
        return _parse_explicit(labels), None, EXPLICIT_LABELS
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
        values.update(int(v) for v in np.unique(binary_mask_to_1(read_label_map(c.gt, drop_alpha))))
    values.discard(0)
    if not values:
        raise EvaluationError(f"no foreground label in any reference of {gt_dir}; pass --labels")
    return {v: str(v) for v in sorted(values)}, None, "values found in the references"


def check_values(arr: np.ndarray, path: Path, what: str, labels: dict[int, str], ignore_label: int | None,
                 source: str, soft_png: bool) -> list[int]:
    """Values that are neither background, a scored label nor the ignore label: refused (naming the file and why),
    except with labels given explicitly (``--labels``), where they count as background and are returned."""
    allowed = {0, *labels} | ({ignore_label} if ignore_label is not None else set())
    found = np.unique(arr)
    extra = [int(v) for v in found if int(v) not in allowed]
    if not extra:
        return []
    grey = is_picture(path) and len(found) >= GREY_MAP_MIN_VALUES and found.max() <= 65535
    if source == EXPLICIT_LABELS and not grey:
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
