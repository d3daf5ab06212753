"""Preset plans (``m2s-nnunet plan --preset NAME``): a protocol applied on top of a dataset's fingerprint.

A preset is a JSON file (schema in ``plans/README.md``): per configuration an optional ``patch_size``, an
optional fixed ``batch_size`` and an ``m2snet`` block; optionally a GPU memory target and the trainer the
protocol was written for. The planner keeps everything nnU-Net derived from the dataset (spacing,
normalisation, preprocessed data) and applies only these keys. The built-in presets ship in this package;
``--preset`` also takes the path of a user's own file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m2s_nnunet.errors import UserError
from m2s_nnunet.settings import PLANS_KEY, SCHEMA_VERSION, SettingsError, plans_entry

PRESET_FOLDER = Path(__file__).resolve().parent
_CONFIGURATION_KEYS = ("patch_size", "batch_size", PLANS_KEY)
_TOP_KEYS = ("schema_version", "name", "description", "source", "gpu_memory_gb", "configurations", "trainer", "note")


class PresetError(UserError):
    """A preset that does not exist or does not follow the schema."""


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    configurations: dict[str, dict[str, Any]]
    gpu_memory_gb: float | None = None
    trainer: str | None = None
    note: str = ""
    path: Path | None = field(default=None, compare=False)

    def overrides_for(self, configuration: str) -> dict[str, Any]:
        """What this preset sets for one configuration (empty when it does not name it)."""
        return dict(self.configurations.get(configuration, {}))


def builtin_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_FOLDER.glob("*.json"))


def load_preset(name_or_path: str) -> Preset:
    """A built-in preset by name, or a preset file by path; checked against the schema."""
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.is_file()):
        path = PRESET_FOLDER / f"{name_or_path}.json"
        if not path.is_file():
            raise PresetError(f"no preset '{name_or_path}'",
                              fix=f"use one of {', '.join(builtin_presets())}, or the path of a preset .json file")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PresetError(f"cannot read the preset: {err}", path=path) from err
    return _parse(data, path)


def _parse(data: dict, path: Path) -> Preset:
    def bad(problem: str) -> PresetError:
        return PresetError(problem, path=path, fix="see the preset schema in plans/README.md")

    if not isinstance(data, dict):
        raise bad("a preset is a JSON object")
    version = data.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise bad(f"schema_version must be an integer <= {SCHEMA_VERSION}, got {version!r}")
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise bad(f"unknown key(s) {unknown}; allowed: {', '.join(_TOP_KEYS)}")
    configurations = data.get("configurations")
    if not isinstance(configurations, dict) or not configurations:
        raise bad("'configurations' must map configuration names (2d, 3d_fullres, ...) to their settings")
    for name, config in configurations.items():
        if not isinstance(config, dict) or set(config) - set(_CONFIGURATION_KEYS):
            raise bad(f"configuration '{name}' may only set {', '.join(_CONFIGURATION_KEYS)}")
        patch, batch = config.get("patch_size"), config.get("batch_size")
        if patch is not None and not (isinstance(patch, list) and len(patch) in (2, 3)
                                      and all(isinstance(p, int) and p > 0 for p in patch)):
            raise bad(f"configuration '{name}': patch_size must be a list of 2 or 3 positive integers")
        if batch is not None and not (isinstance(batch, int) and batch >= 1):
            raise bad(f"configuration '{name}': batch_size must be a positive integer")
        try:
            plans_entry(config)
        except SettingsError as err:
            raise bad(f"configuration '{name}': {err}") from err
    memory = data.get("gpu_memory_gb")
    if memory is not None and not (isinstance(memory, (int, float)) and memory > 0):
        raise bad("gpu_memory_gb must be a positive number")
    return Preset(name=str(data.get("name") or path.stem), description=str(data.get("description", "")),
                  configurations=configurations, gpu_memory_gb=memory, trainer=data.get("trainer"),
                  note=str(data.get("note", "")), path=path)
