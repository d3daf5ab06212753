"""Print our input errors (``UserError``) in nnU-Net's processes as one message instead of a traceback."""

from __future__ import annotations

import sys

from m2s_nnunet.errors import UserError

_installed = False


def _hook(previous):
    def excepthook(exc_type, exc, tb):
        if isinstance(exc, UserError):
            print(f"\n{exc_type.__name__}: {exc}", file=sys.stderr, flush=True)
            return
        previous(exc_type, exc, tb)

    return excepthook


def install() -> None:
    """Wrap ``sys.excepthook``: UserError -> "<ErrorType>: <message>", anything else -> the usual traceback."""
    global _installed
    if not _installed:
        sys.excepthook = _hook(sys.excepthook)
        _installed = True
