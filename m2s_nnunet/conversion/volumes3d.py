"""NIfTI volumes (CT/MRI) -> ``<case>_0000.nii.gz`` + ``<case>.nii.gz``, after a geometry check of each image
against its label.

nnU-Net resamples volumes itself, so nothing is resized here; what it cannot survive is a label on another grid
than its image, so labels within ``--geometry-tol`` are written with their image's exact geometry.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m2s_nnunet.conversion.labels import LabelPlan
from m2s_nnunet.conversion.options import ConversionError, ConvertOptions
from m2s_nnunet.conversion.pairing import Pair
from m2s_nnunet.conversion.scan import Scan, raise_problems, unique_values
from m2s_nnunet.errors import UserError
from m2s_nnunet.inputs import volumes
from m2s_nnunet.naming import short_list

GEOMETRY = ("size", "spacing", "origin", "direction")


@dataclass(frozen=True)
class VolumeScan(Scan):
    """A scan of NIfTI volumes; ``sizes`` are (Z, Y, X), always one channel."""

    spacings: tuple[tuple[float, ...], ...] = ()
    """Voxel spacing per case, (Z, Y, X)."""
    regridded: tuple[str, ...] = ()
    """Labels that get their image's geometry (they differ within --geometry-tol)."""
    plain_gz: tuple[str, ...] = ()
    """Files named .nii.gz that are not gzip-compressed."""

    def warnings(self, opts: ConvertOptions) -> list[str]:
        """Plain files named .nii.gz and labels moved onto their image's grid."""
        warn = []
        if self.plain_gz:
            warn.append(f"{len(self.plain_gz)} file(s) named .nii.gz are not gzip-compressed (plain NIfTI): read as "
                        f"such and written as real .nii.gz: {short_list(self.plain_gz, 5)}")
        if self.regridded:
            warn.append(f"{len(self.regridded)} label(s) differ from their image's spacing/origin/direction within "
                        f"--geometry-tol {opts.geometry_tol} and were written with the image's geometry: "
                        f"{short_list(self.regridded, 5)}")
        return warn


def _geometry(image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def scan_volumes(pairs: list[Pair], opts: ConvertOptions) -> VolumeScan:
    """Read every volume and label in full (truncation, NaN/inf, dimensions, geometry) before writing anything."""
    from tqdm import tqdm

    problems: dict[str, list[str]] = {}
    shapes, spacings, values, regridded, plain_gz = [], [], {}, [], []
    for p in tqdm(pairs, desc="check", unit="case", disable=None if opts.progress else True):
        try:
            image = volumes.read_volume(p.image)
            label = volumes.read_volume(p.mask)
        except UserError as err:
            problems.setdefault("unreadable", []).append(f"{err.path}: {err.problem}")
            continue
        plain_gz += [f.name for f in (p.image, p.mask) if _named_gz_but_plain(f)]
        dims = [(f, im) for f, im in ((p.image, image), (p.mask, label))
                if im.GetDimension() != 3 or im.GetNumberOfComponentsPerPixel() != 1]
        if dims:
            problems.setdefault("dims", []).extend(
                f"{f.name}: {im.GetDimension()}D, {im.GetNumberOfComponentsPerPixel()} component(s)" for f, im in dims)
            continue
        try:
            volumes.finite_array(image, p.image)
            uniq = unique_values(volumes.label_array(label, p.mask))
        except UserError as err:
            problems.setdefault("values", []).append(f"{err.path}: {err.problem}")
            continue
        geo_img, geo_lab = _geometry(image), _geometry(label)
        diffs = [
            n
            for n, a, b in zip(GEOMETRY, geo_img, geo_lab, strict=True)
            if len(a) != len(b) or not np.allclose(a, b, rtol=0, atol=opts.geometry_tol if n != "size" else 0)
        ]
        if diffs:
            detail = "; ".join(f"{d} {geo_img[GEOMETRY.index(d)]} vs {geo_lab[GEOMETRY.index(d)]}" for d in diffs)
            problems.setdefault("geometry", []).append(f"{p.image.name} vs {p.mask.name}: {detail}")
            continue
        if geo_img[1:] != geo_lab[1:]:
            regridded.append(p.mask.name)
        values[p.mask.name] = {int(v) for v in uniq}
        shapes.append(tuple(reversed(geo_img[0])))
        spacings.append(tuple(reversed(geo_img[1])))
    raise_problems(
        problems,
        {
            "unreadable": "unreadable volumes or labels (empty, truncated, damaged or not NIfTI; re-export or "
            "remove them)",
            "dims": "volumes that are not single-channel 3D "
            "(split 4D/multi-modal data into one file per channel, "
            "e.g. with nnUNetv2_convert_MSD_dataset)",
            "values": "volumes with NaN/infinite voxels or labels with non-integer values "
            "(replace NaN/inf by a real value; resample labels with nearest-neighbour interpolation)",
            "geometry": f"image/label geometry mismatch (tolerance {opts.geometry_tol}); "
            "resample the label onto "
            "its image grid",
        },
    )
    return VolumeScan(channels=1, sizes=tuple(shapes), values=values, spacings=tuple(spacings),
                      regridded=tuple(regridded), plain_gz=tuple(plain_gz))


def _named_gz_but_plain(path: Path) -> bool:
    """A ``.nii.gz`` file that is not gzip-compressed (SimpleITK and nnU-Net read it; copying it keeps it wrong)."""
    return path.name.lower().endswith(".nii.gz") and not volumes.is_gzip(path)


def write_volume(pair: Pair, img_dst: Path, lab_dst: Path, plan: LabelPlan) -> None:
    """The image as it is (already checked in full); the label with the image's exact geometry.

    A label whose spacing/origin/direction differ within ``--geometry-tol`` would otherwise keep its own, and
    ``nnUNetv2_plan_and_preprocess --verify_dataset_integrity`` would refuse it. Images are copied byte for byte
    when they are real ``.nii.gz`` files (gzip magic bytes), else written compressed with SimpleITK.
    """
    import SimpleITK as sitk

    image = volumes.read_volume(pair.image)
    if pair.image.name.lower().endswith(".nii.gz") and volumes.is_gzip(pair.image):
        shutil.copyfile(pair.image, img_dst)
    else:  # .nii, or a plain NIfTI file named .nii.gz: written as a real .nii.gz
        sitk.WriteImage(image, str(img_dst), True)
    label = volumes.read_volume(pair.mask)
    out = sitk.GetImageFromArray(plan.apply(volumes.label_array(label, pair.mask)))
    out.CopyInformation(image)
    sitk.WriteImage(out, str(lab_dst), True)


class Volumes:
    """The 3D NIfTI volume kind (see :class:`m2s_nnunet.conversion.kind.InputKind`)."""

    name = "3d"
    title = "NIfTI volumes"
    axes = "Z x Y x X"
    file_ending = ".nii.gz"
    reader_writer = "SimpleITKIO"

    def refuse_options(self, opts: ConvertOptions) -> None:
        """--resize is for pictures; a modality is required because it picks nnU-Net's normalisation."""
        if opts.resize:
            raise ConversionError("--resize is for 2D pictures only; nnU-Net resamples volumes itself")
        if not opts.modality:
            raise ConversionError(
                "NIfTI volumes need --modality: 'CT' (Hounsfield units -> nnU-Net "
                "CTNormalization) or e.g. 'MRI' (per-image z-score)"
            )

    def scan(self, pairs: list[Pair], opts: ConvertOptions) -> VolumeScan:
        return scan_volumes(pairs, opts)

    def write_case(self, pair: Pair, img_dst: Path, lab_dst: Path, plan: LabelPlan, opts: ConvertOptions) -> None:
        write_volume(pair, img_dst, lab_dst, plan)
