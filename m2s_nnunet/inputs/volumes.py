"""Volumes (NIfTI ``.nii.gz``/``.nii``; ``.mha``/``.nrrd`` for evaluation) read with SimpleITK, after the checks
SimpleITK skips.

SimpleITK fills the missing part of a truncated NIfTI file with zeros and reads NaN/inf voxels as 0; nnU-Net
then trains on a half-blank (or blank) image, or fails much later without naming the file. Here a NIfTI file must hold
every byte its header announces, images must be finite, and labels finite integers.

A ``.nii.gz`` file that is not gzip-compressed (a plain ``.nii`` renamed, as some tools write them) is read as
plain NIfTI, as SimpleITK and nnU-Net do: the gzip magic bytes decide, not the name (:func:`is_gzip`).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from m2s_nnunet.errors import UserError
from m2s_nnunet.inputs.endings import is_nifti

REEXPORT = "re-export or re-download the file (or remove the case)"
_CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str | Path) -> bool:
    """Whether the file starts with the gzip magic bytes (whatever its name says)."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


@contextmanager
def _nibabel_image(path: Path) -> Iterator:
    """The nibabel image of a NIfTI file, its data readable inside the ``with`` block. nibabel picks gzip by the
    name alone; an uncompressed file named ``.nii.gz`` is opened as plain NIfTI here."""
    import nibabel as nib

    if not path.name.lower().endswith(".gz") or is_gzip(path):
        yield nib.load(str(path))
        return
    with open(path, "rb") as fh:
        try:
            image = nib.Nifti1Image.from_stream(fh)
        except Exception:  # noqa: BLE001 - not NIfTI-1: try NIfTI-2, whose errors are reported by the caller
            fh.seek(0)
            image = nib.Nifti2Image.from_stream(fh)
        yield image


def check_nifti_complete(path: str | Path) -> None:
    """Refuse a NIfTI file that is empty, unreadable, or shorter than its header says (an uncompressed file named
    ``.nii.gz`` is measured as plain NIfTI; a damaged gzip stream is refused)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise UserError("broken symbolic link (its target does not exist)", path, "fix or remove the link")
    if path.stat().st_size == 0:
        raise UserError("empty file (0 bytes)", path, REEXPORT)
    try:
        with _nibabel_image(path) as image:
            proxy = image.dataobj
            expected = int(proxy.offset) + int(np.prod(proxy.shape)) * np.dtype(proxy.dtype).itemsize
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for damaged headers
        raise UserError(f"not a readable NIfTI file ({type(err).__name__}: {err})", path, REEXPORT) from err
    actual = _gzip_length(path) if is_gzip(path) else path.stat().st_size
    if actual < expected:
        raise UserError(
            f"truncated: holds {actual} of the {expected} bytes its header announces "
            "(an interrupted copy or download?)",
            path,
            REEXPORT,
        )


def _gzip_length(path: Path) -> int:
    """Decompressed length, reading the whole stream (a truncated or damaged stream raises UserError)."""
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                total += len(chunk)
    except (EOFError, OSError, zlib.error) as err:  # EOFError: truncated; BadGzipFile is an OSError
        raise UserError(f"damaged or truncated gzip data ({err})", path, REEXPORT) from err
    return total


def read_volume(path: str | Path):
    """A ``SimpleITK.Image`` read in full (NIfTI files checked for truncation first)."""
    import SimpleITK as sitk

    path = Path(path)
    if is_nifti(path):
        check_nifti_complete(path)
    elif path.stat().st_size == 0:
        raise UserError("empty file (0 bytes)", path, REEXPORT)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:  # SimpleITK reports every reader failure as RuntimeError
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot be read as an image volume ({first})", path, REEXPORT) from err


def _nonfinite_count(image, path: Path) -> int:
    """NaN/inf voxels as stored in the file. SimpleITK's NIfTI reader turns them into 0, so NIfTI files are
    read again with nibabel (float files only: integer voxels cannot be NaN)."""
    import SimpleITK as sitk

    if is_nifti(path):
        with _nibabel_image(path) as nifti:
            proxy = nifti.dataobj
            if np.dtype(proxy.dtype).kind != "f":
                return 0
            stored = np.asarray(proxy.get_unscaled())
        return int(stored.size - np.count_nonzero(np.isfinite(stored)))
    arr = sitk.GetArrayViewFromImage(image)
    return int(arr.size - np.count_nonzero(np.isfinite(arr))) if arr.dtype.kind == "f" else 0


def finite_array(image, path: str | Path) -> np.ndarray:
    """The voxel array of a volume (Z, Y, X[, C]), a copy that outlives ``image``; refuse NaN and infinite voxels."""
    import SimpleITK as sitk

    path = Path(path)
    arr = sitk.GetArrayFromImage(image)
    if arr.dtype.kind == "f" or is_nifti(path):
        bad = _nonfinite_count(image, path)
        if bad:
            raise UserError(
                f"{bad} of {arr.size} voxel(s) are NaN or infinite",
                path,
                "replace them (e.g. with the background value) before converting; nnU-Net cannot use them",
            )
    return arr


def label_array(image, path: str | Path) -> np.ndarray:
    """The label array of a volume: finite integer values only (float files holding integers are accepted)."""
    arr = finite_array(image, path)
    if arr.dtype.kind == "f":
        if not np.all(np.mod(arr, 1) == 0):
            raise UserError(
                "label volume has non-integer values (a probability map or a resampled label?)",
                path,
                "resample labels with nearest-neighbour interpolation and save them as integers",
            )
        return arr.astype(np.int64)
    return arr
