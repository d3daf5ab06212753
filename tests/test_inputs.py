"""The shared validation layer (``m2s_nnunet/inputs``): each reader returns safe data or a UserError naming the
file, the problem and the fix. The commands' own tests cover how these errors reach the user."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from m2s_nnunet.errors import UserError
from m2s_nnunet.inputs import arrays, folders, nnunet_json, pictures, textfiles, volumes


def test_pictures_are_decoded_in_full(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.arange(600, dtype=np.uint8).reshape(20, 30)).save(path)
    assert pictures.open_picture(path).size == (30, 20)
    path.write_bytes(path.read_bytes()[:-30])  # Image.open() alone still reads the header fine
    Image.open(path)
    with pytest.raises(UserError, match=r"x\.png: corrupt or truncated image") as err:
        pictures.open_picture(path)
    assert err.value.path == path and "re-export" in err.value.fix


def test_label_pictures_refuse_nan_and_fractions(tmp_path):
    path = tmp_path / "m.tif"
    Image.fromarray(np.array([[0.0, 1.0], [np.nan, 1.0]], np.float32)).save(path)
    with pytest.raises(UserError, match="NaN or infinite"):
        pictures.label_picture(path)
    Image.fromarray(np.array([[0.0, 0.5]], np.float32)).save(path)
    with pytest.raises(UserError, match="non-integer"):
        pictures.label_picture(path)
    Image.fromarray(np.array([[0.0, 2.0]], np.float32)).save(path)
    assert pictures.label_picture(path).tolist() == [[0, 2]]


def test_32bit_range_problem():
    assert pictures.integer_range_problem(Image.fromarray(np.array([[0, 70000]], np.int32))) is not None
    assert pictures.integer_range_problem(Image.fromarray(np.array([[0, 65535]], np.int32))) is None


def test_volumes_truncated_or_non_finite(tmp_path):
    import SimpleITK as sitk

    arr = np.zeros((3, 4, 5), np.float32)
    path = tmp_path / "v.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    assert volumes.finite_array(volumes.read_volume(path), path).shape == (3, 4, 5)
    arr[1, 1, 1] = np.nan  # SimpleITK reads this voxel as 0
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    with pytest.raises(UserError, match="1 of 60 voxel"):
        volumes.finite_array(volumes.read_volume(path), path)
    raw = tmp_path / "v.nii"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(raw))
    raw.write_bytes(raw.read_bytes()[:-40])
    with pytest.raises(UserError, match=r"truncated: holds \d+ of the \d+ bytes"):
        volumes.read_volume(raw)


def test_probabilities(tmp_path):
    npz = tmp_path / "p.npz"
    np.savez(npz, probabilities=np.full((2, 1, 3, 4), 0.5, np.float32))
    assert arrays.read_probabilities(npz, (3, 4), 2).shape == (2, 3, 4)
    with pytest.raises(UserError, match="3 are needed"):
        arrays.read_probabilities(npz, (3, 4), 3)
    with pytest.raises(UserError, match="do not match the reference"):
        arrays.read_probabilities(npz, (4, 4), 2)


def test_json_errors_give_line_and_column(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{\n  "labels": {"x": 1,\n')
    with pytest.raises(UserError, match=r"a\.json: JSON file is not valid JSON \(.* line 3"):
        textfiles.read_json(path)
    path.write_text("[1]")
    with pytest.raises(UserError, match="holds a JSON list, expected a JSON object"):
        textfiles.read_json(path)


def test_dataset_labels_and_validation_summary(tmp_path):
    ds = tmp_path / "dataset.json"
    ds.write_text(json.dumps({"labels": {"background": 0, "a": 1, "b": 2, "ignore": 3}}))
    labels = nnunet_json.read_dataset_labels(ds)
    assert labels.foreground == {1: "a", 2: "b"} and labels.ignore == 3 and not labels.regions
    ds.write_text(json.dumps({"labels": {"background": 0, "a": 1, "b": 1}}))
    with pytest.raises(UserError, match="share the value 1"):
        nnunet_json.read_dataset_labels(ds)
    summary = tmp_path / "summary.json"
    good = {"foreground_mean": {"Dice": 0.5}, "mean": {"1": {"Dice": 0.5}},
            "metric_per_case": [{"prediction_file": "a.png", "metrics": {"1": {"Dice": None, "IoU": 0.2}}}]}
    summary.write_text(json.dumps(good))
    parsed = nnunet_json.read_validation_summary(summary)
    assert np.isnan(parsed.cases[0]["Dice"]) and parsed.cases[0]["IoU"] == 0.2
    summary.write_text(json.dumps({**good, "metric_per_case": [{"metrics": {"1": {"Dice": "0.5"}}}]}))
    with pytest.raises(UserError, match=r"metric_per_case\[0\]\['1'\]: Dice is '0.5', not a number"):
        nnunet_json.read_validation_summary(summary)


def test_output_folder_checks(tmp_path, readonly_dir):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        folders.check_output_folder(a_file)
    with pytest.raises(UserError, match="cannot be created"):
        folders.check_output_folder(a_file / "sub")
    with pytest.raises(UserError, match="not writable"):
        folders.check_output_folder(readonly_dir / "new")
    assert folders.check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # nothing is created


# ---------------------------------------------------------------------------------------------- review of issue 10
def test_mpo_jpeg_is_read_as_its_first_frame(tmp_path):
    """Phone and camera JPEGs are often MPO files (the photo + a second view): frame 0 is the picture."""
    photo = np.random.default_rng(0).integers(0, 255, (16, 20, 3), dtype=np.uint8)
    path = tmp_path / "phone.jpg"
    Image.fromarray(photo).save(path, format="MPO", save_all=True,
                                append_images=[Image.fromarray(255 - photo)])
    with Image.open(path) as probe:
        assert probe.format == "MPO" and probe.n_frames == 2
    im = pictures.open_picture(path)
    reference = tmp_path / "plain.jpg"
    Image.fromarray(photo).save(reference, format="JPEG")
    assert np.array_equal(np.asarray(im), np.asarray(Image.open(reference)))


@pytest.mark.parametrize("fmt, ext", [("TIFF", ".tif"), ("GIF", ".gif"), ("PNG", ".png"), ("WEBP", ".webp")])
def test_multi_page_and_animated_pictures_are_refused(tmp_path, fmt, ext):
    from PIL import features

    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow without WebP")
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 120, 240)]
    path = tmp_path / f"anim{ext}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(UserError, match=r"holds 3 pages/frames"):
        pictures.open_picture(path)


def _alpha_mask(path, grey: np.ndarray, alpha: np.ndarray) -> None:
    Image.fromarray(np.dstack([grey, grey, grey, alpha]).astype(np.uint8), "RGBA").save(path)


def test_alpha_masks_are_read_when_unambiguous(tmp_path):
    labels = np.zeros((6, 8), np.uint8)
    labels[2:4, 3:6] = 1
    path = tmp_path / "m.png"
    notes: list[str] = []
    _alpha_mask(path, labels, np.full_like(labels, 255))  # opaque: alpha carries nothing
    assert np.array_equal(pictures.label_picture(path, notes=notes), labels)
    assert "constant alpha channel (255) ignored" in notes[-1]
    _alpha_mask(path, labels * 255, labels * 255)  # transparent background, opaque labels
    assert np.array_equal(pictures.label_picture(path, notes=notes), labels * 255)
    assert "m.png: alpha channel ignored" in notes[-1]
    Image.fromarray(np.dstack([labels, labels * 200]), "LA").save(path)  # LA, anti-aliased alpha
    assert np.array_equal(pictures.label_picture(path, notes=notes), labels)
    assert len(notes) == 3


def test_alpha_masks_that_may_hold_the_mask_are_refused_unless_drop_alpha(tmp_path):
    shape = np.zeros((6, 8), np.uint8)
    shape[2:4, 3:6] = 255
    path = tmp_path / "m.png"
    _alpha_mask(path, np.full_like(shape, 255), shape)  # white everywhere, the shape is in alpha only
    with pytest.raises(pictures.AmbiguousAlphaError, match="transparent pixels are not background") as err:
        pictures.label_picture(path)
    assert "--drop-alpha" in err.value.fix and "getchannel('A')" in err.value.fix
    notes: list[str] = []
    assert (pictures.label_picture(path, drop_alpha=True, notes=notes) == 255).all()  # what the user asked for
    assert "--drop-alpha" in notes[0]
    _alpha_mask(path, np.zeros_like(shape), shape)  # black everywhere, the shape in alpha
    with pytest.raises(pictures.AmbiguousAlphaError, match="colour channels hold no label"):
        pictures.label_picture(path)


def test_uncompressed_nifti_named_nii_gz_is_read_as_plain_nifti(tmp_path):
    import SimpleITK as sitk

    arr = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    plain = tmp_path / "plain.nii"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(plain))
    path = tmp_path / "v.nii.gz"
    path.write_bytes(plain.read_bytes())
    assert not volumes.is_gzip(path)
    volumes.check_nifti_complete(path)
    assert np.array_equal(volumes.finite_array(volumes.read_volume(path), path), arr)
    arr[0, 0, 0] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(plain))
    path.write_bytes(plain.read_bytes())
    with pytest.raises(UserError, match="1 of 60 voxel"):  # NaN check reads it too
        volumes.finite_array(volumes.read_volume(path), path)
    path.write_bytes(plain.read_bytes()[:-40])
    with pytest.raises(UserError, match=r"truncated: holds \d+ of the \d+ bytes"):
        volumes.read_volume(path)
