"""Checkpoint files that survive a kill while they are written.

nnU-Net writes ``checkpoint_latest.pth`` in place with ``torch.save``. A job killed during that write (``scancel``,
a preemption, the out-of-memory killer) leaves a truncated file, and ``nnUNetv2_train --c`` then fails on it
instead of resuming. Our trainers write each checkpoint under a hidden temporary name and rename it over the old
one, so the previous checkpoint stays readable until the new one is complete. Files truncated by other trainers
(nnU-Net's own) are recognised here, so that the study can set them aside and the loaders can say what happened.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

from m2s_nnunet.errors import UserError

_ZIP_START = b"PK\x03\x04"  # torch.save's archive format (the default since torch 1.6)


class CheckpointError(UserError):
    """A checkpoint file that cannot be read as a whole."""


def is_incomplete(path: str | os.PathLike) -> bool:
    """True for a checkpoint ``torch.save`` did not finish: empty, or an archive without its closing directory.

    A file in torch's older, non-archive format is never called incomplete: only torch can judge it.
    """
    with open(path, "rb") as handle:
        start = handle.read(len(_ZIP_START))
    if not start:
        return True
    return start == _ZIP_START and not zipfile.is_zipfile(path)


def refuse_incomplete(path: str | os.PathLike) -> None:
    """Raise a CheckpointError that says how to go on when ``path`` was cut off while it was written."""
    if is_incomplete(path):
        path = Path(path)
        raise CheckpointError(
            "this checkpoint is incomplete: the run that wrote it was stopped while saving it (a scancel, a "
            "preemption or the out-of-memory killer)",
            path=path,
            fix=f"move it aside (mv {path.name} {path.name}.incomplete) and rerun: `nnUNetv2_train ... --c` then "
                "continues from the next checkpoint nnU-Net finds (checkpoint_latest.pth, then checkpoint_best.pth)"
                ", or starts the fold anew when there is none")


def set_aside(path: Path) -> Path:
    """Rename an incomplete checkpoint to ``<name>.incomplete`` (``.incomplete-2``, ... if taken); never delete it."""
    target, n = path.with_name(path.name + ".incomplete"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.incomplete-{n}")
    os.replace(path, target)
    return target


def partial_name(filename: str | os.PathLike) -> Path:
    """Where ``save_then_rename`` writes ``filename`` before it is complete."""
    final = Path(filename)
    return final.with_name(f".{final.name}.partial")


def remove_partial_files(folder: str | os.PathLike) -> list[Path]:
    """Delete what a killed ``save_then_rename`` left in ``folder``: never a usable checkpoint."""
    stale = sorted(Path(folder).glob(partial_name("checkpoint_*.pth").name))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_then_rename(save: Callable[[str], None], filename: str | os.PathLike) -> None:
    """Call ``save`` on a hidden file next to ``filename``, then rename it over ``filename`` in one step.

    ``save`` may write nothing (nnU-Net skips checkpoints on DDP ranks other than 0, or when checkpointing is
    disabled): then ``filename`` is left as it is.
    """
    final, partial = Path(filename), partial_name(filename)
    try:
        save(str(partial))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if partial.is_file():
        os.replace(partial, final)
