"""Build a folder next to its final place and swap it in at the end, so that readers never see half a folder.

``convert`` writes ``.<name>.partial-<host>-<pid>`` (hidden: nnU-Net only looks at ``DatasetXXX_*``), then renames
the old folder to ``.<name>.old-<host>-<pid>``, the new one into place, and deletes the old one. A run killed with
SIGKILL can leave either hidden folder behind; :func:`recover_leftovers` cleans them up on the next run (and
puts the previous folder back if the kill came between the two renames), and says what it did.

A process id only means something on the host that ran it: on a shared ``nnUNet_raw`` (NFS, containers) another
host's live run has a process id that may be free here. The host name is therefore part of the hidden folders'
names, and only this host's leftovers of dead runs are touched; other hosts' are reported and left alone.
Leftovers named without a host (``.<name>.partial-<pid>``, written by earlier versions) are judged by their
process id on this host, as before.

Hidden folders that are symbolic links (a dataset folder linked to another disk, renamed aside by a killed run)
are handled as links: removing one never deletes what it points to.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from dataclasses import dataclass
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


def host_tag() -> str:
    """This host's name as it appears in hidden folder names (characters outside [A-Za-z0-9_.] replaced)."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "unknown_host"


def _tag() -> str:
    return f"{host_tag()}-{os.getpid()}"


def staging_dir(final: Path) -> Path:
    """The hidden folder this process builds ``final`` in."""
    return final.parent / f".{final.name}.partial-{_tag()}"


@dataclass(frozen=True)
class Leftover:
    path: Path
    kind: str  # "old" or "partial"
    pid: int
    host: str | None  # None: a name without host (earlier versions), judged on this host

    @property
    def here(self) -> bool:
        return self.host is None or self.host == host_tag()

    @property
    def run(self) -> str:
        return f"run {self.pid}" + (f" on host {self.host}" if self.host is not None else "")


def _leftovers(final: Path, kind: str) -> list[Leftover]:
    """Hidden ``kind`` folders (or links) next to ``final``, except those of live runs on this host."""
    pattern = re.compile(rf"\.{re.escape(final.name)}\.{kind}-(?:(?P<host>[A-Za-z0-9_.]+)-)?(?P<pid>\d+)")
    found = []
    for p in sorted(final.parent.glob(f".{final.name}.{kind}-*")) if final.parent.is_dir() else []:
        m = pattern.fullmatch(p.name)
        if not m or not (p.is_dir() or p.is_symlink()):
            continue
        item = Leftover(p, kind, int(m.group("pid")), m.group("host"))
        if item.here and _pid_alive(item.pid):
            continue
        found.append(item)
    return found


def _remove(path: Path) -> str | None:
    """Delete a leftover folder, or only the link if it is one; the reason if that failed (never raises)."""
    try:
        if path.is_symlink():
            path.unlink()
        else:
            shutil.rmtree(path)
    except OSError as err:
        return err.strerror or str(err)
    return None


def recover_leftovers(final: Path) -> list[str]:
    """Restore or delete what interrupted runs (dead processes of this host) left next to ``final``; report other
    hosts' leftovers without touching them. One note per leftover; never raises for a leftover it cannot handle."""
    notes = []
    for item in _leftovers(final, "old") + _leftovers(final, "partial"):
        link = " (a symbolic link; only the link is removed, not what it points to)" if item.path.is_symlink() else ""
        if not item.here:
            notes.append(f"left {item.path} alone: it belongs to {item.run}, not this host ({host_tag()}), which "
                         "may still be running; once that run is over, delete it (or, for an .old- folder with no "
                         f"{final.name} next to it, rename it back to {final.name})")
            continue
        if item.kind == "old" and final.is_symlink() and not final.exists():
            notes.append(f"left {item.path} alone: {item.run} was interrupted while replacing {final}, which is now a "
                         f"broken symbolic link; remove that link, then rename {item.path.name} back to {final.name}")
            continue
        if item.kind == "old" and not final.exists():
            try:
                item.path.rename(final)
            except OSError as err:
                notes.append(f"could not restore {final} from {item.path} ({err.strerror or err}): {item.run} was "
                             f"interrupted while replacing it; rename it back to {final.name} yourself")
                continue
            notes.append(f"restored {final} from {item.path.name}: {item.run} was interrupted while replacing it")
            continue
        what = ("the previous version, left by {run} that was interrupted after writing the new one"
                if item.kind == "old" else "an unfinished folder left by {run}, which was interrupted")
        problem = _remove(item.path)
        if problem:
            notes.append(f"could not remove {item.path} ({problem}): {what.format(run=item.run)}; delete it yourself")
        else:
            notes.append(f"removed {item.path}{link}: {what.format(run=item.run)}")
    return notes


def swap_into_place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is replaced (kept aside until the rename succeeded).

    A symbolic link at ``final`` would be replaced by a real folder (callers refuse that up front); should one be
    kept aside here, only the link is removed afterwards.
    """
    if not final.exists() and not final.is_symlink():
        tmp.rename(final)
        return
    old = final.parent / f".{final.name}.old-{_tag()}"
    final.rename(old)
    try:
        tmp.rename(final)
    except BaseException:
        old.rename(final)
        raise
    if old.is_symlink():
        old.unlink()
    else:
        shutil.rmtree(old)
