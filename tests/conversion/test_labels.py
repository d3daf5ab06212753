"""``m2s_nnunet.conversion.labels``: raw mask values mapped to consecutive labels, stray values named."""

from __future__ import annotations

import json

import pytest
from fake_inputs import label_values, make_folder, mask_array, opts
from PIL import Image

from m2s_nnunet.conversion import ConversionError, convert


def test_consecutive_multiclass_labels_are_kept(tmp_path):
    img, msk = make_folder(tmp_path / "src", values=(1, 2))
    convert(opts(img, msk, tmp_path / "raw"))
    dj = json.loads((tmp_path / "raw" / "Dataset501_Test" / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "class_1": 1, "class_2": 2}


def test_label_values_need_labels_option(tmp_path):
    img, msk = make_folder(tmp_path / "src", values=(128, 255))
    with pytest.raises(ConversionError, match=r"(?s)unexpected label values.*case00.png.*--mask-values"):
        convert(opts(img, msk, tmp_path / "raw"))
    assert not (tmp_path / "raw" / "Dataset501_Test").exists()
    convert(opts(img, msk, tmp_path / "raw", labels=["ggo=128", "consolidation=255"]))
    ds = tmp_path / "raw" / "Dataset501_Test"
    assert json.loads((ds / "dataset.json").read_text())["labels"] == {"background": 0, "ggo": 1, "consolidation": 2}
    assert label_values(ds / "labelsTr" / "case00.png") == {0, 1, 2}
    with pytest.raises(ConversionError, match="--mask-values allows only"):
        convert(opts(img, msk, tmp_path / "raw2", labels=["ggo=128"]))


def test_jpeg_masks_are_thresholded_with_warning(tmp_path):
    img, msk = make_folder(tmp_path / "src", mask_ext=".jpg")
    report = convert(opts(img, msk, tmp_path / "raw"))
    assert any("JPEG mask" in w for w in report.warnings)
    assert label_values(tmp_path / "raw" / "Dataset501_Test" / "labelsTr" / "case00.png") == {0, 1}


def test_one_stray_label_value_names_its_mask_only(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=30)
    stray = mask_array(29)
    stray[0, 0] = 7
    Image.fromarray(stray).save(msk / "case29.png")
    with pytest.raises(ConversionError) as err:
        convert(opts(img, msk, tmp_path / "raw"))
    message = str(err.value)
    assert "1 mask(s)" in message and "case29.png: [7]" in message and "most masks are 0/255" in message
    assert "case00.png" not in message

