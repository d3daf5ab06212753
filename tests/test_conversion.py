"""Dataset conversion on small generated folders: every input format, every refusal, atomic writes, splits."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m2s_nnunet import cli_analysis, conversion
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
    args = parser.parse_args(argv)
    assert args.func(args) == 1
    assert "already exists" in capsys.readouterr().err


def test_nnunet_style_image_names_pair_with_plain_label_names(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=2, img_ext=".png")
    for p in list(img.iterdir()):
        p.rename(img / f"{p.stem}_0000.png")
    convert(opts(img, msk, tmp_path / "raw"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    assert sorted(p.name for p in (ds / "imagesTr").iterdir()) == ["case00_0000.png", "case01_0000.png"]
