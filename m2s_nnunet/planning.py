"""M2SNet-aware plans: ``M2SNetPlans.json`` derived from nnU-Net's default ``nnUNetPlans.json``.

nnU-Net only finds ``-pl`` planners inside its own package, so this is exposed as ``m2s-nnunet plan``.
It keeps nnU-Net's fingerprint, normalisation, resampling *and preprocessed data* (same
``data_identifier``, so nothing is preprocessed twice) and changes only what depends on the network:

* patch size: each axis rounded up to a multiple of 32 (M2SNet's encoder stride);
* batch size: from a memory model of M2SNet (+ LossNet) instead of nnU-Net's U-Net estimate, for a GPU
  memory target (8 GB by default, like nnU-Net), then nnU-Net's own caps (at most 5 % of the dataset's
  pixels per batch, at least 2);
* an ``m2snet`` entry with the encoder name, read by ``M2SNetTrainer``.

Train with ``-p M2SNetPlans``; predict and ``find_best_configuration`` take the same ``-p``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

STRIDE = 32
DEFAULT_GPU_MEMORY_GB = 8.0
# Mixed precision stores most activations in fp16: measured fp32 bytes are scaled by this factor, and the
# whole per-sample estimate by a safety margin for workspace and fragmentation.
AMP_FACTOR = 0.6
SAFETY = 1.3
CONTEXT_BYTES = 1.0e9  # CUDA context, cuDNN workspaces, allocator slack


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


def measure_memory_model(encoder: str, in_channels: int, num_classes: int, width: int = 64,
                         lossnet: bool = True, reference: int = 128) -> MemoryModel:
    """Measure M2SNet's (and LossNet's) saved activations on CPU at a reference size and scale them."""
    import torch

    from m2s_nnunet.losses import LossNet
    from m2s_nnunet.network import M2SNet

    torch.manual_seed(0)
    net = M2SNet(in_channels, num_classes, encoder=encoder, width=width).train()
    x = torch.randn(1, in_channels, reference, reference)
    per_pixel = _saved_tensor_bytes(net, (x,)) / reference**2
    params = sum(p.numel() for p in net.parameters())
    static = params * 4 * 4 + CONTEXT_BYTES  # weights, gradients, momentum, fp16 copies
    lossnet_bytes = 0.0
    if lossnet:
        vgg = LossNet(pretrained=False)
        pred = torch.rand(1, 1, 64, 64, requires_grad=True)
        lossnet_bytes = float(_saved_tensor_bytes(vgg, (pred, torch.rand(1, 1, 64, 64))))
        static += sum(b.numel() for b in vgg.parameters()) * 4
    return MemoryModel(static, per_pixel, lossnet_bytes)


def round_up(value: int, multiple: int = STRIDE) -> int:
    return max(multiple, int(math.ceil(value / multiple) * multiple))


def choose_batch_size(model: MemoryModel, patch: list[int], foreground_maps: int, gpu_memory_gb: float,
                      dataset_pixels: float, max_dataset_fraction: float = 0.05) -> int:
    """Largest batch that fits the memory target, capped like nnU-Net (<= 5 % of the data, >= 2)."""
    budget = gpu_memory_gb * 1e9
    per_sample = model.bytes_for(1, patch, foreground_maps) - model.static_bytes
    fits = int((budget - model.static_bytes) // per_sample) if budget > model.static_bytes else 0
    cap = round(dataset_pixels * max_dataset_fraction / math.prod(patch))
    return max(2, min(fits, cap))


def m2snet_configuration(base: dict, model: MemoryModel, foreground_maps: int, gpu_memory_gb: float,
                         dataset_pixels: float, encoder: str, patch_size: list[int] | None = None) -> dict:
    """A 2d configuration for M2SNet derived from nnU-Net's 2d configuration ``base``."""
    patch = [round_up(p) for p in (patch_size or base["patch_size"])]
    # Shrink the longest axis until two samples fit, as nnU-Net's planner does for its U-Net.
    while model.bytes_for(2, patch, foreground_maps) > gpu_memory_gb * 1e9 and max(patch) > STRIDE:
        axis = patch.index(max(patch))
        patch[axis] -= STRIDE
    config = dict(base)
    config["patch_size"] = patch
    config["batch_size"] = choose_batch_size(model, patch, foreground_maps, gpu_memory_gb, dataset_pixels)
    config["m2snet"] = {
        "encoder": encoder,
        "memory_model": {
            "gpu_memory_target_gb": gpu_memory_gb,
            "estimated_gb": round(model.bytes_for(config["batch_size"], patch, foreground_maps) / 1e9, 2),
        },
    }
    return config


def preprocessed_dataset_folder(dataset: str) -> Path:
    """``$nnUNet_preprocessed/DatasetXXX_Name`` from an id (``4``, ``004``) or a full name."""
    root = os.environ.get("nnUNet_preprocessed")
    if not root:
        raise RuntimeError("nnUNet_preprocessed is not set: run `m2s-nnunet env` and export what it prints")
    if not Path(root).is_dir():
        raise RuntimeError(f"nnUNet_preprocessed='{root}' does not exist")
    if dataset.startswith("Dataset"):
        folder = Path(root) / dataset
    else:
        matches = sorted(Path(root).glob(f"Dataset{int(dataset):03d}_*"))
        if not matches:
            raise RuntimeError(
                f"no preprocessed dataset {dataset} in {root}. "
                f"Run `nnUNetv2_plan_and_preprocess -d {dataset} -c 2d` first."
            )
        folder = matches[0]
    if not folder.is_dir():
        raise RuntimeError(f"{folder} does not exist. Run `nnUNetv2_plan_and_preprocess -d {dataset} -c 2d` first.")
    return folder


def plan_m2snet(dataset: str, gpu_memory_gb: float = DEFAULT_GPU_MEMORY_GB, encoder: str | None = None,
                patch_size: list[int] | None = None, source_plans: str = "nnUNetPlans",
                plans_name: str = "M2SNetPlans", lossnet: bool = True, overwrite: bool = False) -> Path:
    """Write ``<plans_name>.json`` next to nnU-Net's plans and return its path."""
    from m2s_nnunet.network import DEFAULT_ENCODER

    folder = preprocessed_dataset_folder(dataset)
    source = folder / f"{source_plans}.json"
    if not source.is_file():
        raise RuntimeError(f"{source} not found. Run `nnUNetv2_plan_and_preprocess -d {dataset} -c 2d` first.")
    target = folder / f"{plans_name}.json"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    plans = json.loads(source.read_text())
    if "2d" not in plans["configurations"]:
        raise RuntimeError(f"{source} has no '2d' configuration; rerun nnUNetv2_plan_and_preprocess with -c 2d")
    dataset_json = json.loads((folder / "dataset.json").read_text())
    in_channels = len(dataset_json["channel_names"])
    labels = dataset_json["labels"]
    region_mode = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values())
    foreground_maps = (len(labels) - 1) if not region_mode else sum(
        1 for k, v in labels.items() if k != "background")
    heads = foreground_maps if region_mode else len(labels)
    encoder = encoder or DEFAULT_ENCODER
    model = measure_memory_model(encoder, in_channels, heads, lossnet=lossnet)
    base = plans["configurations"]["2d"]
    median = base.get("median_image_size_in_voxels", base["patch_size"])
    dataset_pixels = math.prod(median) * int(dataset_json.get("numTraining", 1))
    config = m2snet_configuration(base, model, foreground_maps if lossnet else 0, gpu_memory_gb,
                                  dataset_pixels, encoder, patch_size)
    plans["plans_name"] = plans_name
    plans["configurations"] = {"2d": config}  # M2SNet is 2D; keep data_identifier -> reuse preprocessing
    plans["experiment_planner_used"] = f"m2s-nnunet plan (from {source_plans})"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(plans, indent=4))
    tmp.replace(target)
    return target
