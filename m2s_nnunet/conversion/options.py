"""What the user asked of ``convert``, and the refusal every conversion step raises.

Options are checked before any file is read: a value accepted silently would do something other than asked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from m2s_nnunet.errors import UserError


class ConversionError(UserError):
    """A refused conversion; the message names the offending files and how to fix them."""


@dataclass
class ConvertOptions:
    """The ``m2s-nnunet convert`` command line as data (field names follow the options)."""

    images: Path
    masks: Path
    dataset_id: int
    name: str
    out: Path | None = None
    resize: tuple[int, int] | None = None
    labels: Sequence[str] | None = None
    label_name: str = "foreground"
    modality: str | None = None
    test_list: Path | None = None
    splits: Path | None = None
    folds: int | None = None
    install_splits: bool = False
    overwrite: bool = False
    limit: int | None = None
    mask_suffix: str = ""
    channels: str = "auto"
    binarize_masks: bool = False
    drop_alpha: bool = False
    geometry_tol: float = 1e-3
    progress: bool = True


def check_options(opts: ConvertOptions) -> None:
    """Refuse option values that would be accepted silently and do something else than asked."""
    problems = []
    if opts.limit is not None and opts.limit < 1:
        problems.append(f"--limit {opts.limit}: must be a positive number of cases (or leave it out for all)")
    if opts.folds is not None and opts.folds < 2:
        problems.append(f"--folds {opts.folds}: cross-validation needs at least 2 folds (or leave it out)")
    if opts.resize is not None and (len(opts.resize) != 2 or min(opts.resize) < 1):
        problems.append(f"--resize {opts.resize}: needs two positive sizes H W")
    if not (math.isfinite(opts.geometry_tol) and opts.geometry_tol >= 0):
        problems.append(f"--geometry-tol {opts.geometry_tol}: must be a finite number >= 0")
    if opts.channels not in ("auto", "rgb", "grey"):
        problems.append(f"--channels {opts.channels}: must be auto, rgb or grey")
    if opts.splits is not None and opts.folds is not None:
        problems.append("use either --splits FILE or --folds K, not both")
    if problems:
        raise ConversionError("invalid options (nothing was written):\n  " + "\n  ".join(problems))
