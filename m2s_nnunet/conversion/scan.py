"""What a scan of the inputs returns, whatever their kind, and how it refuses.

Every file is decoded in full before anything is written, and all problems are reported together: a scan either
returns its findings or raises one ConversionError listing every culprit, grouped by problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from m2s_nnunet.conversion.options import ConversionError, ConvertOptions


@dataclass(frozen=True)
class Scan:
    """What a full read of every case found, common to all kinds (each kind adds its own findings)."""

    channels: int
    """Channels per image after conversion (the same for every case)."""
    sizes: tuple[tuple[int, ...], ...]
    """Image shape per case: (H, W) or (Z, Y, X)."""
    values: dict[str, set[int]]
    """Raw values per mask file name."""

    def warnings(self, opts: ConvertOptions) -> list[str]:
        """Findings that did not stop the conversion but the user should know (none by default)."""
        return []

    def values_found(self) -> list[int]:
        """Every raw mask value, sorted."""
        return sorted(set().union(*self.values.values()))


def unique_values(arr: np.ndarray) -> np.ndarray:
    """np.unique, but via a histogram for 8/16-bit masks (much faster on megapixel images)."""
    arr = np.asarray(arr)
    if arr.dtype in (np.uint8, np.uint16):
        return np.flatnonzero(np.bincount(arr.ravel(), minlength=1))
    return np.unique(arr)


def raise_problems(problems: dict[str, list[str]], titles: dict[str, str]) -> None:
    """Refuse with every problem of a scan, grouped under its title (problem key -> title), 20 per group."""
    if not problems:
        return
    parts = [
        f"{titles[k]}:\n  " + "\n  ".join(v[:20]) + (f"\n  ... (+{len(v) - 20} more)" if len(v) > 20 else "")
        for k, v in problems.items()
    ]
    raise ConversionError("conversion refused, nothing was written:\n" + "\n".join(parts))
