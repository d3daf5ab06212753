"""``m2s_nnunet.conversion.volumes3d``: NIfTI volumes, their geometry check, and damaged or odd volume files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_inputs import opts, truncate, write_volumes

from m2s_nnunet.conversion import ConversionError, convert


def _nifti_set(root: Path, n: int = 3) -> tuple[Path, Path]:
    return write_volumes(root, n=n, label_spacing=(1.0, 1.0, 2.0))


def test_nifti_volumes(tmp_path):
    import SimpleITK as sitk

    img, lab = write_volumes(tmp_path / "msd")
    with pytest.raises(ConversionError, match="--modality"):
        convert(opts(img, lab, tmp_path / "raw"))
    report = convert(opts(img, lab, tmp_path / "raw", modality="CT"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    dj = json.loads((ds / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "CT"} and dj["file_ending"] == ".nii.gz"
    assert dj["labels"] == {"background": 0, "class_1": 1, "class_2": 2}
    assert report.kind == "3d" and report.size_range == "6 x 12 x 10"
    assert sitk.ReadImage(str(ds / "imagesTr" / "vol_000_0000.nii.gz")).GetSpacing() == (1.0, 1.0, 2.0)
    assert (ds / "labelsTr" / "vol_002.nii.gz").is_file()
    with pytest.raises(ConversionError, match="--resize"):
        convert(opts(img, lab, tmp_path / "raw2", modality="CT", resize=(8, 8)))


def test_nifti_geometry_mismatch_is_named(tmp_path):
    img, lab = write_volumes(tmp_path / "msd", label_spacing=(1.0, 1.0, 2.5))
    with pytest.raises(ConversionError, match=r"(?s)geometry mismatch.*vol_002\.nii\.gz.*spacing"):
        convert(opts(img, lab, tmp_path / "raw", modality="MRI"))


def test_truncated_nifti_is_refused(tmp_path):
    img, lab = _nifti_set(tmp_path / "msd")
    truncate(img / "vol_001.nii.gz", 0.7)
    with pytest.raises(ConversionError, match=r"(?s)unreadable volumes.*vol_001\.nii\.gz.*(truncated|damaged)"):
        convert(opts(img, lab, tmp_path / "raw", modality="CT"))


def test_non_finite_voxels_are_refused(tmp_path):
    import SimpleITK as sitk

    img, lab = _nifti_set(tmp_path / "msd")
    vol = sitk.ReadImage(str(img / "vol_000.nii.gz"))
    arr = sitk.GetArrayFromImage(vol)
    arr[0, 0, :3] = [np.nan, np.inf, -np.inf]
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(vol)
    sitk.WriteImage(bad, str(img / "vol_000.nii.gz"))
    with pytest.raises(ConversionError, match=r"(?s)NaN/infinite.*vol_000\.nii\.gz: 3 of 720 voxel"):
        convert(opts(img, lab, tmp_path / "raw", modality="CT"))


def test_label_within_geometry_tolerance_gets_the_image_geometry(tmp_path):
    import SimpleITK as sitk
    from nnunetv2.experiment_planning.verify_dataset_integrity import check_cases
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    img, lab = write_volumes(tmp_path / "msd", label_spacing=(1.0, 1.0, 2.0005))  # within --geometry-tol 1e-3
    report = convert(opts(img, lab, tmp_path / "raw", modality="CT"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    image, label = (sitk.ReadImage(str(ds / d / f)) for d, f in (("imagesTr", "vol_002_0000.nii.gz"),
                                                                   ("labelsTr", "vol_002.nii.gz")))
    assert label.GetSpacing() == image.GetSpacing()
    assert any("written with the image's geometry: vol_002.nii.gz" in w for w in report.warnings)
    assert check_cases([str(ds / "imagesTr" / "vol_002_0000.nii.gz")], str(ds / "labelsTr" / "vol_002.nii.gz"), 1,
                       SimpleITKIO)


def test_uncompressed_nifti_named_nii_gz_is_written_as_real_gzip(tmp_path):
    import SimpleITK as sitk

    from m2s_nnunet.inputs import volumes

    img, lab = _nifti_set(tmp_path / "msd")
    src = img / "vol_001.nii.gz"
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(src)))
    sitk.WriteImage(sitk.ReadImage(str(src)), str(tmp_path / "plain.nii"))
    src.write_bytes((tmp_path / "plain.nii").read_bytes())  # what some tools write: plain NIfTI named .nii.gz
    report = convert(opts(img, lab, tmp_path / "raw", modality="CT"))
    assert any("not gzip-compressed" in w and "vol_001.nii.gz" in w for w in report.warnings)
    out = tmp_path / "raw" / "Dataset501_Test" / "imagesTr" / "vol_001_0000.nii.gz"
    assert volumes.is_gzip(out) and np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), expected)
    import nibabel as nib

    assert nib.load(str(out)).shape == expected.shape[::-1]  # readable by name, as nnU-Net's NibabelIO does

