"""The one error type of folder evaluation, so the CLI can show it as a user error (no traceback)."""

from __future__ import annotations

from m2s_nnunet.errors import UserError


class EvaluationError(UserError):
    """Inputs that cannot be scored; the message names the files and the fix."""
