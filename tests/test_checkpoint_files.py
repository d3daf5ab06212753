"""Checkpoints cut off while they are written: recognised, set aside (never deleted), and never left by our
own writes, which go to a hidden file first and are renamed over the old checkpoint."""

from __future__ import annotations

import pytest
import torch

from m2s_nnunet.checkpoint_files import (
    CheckpointError,
    is_incomplete,
    partial_name,
    refuse_incomplete,
    remove_partial_files,
    save_then_rename,
    set_aside,
)


def _checkpoint(path, epoch: int) -> None:
    torch.save({"current_epoch": epoch, "network_weights": {"w": torch.arange(4096.0)}}, path)


def test_a_cut_off_or_empty_archive_is_incomplete_and_an_old_format_file_is_left_to_torch(tmp_path):
    whole = tmp_path / "whole.pth"
    _checkpoint(whole, 3)
    assert not is_incomplete(whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert is_incomplete(cut)
    (tmp_path / "empty.pth").write_bytes(b"")
    assert is_incomplete(tmp_path / "empty.pth")
    legacy = tmp_path / "legacy.pth"
    torch.save({"current_epoch": 1}, legacy, _use_new_zipfile_serialization=False)
    assert not is_incomplete(legacy)
    with pytest.raises(CheckpointError, match=r"cut\.pth: this checkpoint is incomplete.*\n  fix: move it aside"):
        refuse_incomplete(cut)
    refuse_incomplete(whole)


def test_set_aside_renames_and_never_overwrites(tmp_path):
    for n in range(3):
        (tmp_path / "checkpoint_latest.pth").write_bytes(bytes([n]))
        set_aside(tmp_path / "checkpoint_latest.pth")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_latest.pth.incomplete", "checkpoint_latest.pth.incomplete-2", "checkpoint_latest.pth.incomplete-3"]
    assert (tmp_path / "checkpoint_latest.pth.incomplete-3").read_bytes() == bytes([2])


def test_a_save_stopped_halfway_leaves_the_previous_checkpoint_whole(tmp_path):
    target = tmp_path / "checkpoint_latest.pth"
    save_then_rename(lambda name: _checkpoint(name, 3), target)
    assert torch.load(target)["current_epoch"] == 3

    def stopped_halfway(name: str) -> None:
        _checkpoint(name, 4)
        with open(name, "r+b") as handle:
            handle.truncate(1000)
        raise KeyboardInterrupt  # what a signal does to the writing process, as far as Python sees it

    with pytest.raises(KeyboardInterrupt):
        save_then_rename(stopped_halfway, target)
    assert torch.load(target)["current_epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_latest.pth"]  # the partial file is gone
    save_then_rename(lambda name: None, target)  # nothing written (another DDP rank): the file stays
    assert torch.load(target)["current_epoch"] == 3


def test_what_a_killed_save_left_is_removed_and_nothing_else(tmp_path):
    """SIGKILL leaves the hidden partial file (no Python runs); the trainer removes it at the next start."""
    partial = partial_name(tmp_path / "checkpoint_best.pth")
    assert partial.name == ".checkpoint_best.pth.partial"
    partial.write_bytes(b"PK\x03\x04")
    for name in ("checkpoint_best.pth", "checkpoint_latest.pth.incomplete", "notes.partial"):
        (tmp_path / name).write_bytes(b"x")
    assert remove_partial_files(tmp_path) == [partial]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_best.pth", "checkpoint_latest.pth.incomplete", "notes.partial"]
