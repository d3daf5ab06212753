"""``m2s_nnunet.conversion.driver``: ``convert`` end to end: the output folder first, leftovers of killed runs."""

from __future__ import annotations

import pytest
from fake_inputs import make_folder, opts, tree_digest

from m2s_nnunet import cli
from m2s_nnunet.conversion import ConversionError, convert, images2d


def _dead_pid() -> int:
    import subprocess
    import sys

    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def test_unwritable_output_is_refused_before_any_work(tmp_path, readonly_dir, monkeypatch):
    img, msk = make_folder(tmp_path / "src")
    scanned = []
    monkeypatch.setattr(images2d, "scan_pictures", lambda *a: scanned.append(1))
    with pytest.raises(ConversionError, match=rf"(?s){readonly_dir}.*not writable"):
        convert(opts(img, msk, readonly_dir / "raw"))
    assert not scanned


def test_stale_partial_folders_of_killed_runs_are_cleaned_and_reported(tmp_path):
    import subprocess
    import sys

    img, msk = make_folder(tmp_path / "src")
    convert(opts(img, msk, tmp_path / "raw"))
    ds = tmp_path / "raw" / "Dataset501_Test"
    before = tree_digest(ds)
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
    assert tree_digest(ds) == before
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["Dataset501_Test"]


def test_recovery_never_crashes_on_a_symlink_left_behind(tmp_path):
    img, msk = make_folder(tmp_path / "src")
    other_disk = tmp_path / "other_disk"
    convert(opts(img, msk, other_disk))
    target = other_disk / "Dataset501_Test"
    before = tree_digest(target)
    raw = tmp_path / "raw"
    convert(opts(img, msk, raw))
    pid = _dead_pid()
    (raw / f".Dataset501_Test.old-{pid}").symlink_to(target)  # what the crash of the old code left behind
    report = convert(opts(img, msk, raw, overwrite=True))
    assert any(f"removed {raw}/.Dataset501_Test.old-{pid} (a symbolic link" in w for w in report.warnings)
    assert tree_digest(target) == before  # only the link was removed
    # killed between the two renames while replacing a linked folder: the link is put back
    (raw / "Dataset501_Test").rename(raw / "elsewhere")
    (raw / f".Dataset501_Test.old-{pid}").symlink_to(target)
    with pytest.raises(ConversionError, match=rf"(?s)symbolic link to {target}.*restored {raw}/Dataset501_Test"):
        convert(opts(img, msk, raw, overwrite=True))
    assert (raw / "Dataset501_Test").is_symlink() and tree_digest(raw / "Dataset501_Test") == before


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

