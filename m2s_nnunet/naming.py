"""File-name helpers shared by conversion and evaluation (case names, endings, short listings)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def split_ending(name: str, endings: Sequence[str]) -> tuple[str, str]:
    """Split ``case.nii.gz`` into (``case``, ``.nii.gz``), longest known ending first; unknown gives (name, '')."""
    low = name.lower()
    for end in sorted(endings, key=len, reverse=True):
        if low.endswith(end):
            return name[: -len(end)], end
    return name, ""


def short_list(items: Iterable[str], n: int = 15) -> str:
    """The first ``n`` items, comma-separated, and how many more there are (for error messages)."""
    items = list(items)
    return ", ".join(items[:n]) + (f" ... (+{len(items) - n} more)" if len(items) > n else "")
