"""Pairing predictions with references by case name, before anything is read.

Pairing fails early and names the cases (a prediction without reference, a reference without prediction unless
``--chill``, a case twice, mixed 2D pictures and volumes), so a wrong folder never yields a silently partial score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from m2s_nnunet.errors import UserError
from m2s_nnunet.evaluation.errors import EvaluationError
from m2s_nnunet.inputs import folders
from m2s_nnunet.inputs.endings import LABEL_PICTURE_ENDINGS, VOLUME_ENDINGS
from m2s_nnunet.naming import short_list, split_ending

# evaluation scores lossless label pictures and every readable volume (inputs/endings.py holds the table)
IMAGE_ENDINGS_2D = LABEL_PICTURE_ENDINGS
ALL_ENDINGS = VOLUME_ENDINGS + IMAGE_ENDINGS_2D


@dataclass
class CaseFiles:
    """One case to score: its prediction, its reference and, when present, nnU-Net's ``<case>.npz``."""

    case: str
    pred: Path
    gt: Path
    npz: Path | None = None


def is_picture(path: Path) -> bool:
    """Whether ``path`` is a 2D picture (PNG, BMP, TIFF) rather than a volume format."""
    return split_ending(path.name, ALL_ENDINGS)[1] in IMAGE_ENDINGS_2D


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
        kinds = {is_picture(p) for p in files.values()}
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
