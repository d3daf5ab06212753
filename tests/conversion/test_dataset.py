"""``m2s_nnunet.conversion.dataset``: where the dataset goes, and that refused or failed runs never touch it."""

from __future__ import annotations

import pytest
from fake_inputs import make_folder, opts, tree_digest
from PIL import Image

from m2s_nnunet.conversion import ConversionError, ConvertOptions, convert, images2d


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


def test_existing_dataset_is_never_touched_by_refused_runs(tmp_path, monkeypatch):
    img, msk = make_folder(tmp_path / "src")
    convert(opts(img, msk, tmp_path / "raw"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    before = tree_digest(ds)
    with pytest.raises(ConversionError, match="already exists.*--overwrite"):
        convert(opts(img, msk, tmp_path / "raw"))
    (img / "case02.jpg").write_bytes(b"broken")
    with pytest.raises(ConversionError, match="unreadable"):
        convert(opts(img, msk, tmp_path / "raw", overwrite=True))
    (img / "case02.jpg").write_bytes((img / "case00.jpg").read_bytes())
    # a failure in the middle of the write phase (disk full, decoder error) must roll back as well
    real_write = images2d.write_picture

    def failing_write(pair, *args):
        if pair.case == "case02":
            raise OSError("image file is truncated")
        real_write(pair, *args)

    monkeypatch.setattr(images2d, "write_picture", failing_write)
    with pytest.raises(ConversionError, match=r"failed on .*case02\.jpg.*truncated"):
        convert(opts(img, msk, tmp_path / "raw", overwrite=True))
    assert tree_digest(ds) == before
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["Dataset501_Test"]
    monkeypatch.undo()
    convert(opts(img, msk, tmp_path / "raw", overwrite=True, resize=(10, 10)))
    assert Image.open(ds / "imagesTr" / "case00_0000.png").size == (10, 10)


def test_overwrite_never_deletes_files_it_did_not_write(tmp_path):
    img, msk = make_folder(tmp_path / "src")
    convert(opts(img, msk, tmp_path / "raw"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    (ds / "my_notes.txt").write_text("weeks of work")
    (ds / "labelsTr" / "case00_corrected.png").write_bytes((ds / "labelsTr" / "case00.png").read_bytes())
    before = tree_digest(ds)
    with pytest.raises(ConversionError, match=r"(?s)would delete 2 file.*case00_corrected\.png.*my_notes\.txt"):
        convert(opts(img, msk, tmp_path / "raw", overwrite=True))
    assert tree_digest(ds) == before
    (ds / "my_notes.txt").unlink()
    (ds / "labelsTr" / "case00_corrected.png").unlink()
    convert(opts(img, msk, tmp_path / "raw", overwrite=True, resize=(10, 10)))
    assert Image.open(ds / "imagesTr" / "case00_0000.png").size == (10, 10)


def test_symlinked_dataset_folder_is_never_replaced(tmp_path):
    img, msk = make_folder(tmp_path / "src")
    other_disk = tmp_path / "other_disk"
    convert(opts(img, msk, other_disk))
    target = other_disk / "Dataset501_Test"
    before = tree_digest(target)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "Dataset501_Test").symlink_to(target)
    for overwrite in (True, False):
        with pytest.raises(ConversionError, match=rf"(?s)symbolic link to {target}.*--out {other_disk}"):
            convert(opts(img, msk, raw, overwrite=overwrite))
    assert tree_digest(target) == before and (raw / "Dataset501_Test").is_symlink()
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset501_Test"]
    convert(opts(img, msk, other_disk, overwrite=True, resize=(10, 10)))  # the suggested fix
    assert Image.open(raw / "Dataset501_Test" / "imagesTr" / "case00_0000.png").size == (10, 10)

