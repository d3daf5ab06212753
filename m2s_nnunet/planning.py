"""M2SNet-aware plans: ``M2SNetPlans.json`` derived from nnU-Net's default ``nnUNetPlans.json``.

nnU-Net only finds ``-pl`` planners inside its own package, so this is exposed as ``m2s-nnunet plan``.
It keeps nnU-Net's fingerprint, normalisation, resampling *and preprocessed data* (same
``data_identifier``, so nothing is preprocessed twice) and changes only what depends on the network:

* patch size: in 2D each axis rounded up to a multiple of 32 (the timm encoder's stride); in 3D nnU-Net's
  patch is kept (the plans-built encoder matches it) unless two samples do not fit;
* batch size: from a memory model of M2SNet (+ LossNet) instead of nnU-Net's U-Net estimate, for a GPU
  memory target (8 GB by default, like nnU-Net), then nnU-Net's own caps (at most 5 % of the dataset's
  pixels per batch, at least 2);
* an ``m2snet`` entry with the encoder name, read by ``M2SNetTrainer``.

2d, 3d_fullres and 3d_lowres are re-planned; configurations that inherit (3d_cascade_fullres) follow their
parent. Train with ``-p M2SNetPlans``; predict and ``find_best_configuration`` take the same ``-p``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m2s_nnunet.errors import UserError
from m2s_nnunet.settings import PLANS_KEY, M2SNetSettings, settings_for_planning, with_plans_entry

STRIDE = 32
DEFAULT_GPU_MEMORY_GB = 8.0
# Mixed precision stores most activations in fp16: measured fp32 bytes are scaled by this factor, and the
# whole per-sample estimate by a safety margin for workspace and fragmentation.
AMP_FACTOR = 0.6
SAFETY = 1.3
CONTEXT_BYTES = 1.0e9  # CUDA context, cuDNN workspaces, allocator slack


class PlanningError(UserError):
    """What `m2s-nnunet plan` cannot do with the user's folders or options (message says how to fix it)."""


@dataclass(frozen=True)
class MemoryModel:
    """Training memory of M2SNet on a GPU: ``static + batch * per_pixel * pixels (+ LossNet per map)``."""

    static_bytes: float
    activation_bytes_per_pixel: float
    lossnet_bytes_per_map: float

    def bytes_for(self, batch: int, patch: list[int], foreground_maps: int) -> float:
        per_sample = (self.activation_bytes_per_pixel * math.prod(patch)
                      + self.lossnet_bytes_per_map * foreground_maps) * AMP_FACTOR * SAFETY
        return self.static_bytes + batch * per_sample


def _saved_tensor_bytes(module, inputs) -> int:
    """Bytes kept for backward by one training forward pass (shared storages counted once)."""
    import torch

    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(*inputs)
    return total


def _reference_configuration(configuration: dict, settings: M2SNetSettings) -> tuple[dict, list[int]]:
    """A small patch the network accepts: 128 px per axis for timm encoders, twice the total stride otherwise."""
    if settings.uses_timm_encoder:
        reference = [128, 128]
    else:
        strides = np.prod(np.array(configuration["architecture"]["arch_kwargs"]["strides"]), axis=0)
        reference = [int(2 * s) for s in strides]
    return {**configuration, "patch_size": reference}, reference


def measure_memory_model(settings: M2SNetSettings, configuration: dict, in_channels: int,
                         num_classes: int) -> MemoryModel:
    """Measure M2SNet's (and LossNet's) saved activations on CPU at a small patch and scale them per voxel."""
    import torch

    from m2s_nnunet.losses import LossNet
    from m2s_nnunet.network.blocks import set_compact_backward
    from m2s_nnunet.network.from_plans import build_m2snet

    torch.manual_seed(0)
    small, reference = _reference_configuration(configuration, settings)
    net = build_m2snet(settings, small, in_channels, num_classes).train()
    # measured with autograd's backward of the subtraction units, as 0.9.0 did: a dataset planned again gets
    # the batch and patch it got before (training keeps less, so the estimate errs on the safe side)
    set_compact_backward(net, False)
    x = torch.randn(1, in_channels, *reference)
    per_voxel = _saved_tensor_bytes(net, (x,)) / math.prod(reference)
    params = sum(p.numel() for p in net.parameters())
    static = params * 4 * 4 + CONTEXT_BYTES  # weights, gradients, momentum, fp16 copies
    lossnet_bytes = 0.0
    if settings.uses_lossnet:
        vgg = LossNet(pretrained=False, size=settings.lossnet_size)
        side = vgg.size  # the largest map VGG16 sees (smaller patches cost less: an upper bound)
        pred = torch.rand(1, 1, side, side, requires_grad=True)
        lossnet_bytes = float(_saved_tensor_bytes(vgg, (pred, torch.rand(1, 1, side, side)))) * settings.lossnet_slices
        static += sum(b.numel() for b in vgg.parameters()) * 4
    return MemoryModel(static, per_voxel, lossnet_bytes)


def round_up(value: int, multiple: int = STRIDE) -> int:
    return max(multiple, int(math.ceil(value / multiple) * multiple))


def patch_multiples(configuration: dict, settings: M2SNetSettings) -> list[int]:
    """What each patch axis must be a multiple of.

    The plans' total stride for nnU-Net's residual encoder (3D, and the from-scratch recipe in 2D). A 2D
    configuration planned for a timm encoder must also suit that encoder (32), so it gets the least common
    multiple of both: the same plans then work for ``M2SNetTrainer`` and for ``M2SNetTrainer_scratch``.
    """
    arch = configuration.get("architecture", {}).get("arch_kwargs", {})
    plans_stride = [int(s) for s in np.prod(np.array(arch["strides"]), axis=0)] if "strides" in arch else None
    if not settings.uses_timm_encoder:
        if plans_stride is None:
            raise ValueError("the plans encoder needs the configuration's architecture (strides) in the plans")
        return plans_stride
    if plans_stride is None:
        return [STRIDE] * len(configuration["patch_size"])
    return [math.lcm(STRIDE, s) for s in plans_stride]


def choose_batch_size(model: MemoryModel, patch: list[int], foreground_maps: int, gpu_memory_gb: float,
                      dataset_pixels: float, max_dataset_fraction: float = 0.05) -> int:
    """Largest batch that fits the memory target, capped like nnU-Net (<= 5 % of the data, >= 2)."""
    budget = gpu_memory_gb * 1e9
    per_sample = model.bytes_for(1, patch, foreground_maps) - model.static_bytes
    fits = int((budget - model.static_bytes) // per_sample) if budget > model.static_bytes else 0
    cap = round(dataset_pixels * max_dataset_fraction / math.prod(patch))
    return max(2, min(fits, cap))


def m2snet_configuration(base: dict, model: MemoryModel, foreground_maps: int, gpu_memory_gb: float,
                         dataset_pixels: float, settings: M2SNetSettings, patch_size: list[int] | None = None,
                         pinned: dict[str, Any] | None = None, batch_size: int | None = None,
                         preset: str | None = None) -> dict:
    """An M2SNet configuration derived from nnU-Net's configuration ``base`` (2D or 3D).

    ``pinned``: settings written into the plans' m2snet block (they then override the trainer variant's);
    ``batch_size``: a fixed batch (a preset's) instead of the memory model's.
    """
    multiples = patch_multiples(base, settings)
    patch = [round_up(p, m) for p, m in zip(patch_size or base["patch_size"], multiples)]
    # Shrink the longest axis until two samples fit, as nnU-Net's planner does for its U-Net.
    while batch_size is None and model.bytes_for(2, patch, foreground_maps) > gpu_memory_gb * 1e9:
        shrinkable = [i for i, (p, m) in enumerate(zip(patch, multiples)) if p > m]
        if not shrinkable:
            break
        axis = max(shrinkable, key=lambda i: patch[i])
        patch[axis] -= multiples[axis]
    batch = batch_size or choose_batch_size(model, patch, foreground_maps, gpu_memory_gb, dataset_pixels)
    record = {  # what the sizes were planned for; the trainer reads only the pinned settings
        "encoder": settings.encoder, "width": settings.width, "gpu_memory_target_gb": gpu_memory_gb,
        "estimated_gb": round(model.bytes_for(batch, patch, foreground_maps) / 1e9, 2),
    }
    config = {**base, "patch_size": patch, "batch_size": batch}
    config.pop(PLANS_KEY, None)
    return with_plans_entry(config, memory_model=record, preset=preset, **(pinned or {}))


def preprocessed_dataset_folder(dataset: str) -> Path:
    """``$nnUNet_preprocessed/DatasetXXX_Name`` from an id (``4``, ``004``) or a full name."""
    from m2s_nnunet.nnunet_env import find_dataset_folder

    root = os.environ.get("nnUNet_preprocessed")
    if not root:
        raise PlanningError("nnUNet_preprocessed is not set", fix="run `m2s-nnunet env` and export what it prints")
    if not Path(root).is_dir():
        raise PlanningError(f"nnUNet_preprocessed='{root}' does not exist",
                            fix="create it, or export the folder nnUNetv2_plan_and_preprocess wrote to")
    found = find_dataset_folder(dataset, root)
    if isinstance(found, list):
        what = f"several preprocessed datasets match '{dataset}': {[p.name for p in found]}" if found else \
            f"no preprocessed dataset {dataset} in {root}"
        raise PlanningError(what, fix=f"run `nnUNetv2_plan_and_preprocess -d {dataset} -c 2d` first, or pass the "
                                      "full DatasetXXX_Name")
    return found


def _dataset_facts(folder: Path) -> tuple[int, int, int, int]:
    """Input channels, foreground maps, output heads and training cases from dataset.json."""
    dataset_json = json.loads((folder / "dataset.json").read_text())
    labels = dataset_json["labels"]
    region_mode = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values())
    foreground_maps = len(labels) - 1
    heads = foreground_maps if region_mode else len(labels)
    return len(dataset_json["channel_names"]), foreground_maps, heads, int(dataset_json.get("numTraining", 1))


def plan_m2snet(dataset: str, gpu_memory_gb: float | None = None, encoder: str | None = None,
                patch_size: list[int] | None = None, source_plans: str = "nnUNetPlans",
                plans_name: str = "M2SNetPlans", lossnet: bool = True, overwrite: bool = False,
                preset: str | None = None) -> Path:
    """Write ``<plans_name>.json`` next to nnU-Net's plans and return its path.

    ``preset``: a built-in preset name or a preset file (``m2s_nnunet/presets``); its patch sizes, batch
    sizes and m2snet blocks apply to the configurations it names, and its GPU memory target is the default.
    Explicit arguments (``gpu_memory_gb``, ``encoder``, ``patch_size``) win over the preset's values.
    """
    from m2s_nnunet.presets import load_preset

    chosen = load_preset(preset) if preset else None
    gpu_memory_gb = gpu_memory_gb or (chosen.gpu_memory_gb if chosen else None) or DEFAULT_GPU_MEMORY_GB
    folder = preprocessed_dataset_folder(dataset)
    source = folder / f"{source_plans}.json"
    if not source.is_file():
        raise PlanningError(f"{source} not found", fix=f"run `nnUNetv2_plan_and_preprocess -d {dataset} -c 2d` first")
    target = folder / f"{plans_name}.json"
    if target.exists() and not overwrite:
        raise PlanningError(f"{target} exists", fix="pass --overwrite to replace it, or choose another --plans-name")
    plans = json.loads(source.read_text())
    in_channels, foreground_maps, heads, cases = _dataset_facts(folder)
    configurations = {}
    for name, base in plans["configurations"].items():
        if "patch_size" not in base:  # inherits (e.g. 3d_cascade_fullres): follows its re-planned parent
            configurations[name] = base
            continue
        dim = len(base["patch_size"])
        from_preset = chosen.overrides_for(name) if chosen else {}
        pinned = dict(from_preset.get(PLANS_KEY, {}))
        if encoder is not None and dim == 2:
            pinned["encoder"] = encoder  # only an explicit --encoder overrides the trainer variant's encoder
        settings = settings_for_planning(with_plans_entry(base, **pinned), in_channels, lossnet=lossnet)
        model = measure_memory_model(settings, base, in_channels, heads)
        dataset_pixels = math.prod(base.get("median_image_size_in_voxels", base["patch_size"])) * cases
        wanted = patch_size if (patch_size and len(patch_size) == dim) else from_preset.get("patch_size")
        configurations[name] = m2snet_configuration(
            base, model, foreground_maps if lossnet else 0, gpu_memory_gb, dataset_pixels, settings, wanted,
            pinned, batch_size=from_preset.get("batch_size"), preset=chosen.name if from_preset else None)
    if not configurations:
        raise PlanningError(f"{source} has no configurations", fix="rerun nnUNetv2_plan_and_preprocess")
    missing = sorted(set(chosen.configurations) - set(plans["configurations"])) if chosen else []
    if missing:
        raise PlanningError(f"preset '{chosen.name}' is for configuration(s) {missing}, which {source.name} does "
                            f"not have", fix=f"run `nnUNetv2_plan_and_preprocess -d {dataset} -c {' '.join(missing)}`")
    plans["plans_name"] = plans_name
    plans["configurations"] = configurations  # data_identifier unchanged -> the preprocessed data is reused
    plans["experiment_planner_used"] = f"m2s-nnunet plan (from {source_plans}" + (
        f", preset {chosen.name})" if chosen else ")")
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(plans, indent=4))
    tmp.replace(target)
    return target
