"""``m2s_nnunet.conversion.pairing``: images matched with masks by stem, naming mistakes and mixed kinds refused."""

from __future__ import annotations

import pytest
from fake_inputs import make_folder, opts, write_volumes

from m2s_nnunet.conversion import ConversionError, convert


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


def test_nnunet_style_image_names_pair_with_plain_label_names(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=2, img_ext=".png")
    for p in list(img.iterdir()):
        p.rename(img / f"{p.stem}_0000.png")
    convert(opts(img, msk, tmp_path / "raw"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    assert sorted(p.name for p in (ds / "imagesTr").iterdir()) == ["case00_0000.png", "case01_0000.png"]


def test_folder_mixing_nifti_and_pictures_is_refused(tmp_path):
    img, lab = write_volumes(tmp_path / "msd")
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

