"""Folders: input folders exist and hold no broken links; output folders are checked *before* any work is done.

A read-only or misplaced output folder used to end in a ``PermissionError`` traceback after all the work; now
every command asks :func:`check_output_folder` first.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from m2s_nnunet.errors import UserError


def check_input_folder(path: str | Path, what: str = "input folder") -> Path:
    """``path`` as a Path; it must be an existing folder."""
    path = Path(path)
    if path.is_file():
        raise UserError(f"{what} is a file, not a folder", path, "pass the folder that holds the files")
    if not path.is_dir():
        raise UserError(f"{what} does not exist", path, "check the path (typo? not mounted?)")
    return path


def broken_links(folder: str | Path) -> list[Path]:
    """Symbolic links in ``folder`` whose target does not exist (they would otherwise be skipped silently)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_symlink() and not p.exists())


def check_output_folder(path: str | Path, what: str = "output folder") -> Path:
    """Refuse an output folder that is a file, sits below a file, or cannot be written; create nothing.

    Writability is tested by creating and deleting a probe file in the folder (or in its nearest existing
    parent, where the folder will be created): permission bits do not tell the truth for root, read-only
    mounts or network shares.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} is a file, not a folder", path, "pass a folder path, or move the file away")
    probe_dir = path
    while not probe_dir.exists():
        if probe_dir.is_symlink():
            raise UserError(f"{what} is a broken symbolic link", probe_dir, "fix or remove the link")
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise UserError(f"{what} cannot be created: {probe_dir} is a file", path, "pick another output folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".m2s_write_test_", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(
            f"{what} is not writable ({reason} in {probe_dir})",
            path,
            "pick another output folder (-o/--out), or make this one writable",
        ) from err
    return path
