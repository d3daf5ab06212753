"""``m2s_nnunet.conversion.images2d``: 2D pictures in every format, their refusals, and the PNGs nnU-Net reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fake_inputs import H, W, label_values, make_folder, mask_array, opts, truncate
from PIL import Image

from m2s_nnunet.conversion import ConversionError, convert


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
    assert label_values(ds / "labelsTr" / "case00.png") == {0, 1}
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
    assert label_values(ds / "labelsTr" / "case01.png") == {0, 1}


def test_resize_images_bilinear_masks_nearest(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=2)
    convert(opts(img, msk, tmp_path / "raw", resize=(32, 48)))
    ds = tmp_path / "raw" / "Dataset501_Test"
    assert Image.open(ds / "imagesTr" / "case00_0000.png").size == (48, 32)
    lab = Image.open(ds / "labelsTr" / "case00.png")
    assert lab.size == (48, 32) and label_values(ds / "labelsTr" / "case00.png") == {0, 1}


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


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif"])
@pytest.mark.parametrize("which", ["image", "mask"])
def test_truncated_pictures_are_refused_before_anything_is_written(tmp_path, ext, which):
    img, msk = make_folder(tmp_path / "src", img_ext=ext, mask_ext=".png" if ext == ".jpg" else ext)
    bad = (img if which == "image" else msk) / f"case02{ext if which == 'image' or ext != '.jpg' else '.png'}"
    truncate(bad)
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
        m = mask_array(i)
        Image.fromarray(np.dstack([m, m, m, m]), "RGBA").save(msk / f"case{i:02d}.png")
    report = convert(opts(img, msk, tmp_path / "raw"))
    assert any("3 mask(s) with an alpha channel were read from their colour channels" in w for w in report.warnings)
    labels = tmp_path / "raw" / "Dataset501_Test" / "labelsTr"
    assert np.array_equal(np.asarray(Image.open(labels / "case01.png")), (mask_array(1) > 0).astype(np.uint8))
    white = np.full((H, W), 255, np.uint8)  # white everywhere, the mask in alpha only: ambiguous
    Image.fromarray(np.dstack([white, white, white, mask_array(2)]), "RGBA").save(msk / "case02.png")
    with pytest.raises(ConversionError, match=r"(?s)masks with an alpha channel.*--drop-alpha.*case02\.png"):
        convert(opts(img, msk, tmp_path / "raw", overwrite=True))
    report = convert(opts(img, msk, tmp_path / "raw", overwrite=True, drop_alpha=True))
    assert any("--drop-alpha" in w for w in report.warnings)
    assert (np.asarray(Image.open(labels / "case02.png")) == 1).all()  # the colour channels, as asked

