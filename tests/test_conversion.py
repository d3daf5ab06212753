"""Dataset conversion on small generated folders: every input format, every refusal, atomic writes, splits."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m2s_nnunet import cli, cli_analysis, conversion
from m2s_nnunet.conversion import ConversionError, ConvertOptions, convert

H, W = 20, 28


def _mask(i: int, values: tuple[int, ...] = (255,)) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    for k, v in enumerate(values):
        m[2 + 3 * k : 5 + 3 * k, 2 + i : 10 + i] = v
    return m


def make_folder(
    root: Path,
    n: int = 4,
    img_ext: str = ".jpg",
    mask_ext: str = ".png",
    mode: str = "RGB",
    values: tuple[int, ...] = (255,),
    names: list[str] | None = None,
) -> tuple[Path, Path]:
    """``root/images`` + ``root/masks`` with ``n`` small synthetic cases."""
    rng = np.random.default_rng(0)
    img_dir, mask_dir = root / "images", root / "masks"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    for i, name in enumerate(names or [f"case{i:02d}" for i in range(n)]):
        shape = (H, W, len(mode)) if len(mode) > 1 else (H, W)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(img_dir / f"{name}{img_ext}")
        Image.fromarray(_mask(i, values)).save(mask_dir / f"{name}{mask_ext}")
    return img_dir, mask_dir


def opts(img: Path, msk: Path, out: Path, **kw) -> ConvertOptions:
    return ConvertOptions(img, msk, 501, "Test", out=out, progress=False, **kw)


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _label_values(path: Path) -> set[int]:
    return set(np.unique(np.asarray(Image.open(path))).tolist())


def test_rgb_jpeg_images_and_0_255_masks(tmp_path):
    img, msk = make_folder(tmp_path / "src")
    report = convert(opts(img, msk, tmp_path / "raw"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    assert report.dataset_dir == ds
    dj = json.loads((ds / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert dj["labels"] == {"background": 0, "foreground": 1}
    assert dj["numTraining"] == 4 and dj["file_ending"] == ".png"
    assert sorted(p.name for p in (ds / "imagesTr").iterdir())[0] == "case00_0000.png"
    im = Image.open(ds / "imagesTr" / "case00_0000.png")
    assert im.format == "PNG" and im.mode == "RGB" and im.size == (W, H)
    assert _label_values(ds / "labelsTr" / "case00.png") == {0, 1}
    assert report.values_found == [0, 255] and "0/255 -> 0/1" in report.plan.description
    assert not list((tmp_path / "raw").glob(".*"))  # no leftover temporary folder


def test_output_is_what_nnunet_reads(tmp_path):
    from nnunetv2.experiment_planning.verify_dataset_integrity import check_cases, verify_labels
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

    img, msk = make_folder(tmp_path / "src", n=2)
    convert(opts(img, msk, tmp_path / "raw"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    data, _ = NaturalImage2DIO().read_images([str(ds / "imagesTr" / "case00_0000.png")])
    assert data.shape == (3, 1, H, W)
    assert verify_labels(str(ds / "labelsTr" / "case00.png"), NaturalImage2DIO, [0, 1])
    assert check_cases(
        [str(ds / "imagesTr" / "case00_0000.png")], str(ds / "labelsTr" / "case00.png"), 3, NaturalImage2DIO
    )


@pytest.mark.parametrize("img_ext", [".png", ".bmp", ".tif", ".jpeg"])
def test_grey_images_in_every_format_with_0_1_masks(tmp_path, img_ext):
    img, msk = make_folder(tmp_path / "src", n=3, img_ext=img_ext, mode="L", values=(1,))
    convert(opts(img, msk, tmp_path / "raw", modality="US", label_name="lesion"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    dj = json.loads((ds / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "US"} and dj["labels"] == {"background": 0, "lesion": 1}
    assert Image.open(ds / "imagesTr" / "case01_0000.png").mode == "L"
    assert _label_values(ds / "labelsTr" / "case01.png") == {0, 1}


def test_consecutive_multiclass_labels_are_kept(tmp_path):
    img, msk = make_folder(tmp_path / "src", values=(1, 2))
    convert(opts(img, msk, tmp_path / "raw"))
    dj = json.loads((tmp_path / "raw" / "Dataset501_Test" / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "class_1": 1, "class_2": 2}


def test_label_values_need_labels_option(tmp_path):
    img, msk = make_folder(tmp_path / "src", values=(128, 255))
    with pytest.raises(ConversionError, match=r"(?s)unexpected label values.*case00.png.*--labels"):
        convert(opts(img, msk, tmp_path / "raw"))
    assert not (tmp_path / "raw" / "Dataset501_Test").exists()
    convert(opts(img, msk, tmp_path / "raw", labels=["ggo=128", "consolidation=255"]))
    ds = tmp_path / "raw" / "Dataset501_Test"
    assert json.loads((ds / "dataset.json").read_text())["labels"] == {"background": 0, "ggo": 1, "consolidation": 2}
    assert _label_values(ds / "labelsTr" / "case00.png") == {0, 1, 2}
    with pytest.raises(ConversionError, match="--labels allows only"):
        convert(opts(img, msk, tmp_path / "raw2", labels=["ggo=128"]))


def test_jpeg_masks_are_thresholded_with_warning(tmp_path):
    img, msk = make_folder(tmp_path / "src", mask_ext=".jpg")
    report = convert(opts(img, msk, tmp_path / "raw"))
    assert any("JPEG mask" in w for w in report.warnings)
    assert _label_values(tmp_path / "raw" / "Dataset501_Test" / "labelsTr" / "case00.png") == {0, 1}


def test_resize_images_bilinear_masks_nearest(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=2)
    convert(opts(img, msk, tmp_path / "raw", resize=(32, 48)))
    ds = tmp_path / "raw" / "Dataset501_Test"
    assert Image.open(ds / "imagesTr" / "case00_0000.png").size == (48, 32)
    lab = Image.open(ds / "labelsTr" / "case00.png")
    assert lab.size == (48, 32) and _label_values(ds / "labelsTr" / "case00.png") == {0, 1}


def test_unmatched_names_are_listed(tmp_path):
    img, msk = make_folder(tmp_path / "src")
    (msk / "case01.png").rename(msk / "other.png")
    with pytest.raises(ConversionError, match=r"(?s)unmatched names.*case01\.jpg.*other\.png"):
        convert(opts(img, msk, tmp_path / "raw"))


def test_mask_suffix(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=2)
    for p in list(msk.iterdir()):
        p.rename(msk / f"{p.stem}_mask.png")
    convert(opts(img, msk, tmp_path / "raw", mask_suffix="_mask"))
    assert (tmp_path / "raw" / "Dataset501_Test" / "labelsTr" / "case00.png").is_file()


def test_unreadable_file_is_named(tmp_path):
    img, msk = make_folder(tmp_path / "src")
    (img / "case02.jpg").write_bytes(b"not an image")
    with pytest.raises(ConversionError, match=r"(?s)unreadable.*case02\.jpg"):
        convert(opts(img, msk, tmp_path / "raw"))


def test_size_mismatch_is_named(tmp_path):
    img, msk = make_folder(tmp_path / "src")
    Image.fromarray(np.zeros((H + 2, W), np.uint8)).save(msk / "case03.png")
    with pytest.raises(ConversionError, match=r"(?s)size mismatch.*case03\.jpg 20x28 vs case03\.png 22x28"):
        convert(opts(img, msk, tmp_path / "raw"))


def test_rgba_images_refused_unless_drop_alpha(tmp_path):
    img, msk = make_folder(tmp_path / "src", img_ext=".png", mode="RGBA")
    with pytest.raises(ConversionError, match=r"(?s)alpha.*convert to RGB.*case00\.png \(RGBA\)"):
        convert(opts(img, msk, tmp_path / "raw"))
    convert(opts(img, msk, tmp_path / "raw", drop_alpha=True))
    assert Image.open(tmp_path / "raw" / "Dataset501_Test" / "imagesTr" / "case00_0000.png").mode == "RGB"


def test_mixed_channels_refused_unless_forced(tmp_path):
    img, msk = make_folder(tmp_path / "src", img_ext=".png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(img / "case01.png")
    with pytest.raises(ConversionError, match=r"(?s)mixed channel counts.*--channels"):
        convert(opts(img, msk, tmp_path / "raw"))
    convert(opts(img, msk, tmp_path / "raw", channels="rgb"))
    assert Image.open(tmp_path / "raw" / "Dataset501_Test" / "imagesTr" / "case01_0000.png").mode == "RGB"


def test_existing_dataset_is_never_touched_by_refused_runs(tmp_path, monkeypatch):
    img, msk = make_folder(tmp_path / "src")
    convert(opts(img, msk, tmp_path / "raw"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    before = _tree_digest(ds)
    with pytest.raises(ConversionError, match="already exists.*--overwrite"):
        convert(opts(img, msk, tmp_path / "raw"))
    (img / "case02.jpg").write_bytes(b"broken")
    with pytest.raises(ConversionError, match="unreadable"):
        convert(opts(img, msk, tmp_path / "raw", overwrite=True))
    (img / "case02.jpg").write_bytes((img / "case00.jpg").read_bytes())
    # a failure in the middle of the write phase (disk full, decoder error) must roll back as well
    real_write = conversion._write_2d

    def failing_write(pair, *args):
        if pair.case == "case02":
            raise OSError("image file is truncated")
        real_write(pair, *args)

    monkeypatch.setattr(conversion, "_write_2d", failing_write)
    with pytest.raises(ConversionError, match=r"failed on .*case02\.jpg.*truncated"):
        convert(opts(img, msk, tmp_path / "raw", overwrite=True))
    assert _tree_digest(ds) == before
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["Dataset501_Test"]
    monkeypatch.undo()
    convert(opts(img, msk, tmp_path / "raw", overwrite=True, resize=(10, 10)))
    assert Image.open(ds / "imagesTr" / "case00_0000.png").size == (10, 10)


def test_dataset_id_clash_and_missing_out(tmp_path, monkeypatch):
    img, msk = make_folder(tmp_path / "src", n=2)
    (tmp_path / "raw" / "Dataset501_Other").mkdir(parents=True)
    with pytest.raises(ConversionError, match="already used by"):
        convert(opts(img, msk, tmp_path / "raw"))
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(ConversionError, match="nnUNet_raw"):
        convert(ConvertOptions(img, msk, 502, "X", progress=False))
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "envraw"))
    convert(ConvertOptions(img, msk, 502, "X", progress=False))
    assert (tmp_path / "envraw" / "Dataset502_X" / "dataset.json").is_file()


def test_test_list_and_folds(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=8)
    test_list = tmp_path / "test.txt"
    test_list.write_text("# held out\ncase01.jpg\ncase05\n\n")
    report = convert(opts(img, msk, tmp_path / "raw", test_list=test_list, folds=3))
    ds = tmp_path / "raw" / "Dataset501_Test"
    assert report.n_train == 6 and report.n_test == 2
    assert sorted(p.name for p in (ds / "imagesTs").iterdir()) == ["case01_0000.png", "case05_0000.png"]
    assert sorted(p.name for p in (ds / "labelsTs").iterdir()) == ["case01.png", "case05.png"]
    assert json.loads((ds / "dataset.json").read_text())["numTraining"] == 6
    splits = json.loads((ds / "splits_final.json").read_text())
    assert len(splits) == 3
    vals = sorted(c for s in splits for c in s["val"])
    assert vals == sorted(p.name[:-9] for p in (ds / "imagesTr").iterdir())
    assert all(not set(s["train"]) & set(s["val"]) for s in splits)
    assert any("copied into $nnUNet_preprocessed" in s for s in report.next_steps)


def test_nnunet_default_split_is_reproduced(tmp_path):
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    img, msk = make_folder(tmp_path / "src", n=10)
    convert(opts(img, msk, tmp_path / "raw", folds=5))
    splits = json.loads((tmp_path / "raw" / "Dataset501_Test" / "splits_final.json").read_text())
    expected = generate_crossval_split([f"case{i:02d}" for i in range(10)], seed=12345, n_splits=5)
    assert [sorted(s["val"]) for s in splits] == [sorted(s["val"]) for s in expected]


def test_user_splits_are_validated_and_installed(tmp_path, monkeypatch):
    img, msk = make_folder(tmp_path / "src", n=4)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"train": ["case00", "nope"], "val": ["case01"]}]))
    with pytest.raises(ConversionError, match=r"not in the training set.*nope"):
        convert(opts(img, msk, tmp_path / "raw", splits=bad))
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            [
                {"train": ["case00", "case01"], "val": ["case02", "case03"]},
                {"train": ["case02", "case03"], "val": ["case00", "case01"]},
            ]
        )
    )
    pre = tmp_path / "pre" / "Dataset501_Test"
    pre.mkdir(parents=True)
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    report = convert(opts(img, msk, tmp_path / "raw", splits=good))
    assert any("--install-splits" in s for s in report.next_steps) and not (pre / "splits_final.json").exists()
    convert(opts(img, msk, tmp_path / "raw", splits=good, overwrite=True, install_splits=True))
    assert json.loads((pre / "splits_final.json").read_text())[1]["val"] == ["case00", "case01"]


def _write_volumes(root: Path, n: int = 3, label_spacing: tuple[float, ...] = (1.0, 1.0, 2.0)):
    import SimpleITK as sitk

    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        vol = sitk.GetImageFromArray(rng.normal(0, 100, (6, 12, 10)).astype(np.float32))
        lab_arr = np.zeros((6, 12, 10), np.uint8)
        lab_arr[2:4, 3:8, 3:7] = 1 + (i % 2)
        lab = sitk.GetImageFromArray(lab_arr)
        vol.SetSpacing((1.0, 1.0, 2.0))
        lab.SetSpacing(label_spacing if i == n - 1 else (1.0, 1.0, 2.0))
        sitk.WriteImage(vol, str(root / "imagesTr" / f"vol_{i:03d}.nii.gz"))
        sitk.WriteImage(lab, str(root / "labelsTr" / f"vol_{i:03d}.nii.gz"))
    return root / "imagesTr", root / "labelsTr"


def test_nifti_volumes(tmp_path):
    import SimpleITK as sitk

    img, lab = _write_volumes(tmp_path / "msd")
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
    img, lab = _write_volumes(tmp_path / "msd", label_spacing=(1.0, 1.0, 2.5))
    with pytest.raises(ConversionError, match=r"(?s)geometry mismatch.*vol_002\.nii\.gz.*spacing"):
        convert(opts(img, lab, tmp_path / "raw", modality="MRI"))


def test_cli_convert(tmp_path, capsys):
    img, msk = make_folder(tmp_path / "src", n=3)
    parser = argparse.ArgumentParser()
    cli_analysis.add_convert_parser(parser.add_subparsers())
    argv = ["convert", str(img), str(msk), "-d", "7", "-n", "Cli", "--out", str(tmp_path / "raw"), "--folds", "3"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "Dataset007_Cli" in out and "3 training" in out and "0/255 -> 0/1" in out
    assert cli.main(argv) == 2  # a refusal: one message, exit code 2, no traceback
    err = capsys.readouterr().err
    assert err.startswith("m2s-nnunet convert: error:") and "already exists" in err and "Traceback" not in err


def test_nnunet_style_image_names_pair_with_plain_label_names(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=2, img_ext=".png")
    for p in list(img.iterdir()):
        p.rename(img / f"{p.stem}_0000.png")
    convert(opts(img, msk, tmp_path / "raw"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    assert sorted(p.name for p in (ds / "imagesTr").iterdir()) == ["case00_0000.png", "case01_0000.png"]


# ---------------------------------------------------------------------------------------------- bad inputs (issue 10)
def _truncate(path: Path, fraction: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif"])
@pytest.mark.parametrize("which", ["image", "mask"])
def test_truncated_pictures_are_refused_before_anything_is_written(tmp_path, ext, which):
    img, msk = make_folder(tmp_path / "src", img_ext=ext, mask_ext=".png" if ext == ".jpg" else ext)
    bad = (img if which == "image" else msk) / f"case02{ext if which == 'image' or ext != '.jpg' else '.png'}"
    _truncate(bad)
    with pytest.raises(ConversionError, match=rf"(?s)unreadable files.*{bad.name}: corrupt or truncated"):
        convert(opts(img, msk, tmp_path / "raw"))
    assert not (tmp_path / "raw").exists() or not list((tmp_path / "raw").iterdir())


def test_png_with_damaged_data_is_refused_not_copied(tmp_path):
    img, msk = make_folder(tmp_path / "src", img_ext=".png")
    data = bytearray((img / "case01.png").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the pixel data: the header still reads fine
    (img / "case01.png").write_bytes(bytes(data))
    with pytest.raises(ConversionError, match=r"(?s)case01\.png: corrupt or truncated"):
        convert(opts(img, msk, tmp_path / "raw"))


def test_jpeg_named_png_is_written_as_a_real_png(tmp_path):
    img, msk = make_folder(tmp_path / "src", img_ext=".jpg")
    for p in img.iterdir():
        p.rename(p.with_suffix(".png"))  # JPEG bytes behind a .png name
    convert(opts(img, msk, tmp_path / "raw"))
    written = tmp_path / "raw" / "Dataset501_Test" / "imagesTr" / "case00_0000.png"
    assert Image.open(written).format == "PNG"
    assert np.array_equal(np.asarray(Image.open(written)), np.asarray(Image.open(img / "case00.png")))


def test_multipage_tiff_is_refused(tmp_path):
    img, msk = make_folder(tmp_path / "src", img_ext=".tif", mode="L")
    page = Image.open(img / "case01.tif")
    page.save(img / "case01.tif", save_all=True, append_images=[page.copy()])
    with pytest.raises(ConversionError, match=r"(?s)case01\.tif.*2 pages"):
        convert(opts(img, msk, tmp_path / "raw"))


def test_32bit_integer_images_are_never_clipped(tmp_path):
    img, msk = make_folder(tmp_path / "src", img_ext=".tif", mode="L")
    fits = np.arange(H * W, dtype=np.int32).reshape(H, W) * 100  # up to 55900: fits 16 bits
    Image.fromarray(fits).save(img / "case00.tif")
    Image.fromarray(fits * 3).save(img / "case01.tif")  # up to 167700: does not
    with pytest.raises(ConversionError, match=r"(?s)do not fit a 16-bit PNG.*case01\.tif: 32-bit integer pixel"):
        convert(opts(img, msk, tmp_path / "raw"))
    Image.fromarray(fits).save(img / "case01.tif")
    convert(opts(img, msk, tmp_path / "raw"))
    out = np.asarray(Image.open(tmp_path / "raw" / "Dataset501_Test" / "imagesTr" / "case00_0000.png"))
    assert out.dtype == np.uint16 and np.array_equal(out, fits)


def test_16bit_grey_images_are_not_squeezed_into_rgb(tmp_path):
    img, msk = make_folder(tmp_path / "src", img_ext=".png", mode="L")
    Image.fromarray((np.arange(H * W).reshape(H, W) * 90).astype(np.uint16)).save(img / "case01.png")
    with pytest.raises(ConversionError, match=r"(?s)16/32-bit grey images cannot become RGB.*case01\.png"):
        convert(opts(img, msk, tmp_path / "raw", channels="rgb"))


def test_limit_folds_and_splits_values_that_were_silently_accepted(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=4)
    for kw, message in (({"limit": -1}, "--limit -1"), ({"limit": 0}, "--limit 0"), ({"folds": 0}, "--folds 0"),
                        ({"folds": 1}, "--folds 1"), ({"resize": (0, 8)}, "--resize"),
                        ({"geometry_tol": -1.0}, "--geometry-tol")):
        with pytest.raises(ConversionError, match=message):
            convert(opts(img, msk, tmp_path / "raw", **kw))
    cases = ["case00", "case01", "case02", "case03"]
    bad_splits = {
        "the val list is empty": [{"train": cases, "val": []}],
        r"1 training case\(s\) are in no fold \(in neither train nor val of any fold\): case03":
            [{"train": cases[:2], "val": cases[2:3]}],
        "the train list is empty": [{"train": [], "val": cases}],
        "expected": [{"train": "case00", "val": cases[1:]}],  # a string would be iterated letter by letter
        "names a case twice": [{"train": cases[:2] + ["case00"], "val": cases[2:]}],
        "holds no fold": [],
    }
    for message, content in bad_splits.items():
        path = tmp_path / "splits.json"
        path.write_text(json.dumps(content))
        with pytest.raises(ConversionError, match=message):
            convert(opts(img, msk, tmp_path / "raw", splits=path))
    (tmp_path / "splits.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00garbage")
    with pytest.raises(ConversionError, match=r"splits\.json.*not UTF-8"):
        convert(opts(img, msk, tmp_path / "raw", splits=tmp_path / "splits.json"))
    assert not (tmp_path / "raw").exists() or not list((tmp_path / "raw").iterdir())


def test_binary_test_list_is_named(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=3)
    test_list = tmp_path / "test.txt"
    test_list.write_bytes(bytes(range(256)))
    with pytest.raises(ConversionError, match=r"test\.txt.*not UTF-8"):
        convert(opts(img, msk, tmp_path / "raw", test_list=test_list))


def test_one_stray_label_value_names_its_mask_only(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=30)
    stray = _mask(29)
    stray[0, 0] = 7
    Image.fromarray(stray).save(msk / "case29.png")
    with pytest.raises(ConversionError) as err:
        convert(opts(img, msk, tmp_path / "raw"))
    message = str(err.value)
    assert "1 mask(s)" in message and "case29.png: [7]" in message and "most masks are 0/255" in message
    assert "case00.png" not in message


def test_overwrite_never_deletes_files_it_did_not_write(tmp_path):
    img, msk = make_folder(tmp_path / "src")
    convert(opts(img, msk, tmp_path / "raw"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    (ds / "my_notes.txt").write_text("weeks of work")
    (ds / "labelsTr" / "case00_corrected.png").write_bytes((ds / "labelsTr" / "case00.png").read_bytes())
    before = _tree_digest(ds)
    with pytest.raises(ConversionError, match=r"(?s)would delete 2 file.*case00_corrected\.png.*my_notes\.txt"):
        convert(opts(img, msk, tmp_path / "raw", overwrite=True))
    assert _tree_digest(ds) == before
    (ds / "my_notes.txt").unlink()
    (ds / "labelsTr" / "case00_corrected.png").unlink()
    convert(opts(img, msk, tmp_path / "raw", overwrite=True, resize=(10, 10)))
    assert Image.open(ds / "imagesTr" / "case00_0000.png").size == (10, 10)


def test_folder_mixing_nifti_and_pictures_is_refused(tmp_path):
    img, lab = _write_volumes(tmp_path / "msd")
    extra_img, extra_msk = make_folder(tmp_path / "src", n=2, img_ext=".png")
    for p in extra_img.iterdir():
        p.rename(img / p.name)
    with pytest.raises(ConversionError, match=r"(?s)holds both NIfTI volumes.*and 2D pictures.*case00\.png"):
        convert(opts(img, lab, tmp_path / "raw", modality="CT"))


def test_broken_symlink_is_named_and_links_are_followed(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=3)
    elsewhere = tmp_path / "elsewhere.jpg"
    (img / "case01.jpg").rename(elsewhere)
    (img / "case01.jpg").symlink_to(elsewhere)
    convert(opts(img, msk, tmp_path / "raw"))
    assert elsewhere.is_file() and (tmp_path / "raw" / "Dataset501_Test" / "imagesTr" / "case01_0000.png").is_file()
    (img / "case02.jpg").unlink()
    (img / "case02.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(ConversionError, match=r"broken symbolic link.*case02\.jpg"):
        convert(opts(img, msk, tmp_path / "raw2"))


def test_unwritable_output_is_refused_before_any_work(tmp_path, readonly_dir, monkeypatch):
    img, msk = make_folder(tmp_path / "src")
    scanned = []
    monkeypatch.setattr(conversion, "_scan_2d", lambda *a: scanned.append(1))
    with pytest.raises(ConversionError, match=rf"(?s){readonly_dir}.*not writable"):
        convert(opts(img, msk, readonly_dir / "raw"))
    assert not scanned


def _nifti_set(root: Path, n: int = 3) -> tuple[Path, Path]:
    return _write_volumes(root, n=n, label_spacing=(1.0, 1.0, 2.0))


def test_truncated_nifti_is_refused(tmp_path):
    img, lab = _nifti_set(tmp_path / "msd")
    _truncate(img / "vol_001.nii.gz", 0.7)
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

    img, lab = _write_volumes(tmp_path / "msd", label_spacing=(1.0, 1.0, 2.0005))  # within --geometry-tol 1e-3
    report = convert(opts(img, lab, tmp_path / "raw", modality="CT"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    image, label = (sitk.ReadImage(str(ds / d / f)) for d, f in (("imagesTr", "vol_002_0000.nii.gz"),
                                                                   ("labelsTr", "vol_002.nii.gz")))
    assert label.GetSpacing() == image.GetSpacing()
    assert any("written with the image's geometry: vol_002.nii.gz" in w for w in report.warnings)
    assert check_cases([str(ds / "imagesTr" / "vol_002_0000.nii.gz")], str(ds / "labelsTr" / "vol_002.nii.gz"), 1,
                       SimpleITKIO)


def test_reconverting_after_preprocessing_refuses_clashing_splits_up_front(tmp_path, monkeypatch):
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import _maybe_copy_splits_file

    img, msk = make_folder(tmp_path / "src", n=6)
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    convert(opts(img, msk, tmp_path / "raw", folds=2))
    ds = tmp_path / "raw" / "Dataset501_Test"
    pre = tmp_path / "pre" / "Dataset501_Test"
    pre.mkdir(parents=True)
    _maybe_copy_splits_file(str(ds / "splits_final.json"), str(pre / "splits_final.json"))  # what planning did
    before = _tree_digest(ds)
    with pytest.raises(ConversionError, match=r"(?s)pre/Dataset501_Test/splits_final\.json.*--install-splits"):
        convert(opts(img, msk, tmp_path / "raw", folds=3, overwrite=True))
    assert _tree_digest(ds) == before
    report = convert(opts(img, msk, tmp_path / "raw", folds=3, overwrite=True, install_splits=True))
    assert report.next_steps[0].startswith("installed")
    _maybe_copy_splits_file(str(ds / "splits_final.json"), str(pre / "splits_final.json"))  # no AssertionError now
    assert len(json.loads((pre / "splits_final.json").read_text())) == 3


def test_stale_partial_folders_of_killed_runs_are_cleaned_and_reported(tmp_path):
    import subprocess
    import sys

    img, msk = make_folder(tmp_path / "src")
    convert(opts(img, msk, tmp_path / "raw"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    before = _tree_digest(ds)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    partial = tmp_path / "raw" / f".Dataset501_Test.partial-{pid}"
    (partial / "imagesTr").mkdir(parents=True)
    report = convert(opts(img, msk, tmp_path / "raw", overwrite=True))
    assert not partial.exists() and any("interrupted" in w and str(pid) in w for w in report.warnings)
    # killed between the two renames: the old dataset sits aside and no dataset is visible -> put back
    ds.rename(tmp_path / "raw" / f".Dataset501_Test.old-{pid}")
    report = convert(opts(img, msk, tmp_path / "raw", overwrite=True))
    assert any(f"restored {ds}" in w for w in report.warnings)
    assert _tree_digest(ds) == before
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["Dataset501_Test"]


# ---------------------------------------------------------------------------------------------- review of issue 10
def test_custom_splits_may_leave_cases_out_of_a_fold(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=5)
    cases = [f"case{i:02d}" for i in range(5)]
    path = tmp_path / "splits.json"
    folds = [{"train": cases[:2], "val": cases[2:3]},  # case03 and case04 held back in this fold
             {"train": cases[2:4], "val": cases[4:]}]
    path.write_text(json.dumps(folds))
    convert(opts(img, msk, tmp_path / "raw", splits=path))
    assert json.loads((tmp_path / "raw" / "Dataset501_Test" / "splits_final.json").read_text()) == folds
    path.write_text(json.dumps([{"train": cases[:2], "val": cases[2:3]}, {"train": cases[1:3], "val": ["case00"]}]))
    with pytest.raises(ConversionError, match=r"2 training case\(s\) are in no fold .*: case03, case04"):
        convert(opts(img, msk, tmp_path / "raw", splits=path, overwrite=True))


def test_duplicate_check_of_splits_is_linear(tmp_path):
    """Counted in name comparisons, not seconds: one count() per name made it quadratic (4 million here)."""
    from m2s_nnunet.splits import load_user_splits

    class Name(str):
        comparisons = 0

        def __eq__(self, other):
            Name.comparisons += 1
            return str.__eq__(self, other)

        __hash__ = str.__hash__

    cases = [f"c{i:05d}" for i in range(2000)]
    path = tmp_path / "splits.json"
    path.write_text(json.dumps([{"train": cases[:1500] + ["c00007"], "val": cases[1500:]}]))
    with pytest.raises(conversion.UserError, match=r"train names a case twice: c00007"):
        load_user_splits(path, cases, Name)
    assert Name.comparisons < 20 * len(cases)


def test_mpo_jpeg_images_are_converted_from_their_first_frame(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=3)
    photo = np.asarray(Image.open(img / "case01.jpg"))
    Image.fromarray(photo).save(img / "case01.jpg", format="MPO", save_all=True,
                                append_images=[Image.fromarray(255 - photo)])
    Image.fromarray(photo).save(tmp_path / "frame0.jpg", format="JPEG")  # the same encoder, one frame
    convert(opts(img, msk, tmp_path / "raw"))
    out = np.asarray(Image.open(tmp_path / "raw" / "Dataset501_Test" / "imagesTr" / "case01_0000.png"))
    assert np.array_equal(out, np.asarray(Image.open(tmp_path / "frame0.jpg")))


def test_alpha_masks_are_accepted_when_unambiguous_and_drop_alpha_extends_to_masks(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=3, img_ext=".png")
    for i in range(3):  # masks exported with a transparent background
        m = _mask(i)
        Image.fromarray(np.dstack([m, m, m, m]), "RGBA").save(msk / f"case{i:02d}.png")
    report = convert(opts(img, msk, tmp_path / "raw"))
    assert any("3 mask(s) with an alpha channel were read from their colour channels" in w for w in report.warnings)
    labels = tmp_path / "raw" / "Dataset501_Test" / "labelsTr"
    assert np.array_equal(np.asarray(Image.open(labels / "case01.png")), (_mask(1) > 0).astype(np.uint8))
    white = np.full((H, W), 255, np.uint8)  # white everywhere, the mask in alpha only: ambiguous
    Image.fromarray(np.dstack([white, white, white, _mask(2)]), "RGBA").save(msk / "case02.png")
    with pytest.raises(ConversionError, match=r"(?s)masks with an alpha channel.*--drop-alpha.*case02\.png"):
        convert(opts(img, msk, tmp_path / "raw", overwrite=True))
    report = convert(opts(img, msk, tmp_path / "raw", overwrite=True, drop_alpha=True))
    assert any("--drop-alpha" in w for w in report.warnings)
    assert (np.asarray(Image.open(labels / "case02.png")) == 1).all()  # the colour channels, as asked


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


def test_symlinked_dataset_folder_is_never_replaced(tmp_path):
    img, msk = make_folder(tmp_path / "src")
    other_disk = tmp_path / "other_disk"
    convert(opts(img, msk, other_disk))
    target = other_disk / "Dataset501_Test"
    before = _tree_digest(target)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "Dataset501_Test").symlink_to(target)
    for overwrite in (True, False):
        with pytest.raises(ConversionError, match=rf"(?s)symbolic link to {target}.*--out {other_disk}"):
            convert(opts(img, msk, raw, overwrite=overwrite))
    assert _tree_digest(target) == before and (raw / "Dataset501_Test").is_symlink()
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset501_Test"]
    convert(opts(img, msk, other_disk, overwrite=True, resize=(10, 10)))  # the suggested fix
    assert Image.open(raw / "Dataset501_Test" / "imagesTr" / "case00_0000.png").size == (10, 10)


def test_recovery_never_crashes_on_a_symlink_left_behind(tmp_path):
    img, msk = make_folder(tmp_path / "src")
    other_disk = tmp_path / "other_disk"
    convert(opts(img, msk, other_disk))
    target = other_disk / "Dataset501_Test"
    before = _tree_digest(target)
    raw = tmp_path / "raw"
    convert(opts(img, msk, raw))
    pid = _dead_pid()
    (raw / f".Dataset501_Test.old-{pid}").symlink_to(target)  # what the crash of the old code left behind
    report = convert(opts(img, msk, raw, overwrite=True))
    assert any(f"removed {raw}/.Dataset501_Test.old-{pid} (a symbolic link" in w for w in report.warnings)
    assert _tree_digest(target) == before  # only the link was removed
    # killed between the two renames while replacing a linked folder: the link is put back
    (raw / "Dataset501_Test").rename(raw / "elsewhere")
    (raw / f".Dataset501_Test.old-{pid}").symlink_to(target)
    with pytest.raises(ConversionError, match=rf"(?s)symbolic link to {target}.*restored {raw}/Dataset501_Test"):
        convert(opts(img, msk, raw, overwrite=True))
    assert (raw / "Dataset501_Test").is_symlink() and _tree_digest(raw / "Dataset501_Test") == before


def _dead_pid() -> int:
    import subprocess
    import sys

    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def test_leftovers_of_other_hosts_are_reported_and_left_alone(tmp_path):
    from m2s_nnunet.staging import host_tag, staging_dir

    img, msk = make_folder(tmp_path / "src")
    raw = tmp_path / "raw"
    convert(opts(img, msk, raw))
    assert staging_dir(raw / "Dataset501_Test").name.startswith(f".Dataset501_Test.partial-{host_tag()}-")
    pid = _dead_pid()  # dead here, but on another host a live run may have that id
    theirs = raw / f".Dataset501_Test.partial-otherhost.cluster-{pid}"
    (theirs / "imagesTr").mkdir(parents=True)
    mine = raw / f".Dataset501_Test.partial-{host_tag()}-{pid}"
    (mine / "imagesTr").mkdir(parents=True)
    report = convert(opts(img, msk, raw, overwrite=True))
    assert theirs.is_dir() and not mine.exists()
    assert any(f"left {theirs} alone: it belongs to run {pid} on host otherhost.cluster" in w
               for w in report.warnings)
    assert any(f"removed {mine}" in w for w in report.warnings)


def test_recovery_notes_are_part_of_a_refusal(tmp_path):
    img, msk = make_folder(tmp_path / "src")
    raw = tmp_path / "raw"
    convert(opts(img, msk, raw))
    ds = raw / "Dataset501_Test"
    pid = _dead_pid()
    ds.rename(raw / f".Dataset501_Test.old-{pid}")  # killed between the two renames
    (img / "case02.jpg").write_bytes(b"broken")
    with pytest.raises(ConversionError) as err:
        convert(opts(img, msk, raw, overwrite=True))
    message = str(err.value)
    assert "unreadable" in message and "nothing was written" in message
    assert f"before this refusal, leftovers of interrupted runs in {raw} were handled:\n  restored {ds}" in message
    assert ds.is_dir()
    assert cli.main(["convert", str(img), str(msk), "-d", "501", "-n", "Test", "--out", str(raw)]) == 2
