"""Build a folder next to its final place and swap it in at the end, so that readers never see half a folder.

``convert`` writes ``.<name>.partial-<pid>`` (hidden: nnU-Net only looks at ``DatasetXXX_*``), then renames the
old folder to ``.<name>.old-<pid>``, the new one into place, and deletes the old one. A run killed with
SIGKILL can leave either hidden folder behind; :func:`recover_leftovers` cleans them up on the next run (and
puts the previous folder back if the kill came between the two renames), and says what it did.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def staging_dir(final: Path) -> Path:
    """The hidden folder this process builds ``final`` in."""
    return final.parent / f".{final.name}.partial-{os.getpid()}"


def _leftovers(final: Path, kind: str) -> list[tuple[Path, int]]:
    pattern = re.compile(rf"\.{re.escape(final.name)}\.{kind}-(\d+)")
    found = []
    for p in final.parent.glob(f".{final.name}.{kind}-*") if final.parent.is_dir() else []:
        m = pattern.fullmatch(p.name)
        if m and p.is_dir() and not _pid_alive(int(m.group(1))):
            found.append((p, int(m.group(1))))
    return sorted(found)


def recover_leftovers(final: Path) -> list[str]:
    """Restore or delete what interrupted runs (dead processes) left next to ``final``; one note per action."""
    notes = []
    for old, pid in _leftovers(final, "old"):
        if final.exists():
            shutil.rmtree(old)
            notes.append(f"removed {old} (the previous version, left by run {pid} that was interrupted after "
                         "writing the new one)")
        else:
            old.rename(final)
            notes.append(f"restored {final} from {old.name}: run {pid} was interrupted while replacing it")
    for partial, pid in _leftovers(final, "partial"):
        shutil.rmtree(partial)
        notes.append(f"removed {partial}: an unfinished folder left by run {pid}, which was interrupted")
    return notes


def swap_into_place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is replaced (kept aside until the rename succeeded)."""
    if not final.exists():
        tmp.rename(final)
        return
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    final.rename(old)
    try:
        tmp.rename(final)
    except BaseException:
        old.rename(final)
        raise
    shutil.rmtree(old)
