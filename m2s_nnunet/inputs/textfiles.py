"""Text inputs: JSON files and one-item-per-line lists, with errors that name the file, line and fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from m2s_nnunet.errors import UserError


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; refuse missing, unreadable and binary files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} does not exist (or is not a file)", path)
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{what} is not UTF-8 text (binary or damaged?)", path, "write it as plain UTF-8 text") from err


def read_json(path: str | Path, expect: type = dict, what: str = "JSON file", fix: str | None = None) -> Any:
    """Parsed JSON of ``path``; it must be an ``expect`` (dict or list)."""
    text = read_text(path, what)
    if not text.strip():
        raise UserError(f"{what} is empty", path, fix)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{what} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}; "
                        "truncated or hand-edited?)", path, fix) from err
    if not isinstance(data, expect):
        raise UserError(f"{what} holds a JSON {type(data).__name__}, expected a JSON "
                        f"{'object' if expect is dict else 'list'}", path, fix)
    return data


def read_lines(path: str | Path, what: str = "list file") -> list[str]:
    """Non-empty lines without '#' comments and surrounding spaces."""
    lines = []
    for line in read_text(path, what).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines
