"""``m2s_nnunet.conversion.options``: option values that would be accepted silently are refused before any work."""

from __future__ import annotations

import json

import pytest
from fake_inputs import make_folder, opts

from m2s_nnunet.conversion import ConversionError, convert


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

