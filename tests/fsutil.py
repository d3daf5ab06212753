"""File-system helpers shared by the tests (``conftest.py``) and the fuzz generator (``fuzz_inputs.py``, also a
script, hence a plain module rather than a fixture)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def make_readonly_dir(parent: Path) -> Path | None:
    """An existing folder this process cannot write into: ``parent/read_only`` with mode 555 for normal users;
    root ignores permission bits, so there the read-only ``/sys`` stands in. None where neither is available."""
    if os.geteuid() != 0:
        folder = Path(parent) / "read_only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    try:
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys")
    os.close(fd)
    os.unlink(probe)
    return None
