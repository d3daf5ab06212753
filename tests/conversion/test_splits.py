"""``m2s_nnunet.conversion.splits``: --test-list, --folds and --splits, and nnU-Net's preprocessed splits file."""

from __future__ import annotations

import json

import pytest
from fake_inputs import make_folder, opts, tree_digest

from m2s_nnunet import conversion
from m2s_nnunet.conversion import ConversionError, convert


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


def test_binary_test_list_is_named(tmp_path):
    img, msk = make_folder(tmp_path / "src", n=3)
    test_list = tmp_path / "test.txt"
    test_list.write_bytes(bytes(range(256)))
    with pytest.raises(ConversionError, match=r"test\.txt.*not UTF-8"):
        convert(opts(img, msk, tmp_path / "raw", test_list=test_list))


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


def test_reconverting_after_preprocessing_refuses_clashing_splits_up_front(tmp_path, monkeypatch):
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import _maybe_copy_splits_file

    img, msk = make_folder(tmp_path / "src", n=6)
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    convert(opts(img, msk, tmp_path / "raw", folds=2))
    ds = tmp_path / "raw" / "Dataset501_Test"
    pre = tmp_path / "pre" / "Dataset501_Test"
    pre.mkdir(parents=True)
    _maybe_copy_splits_file(str(ds / "splits_final.json"), str(pre / "splits_final.json"))  # what planning did
    before = tree_digest(ds)
    with pytest.raises(ConversionError, match=r"(?s)pre/Dataset501_Test/splits_final\.json.*--install-splits"):
        convert(opts(img, msk, tmp_path / "raw", folds=3, overwrite=True))
    assert tree_digest(ds) == before
    report = convert(opts(img, msk, tmp_path / "raw", folds=3, overwrite=True, install_splits=True))
    assert report.next_steps[0].startswith("installed")
    _maybe_copy_splits_file(str(ds / "splits_final.json"), str(pre / "splits_final.json"))  # no AssertionError now
    assert len(json.loads((pre / "splits_final.json").read_text())) == 3

