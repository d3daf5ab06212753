"""File endings per input kind, in one table: which endings the readers understand and which each command accepts.

``convert`` takes NIfTI only for volumes because it writes nnU-Net datasets as ``.nii.gz`` (byte copies where it can);
``evaluate`` also reads ``.mha``/``.nrrd`` label maps, which SimpleITK reads just as well. Label maps as pictures
must be lossless, so JPEG is readable for images but never for predictions.
"""

from __future__ import annotations

from pathlib import Path

NIFTI_ENDINGS = (".nii.gz", ".nii")
"""NIfTI, the volume format of nnU-Net datasets (checked for truncation and NaN by ``inputs.volumes``)."""
VOLUME_ENDINGS = NIFTI_ENDINGS + (".mha", ".nrrd")
"""Every volume ending ``inputs.volumes.read_volume`` reads (evaluation accepts all of them)."""
CONVERT_VOLUME_ENDINGS = NIFTI_ENDINGS
"""Volume endings ``convert`` accepts."""

JPEG_ENDINGS = (".jpg", ".jpeg")
PICTURE_ENDINGS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""Every 2D picture ending ``inputs.pictures`` reads; ``convert`` accepts all of them."""
LABEL_PICTURE_ENDINGS = tuple(e for e in PICTURE_ENDINGS if e not in JPEG_ENDINGS)
"""Lossless picture endings, the only ones a label map (mask or prediction) can be scored from."""


def is_nifti(path: str | Path) -> bool:
    """Whether the file name ends in a NIfTI ending (case-insensitive); the content decides gzip or not."""
    return Path(path).name.lower().endswith(NIFTI_ENDINGS)
