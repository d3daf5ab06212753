"""``m2s_nnunet.conversion.kind``: one input kind per conversion, naming its dataset format."""

from __future__ import annotations

import json

from fake_inputs import make_folder, opts

from m2s_nnunet.conversion import convert


def test_each_input_kind_is_chosen_once_and_names_its_dataset_format(tmp_path):
    from m2s_nnunet.conversion import KINDS

    assert {k: (v.file_ending, v.reader_writer) for k, v in KINDS.items()} == {
        "2d": (".png", "NaturalImage2DIO"), "3d": (".nii.gz", "SimpleITKIO")}
    img, msk = make_folder(tmp_path / "src", n=2)
    convert(opts(img, msk, tmp_path / "raw"))
    dj = json.loads((tmp_path / "raw" / "Dataset501_Test" / "dataset.json").read_text())
    assert dj["overwrite_image_reader_writer"] == "NaturalImage2DIO" and dj["converted_by"] == "m2s-nnunet convert"

