"""Yes/no environment variables, parsed in one place.

This project's own variables (``M2S_NNUNET_PRETRAINED=0``...) go through ``env_flag``: a value that is neither
yes nor no stops with the variable's name instead of being read as one or the other. Variables that belong to
another library (``nnUNet_compile``, ``HF_HUB_OFFLINE``) go through ``foreign_flag`` with that library's own
rule, so this project and the library never disagree about what a value means.
"""

from __future__ import annotations

import os

from m2s_nnunet.errors import UserError

TRUE = ("1", "true", "t", "yes", "y", "on")
FALSE = ("0", "false", "f", "no", "n", "off")


NNUNET_TRUE = ("true", "1", "t")  # nnunetv2's nnUNetTrainer._do_i_compile
HF_TRUE = ("1", "on", "yes", "true")  # huggingface_hub's ENV_VARS_TRUE_VALUES


class EnvFlagError(UserError):
    """An environment variable with a value that is neither yes nor no."""


def env_flag(name: str, default: bool | None = False) -> bool | None:
    """True/False from ``name``; ``default`` when it is unset, empty or "auto" (None lets the caller decide)."""
    raw = os.environ.get(name)
    value = (raw or "").strip().lower()
    if value in ("", "auto"):
        return default
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise EnvFlagError(f"{name}={raw!r} is neither yes nor no",
                       fix=f"set {name} to 1 or 0 ({'/'.join(TRUE)} or {'/'.join(FALSE)}), or unset it")


def foreign_flag(name: str, true_values: tuple[str, ...], default: bool = False) -> bool:
    """A variable another library owns, read with that library's rule (case-insensitive membership)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in true_values
