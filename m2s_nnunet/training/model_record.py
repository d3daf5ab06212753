"""Where a trained model keeps the settings it was trained with, and how they are found again.

The trainer writes the record (``settings.make_record``) into the m2snet block of its configuration in the plans
it holds. nnU-Net saves those plans twice with every model: as ``plans.json`` in the model folder (what
``nnUNetv2_predict``, ``find_best_configuration`` and the export tools read) and in each checkpoint's
``init_args``. A model of m2s-nnunet 0.6 or older records nothing; its network is read from a checkpoint's
state-dict layout (``network.layout``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from m2s_nnunet.checkpoint_files import refuse_incomplete
from m2s_nnunet.network.layout import infer_settings
from m2s_nnunet.settings import RECORD_KEY, M2SNetSettings, plans_record, record_settings, recorded_settings

CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")


def resolved_configuration(plans: dict, configuration: str) -> dict:
    """One configuration of a plans dict with ``inherits_from`` resolved, as nnU-Net resolves it."""
    return PlansManager(plans).get_configuration(configuration).configuration


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents, memory-mapped (the weights are read only where they are used); a file cut off
    while it was written is refused with what to do, not with torch's zip-reader error."""
    refuse_incomplete(path)
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


def network_weights(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The checkpoint's network weights, without the ``module.`` prefix a DDP-wrapped network leaves."""
    weights = checkpoint["network_weights"]
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in weights.items()}


def checkpoint_record(checkpoint: Mapping) -> tuple[M2SNetSettings, str] | None:
    """(settings, trainer name) recorded in a checkpoint's ``init_args`` plans, whatever trainer wrote them."""
    init = checkpoint.get("init_args") or {}
    plans, configuration = init.get("plans"), init.get("configuration")
    if not isinstance(plans, dict) or configuration not in (plans.get("configurations") or {}):
        return None
    record = plans_record(resolved_configuration(plans, configuration), RECORD_KEY)
    if not record:
        return None
    return record_settings(record, "the settings recorded in this checkpoint"), str(record.get("trainer"))


def settings_of_checkpoint(checkpoint: Mapping, where: str, start: M2SNetSettings, configuration: dict,
                           in_channels: int, num_classes: int) -> tuple[M2SNetSettings, str]:
    """(settings, how they were found): the checkpoint's record, else its layout read on these plans."""
    found = checkpoint_record(checkpoint)
    if found is not None:
        return found[0], f"recorded in {where} by {found[1]}"
    settings = infer_settings(network_weights(checkpoint), start, configuration, in_channels, num_classes)
    return settings, f"read from the weights' layout in {where} (m2s-nnunet 0.6 and older recorded nothing)"


def model_folder_settings(folder: Path, configuration_name: str, trainer_name: str, fold: int | str,
                          start: M2SNetSettings, in_channels: int,
                          num_classes: int) -> tuple[M2SNetSettings, str] | None:
    """The network the folds already trained in this model folder have, so that a new fold gets the same one
    (the predictor builds one network for all folds): the record in its plans.json, else another fold's
    checkpoint (its record, or its layout for models of 0.6 and older). None for a new model folder."""
    plans_file = folder / "plans.json"
    configuration = None
    if plans_file.is_file():
        plans = json.loads(plans_file.read_text())
        if configuration_name in (plans.get("configurations") or {}):
            configuration = resolved_configuration(plans, configuration_name)
            settings = recorded_settings(configuration, trainer_name)
            if settings is not None:
                return settings, f"recorded in {plans_file}"
    for fold_dir in sorted(folder.glob("fold_*")):
        if fold_dir.name == f"fold_{fold}":
            continue  # this fold is trained anew (or resumed: load_checkpoint reads its own checkpoint)
        checkpoint_file = next((fold_dir / n for n in CHECKPOINT_NAMES if (fold_dir / n).is_file()), None)
        if checkpoint_file is not None and configuration is not None:
            return settings_of_checkpoint(read_checkpoint(checkpoint_file), str(checkpoint_file), start,
                                          configuration, in_channels, num_classes)
    return None
