"""Reading one prediction or reference as an array, through the shared checked readers of ``m2s_nnunet.inputs``.

Every reader turns the shared readers' errors into :class:`EvaluationError`, so a bad file stops the evaluation
with its name instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from m2s_nnunet.errors import UserError
from m2s_nnunet.evaluation.cases import is_picture
from m2s_nnunet.evaluation.errors import EvaluationError
from m2s_nnunet.inputs import arrays, pictures, volumes


def read_label_map(path: Path, drop_alpha: bool = False, notes: list[str] | None = None) -> np.ndarray:
    """Read a label map as (H, W) for 2D pictures and 2D ``.mha``/``.nrrd``/NIfTI files, or (Z, Y, X) for volumes
    (finite integers, fully decoded, one component per pixel). Alpha channels: see ``pictures.label_picture``."""
    try:
        if is_picture(path):
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
        arr = (pictures.picture_array(path, drop_alpha, notes) if is_picture(path)
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


def binary_mask_to_1(arr: np.ndarray, labels: dict[int, str] | None = None) -> np.ndarray:
    """Raw 0/255 (8-bit) and 0/65535 (16-bit) masks mean label 1 (unless that value is a scored label); every
    other label map is left untouched."""
    if labels is not None and (1 not in labels or 255 in labels or 65535 in labels):
        return arr
    if arr.dtype != bool and arr.size:
        top = arr.max()
        if top in (255, 65535) and np.isin(arr, (0, top)).all():
            return (arr == top).astype(np.uint8)
    return arr
