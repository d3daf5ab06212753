"""The one error type for problems the user can fix: a bad input file, a bad option, an unusable output folder.

Every command raises a subclass of :class:`UserError` (``ConversionError``, ``EvaluationError``,
``SummaryError``, ``MissingWeightsError``, ...) with a message that says what is wrong, which file, and how
to fix it. The ``m2s-nnunet`` command prints that message without a traceback and exits with code 2, so a
traceback always means a bug in this project, never a bad input.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A refused input or output; ``str(err)`` is the complete message (what, which file, how to fix it).

    ``UserError("message")`` works like any exception; ``UserError(problem, path=..., fix=...)`` builds the
    message "<path>: <problem>" followed by a "fix:" line, and keeps the parts for callers that collect them.
    """

    def __init__(self, problem: str, path: str | os.PathLike | None = None, fix: str | None = None):
        self.problem, self.path, self.fix = problem, path, fix
        text = f"{path}: {problem}" if path is not None else problem
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


def describe_os_error(err: OSError) -> str:
    """An OSError as one line that names the path(s) involved (tracebacks of OSError often hide them)."""
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    what = err.strerror or str(err) or type(err).__name__
    where = " -> ".join(paths) if paths else ""
    hint = {
        "EACCES": "the folder is read-only for you: pick another output folder (-o/--out) or fix its permissions",
        "EPERM": "the folder is read-only for you: pick another output folder (-o/--out) or fix its permissions",
        "EROFS": "the file system is mounted read-only: pick another output folder (-o/--out)",
        "ENOSPC": "the disk is full: free some space or write to another disk",
        "EDQUOT": "your disk quota is exhausted: free some space or write to another disk",
    }
    name = errno.errorcode.get(err.errno or -1, "")
    fix = hint.get(name)
    return (f"{what}: {where}" if where else what) + (f"\n  fix: {fix}" if fix else "")


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """OSErrors raised while writing ``path`` carry its name (pandas and matplotlib often leave it out)."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
