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

import numpy as np

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


def _reference_configuration(configuration: dict, encoder: str) -> tuple[dict, list[int]]:
    """A small patch the network accepts: 128 px per axis for timm encoders, twice the total stride in 3D."""
    from m2s_nnunet.network.from_plans import uses_timm_encoder

    if uses_timm_encoder(configuration, encoder):
        reference = [128, 128]
    else:
        strides = np.prod(np.array(configuration["architecture"]["arch_kwargs"]["strides"]), axis=0)
        reference = [int(2 * s) for s in strides]
    return {**configuration, "patch_size": reference}, reference


def measure_memory_model(configuration: dict, in_channels: int, num_classes: int, encoder: str, width: int = 64,
                         lossnet: bool = True) -> MemoryModel:
    """Measure M2SNet's (and LossNet's) saved activations on CPU at a small patch and scale them per voxel."""
    import torch

    from m2s_nnunet.losses import LossNet
    from m2s_nnunet.network.from_plans import build_m2snet
    from m2s_nnunet.training.loss import SegmentationPlusLossNet

    torch.manual_seed(0)
    small, reference = _reference_configuration(configuration, encoder)
    net = build_m2snet(small, in_channels, num_classes, encoder, width).train()
    x = torch.randn(1, in_channels, *reference)
    per_voxel = _saved_tensor_bytes(net, (x,)) / math.prod(reference)
    params = sum(p.numel() for p in net.parameters())
    static = params * 4 * 4 + CONTEXT_BYTES  # weights, gradients, momentum, fp16 copies
    lossnet_bytes = 0.0
    if lossnet:
        vgg = LossNet(pretrained=False)
        side = vgg.size  # the largest map VGG16 sees (smaller patches cost less: an upper bound)
        pred = torch.rand(1, 1, side, side, requires_grad=True)
        slices = SegmentationPlusLossNet.max_slices if len(reference) == 3 else 1
        lossnet_bytes = float(_saved_tensor_bytes(vgg, (pred, torch.rand(1, 1, side, side)))) * slices
        static += sum(b.numel() for b in vgg.parameters()) * 4
    return MemoryModel(static, per_voxel, lossnet_bytes)


def round_up(value: int, multiple: int = STRIDE) -> int:
    return max(multiple, int(math.ceil(value / multiple) * multiple))


def patch_multiples(configuration: dict, encoder: str) -> list[int]:
    """What each patch axis must be a multiple of.

    The plans' total stride for nnU-Net's residual encoder (3D, and the from-scratch recipe in 2D). A 2D
    configuration planned for a timm encoder must also suit that encoder (32), so it gets the least common
    multiple of both: the same plans then work for ``M2SNetTrainer`` and for ``M2SNetTrainer_scratch``.
    """
    from m2s_nnunet.network.from_plans import uses_timm_encoder

    arch = configuration.get("architecture", {}).get("arch_kwargs", {})
    plans_stride = [int(s) for s in np.prod(np.array(arch["strides"]), axis=0)] if "strides" in arch else None
    if not uses_timm_encoder(configuration, encoder):
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
                         dataset_pixels: float, encoder: str, patch_size: list[int] | None = None,
                         width: int | None = None, pin_encoder: bool = False) -> dict:
    """An M2SNet configuration derived from nnU-Net's configuration ``base`` (2D or 3D)."""
    multiples = patch_multiples(base, encoder)
    patch = [round_up(p, m) for p, m in zip(patch_size or base["patch_size"], multiples)]
    # Shrink the longest axis until two samples fit, as nnU-Net's planner does for its U-Net.
    while model.bytes_for(2, patch, foreground_maps) > gpu_memory_gb * 1e9:
        shrinkable = [i for i, (p, m) in enumerate(zip(patch, multiples)) if p > m]
        if not shrinkable:
            break
        axis = max(shrinkable, key=lambda i: patch[i])
        patch[axis] -= multiples[axis]
    config = dict(base)
    config["patch_size"] = patch
    config["batch_size"] = choose_batch_size(model, patch, foreground_maps, gpu_memory_gb, dataset_pixels)
    config["m2snet"] = {
        # a record of what the sizes were planned for; M2SNetTrainer only reads "encoder"/"width" keys
        "memory_model": {
            "encoder": encoder,
            **({"width": width} if width else {}),
            "gpu_memory_target_gb": gpu_memory_gb,
            "estimated_gb": round(model.bytes_for(config["batch_size"], patch, foreground_maps) / 1e9, 2),
        },
    }
    if pin_encoder:  # only an explicit --encoder overrides the trainer variant's encoder
        config["m2snet"]["encoder"] = encoder
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
    from m2s_nnunet.defaults import DECODER_WIDTH_2D, DECODER_WIDTH_3D, DEFAULT_ENCODER
    from m2s_nnunet.network.from_plans import PLANS_ENCODER

    folder = preprocessed_dataset_folder(dataset)
    source = folder / f"{source_plans}.json"
    if not source.is_file():
        raise RuntimeError(f"{source} not found. Run `nnUNetv2_plan_and_preprocess -d {dataset} -c 2d` first.")
    target = folder / f"{plans_name}.json"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    plans = json.loads(source.read_text())
    dataset_json = json.loads((folder / "dataset.json").read_text())
    in_channels = len(dataset_json["channel_names"])
    labels = dataset_json["labels"]
    region_mode = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values())
    foreground_maps = len(labels) - 1
    heads = foreground_maps if region_mode else len(labels)
    pin_encoder = encoder is not None
    encoder = encoder or DEFAULT_ENCODER
    configurations = {}
    for name, base in plans["configurations"].items():
        if "patch_size" not in base:  # inherits (e.g. 3d_cascade_fullres): follows its re-planned parent
            configurations[name] = base
            continue
        is_2d = len(base["patch_size"]) == 2
        # what M2SNetTrainer builds here: the timm encoder for RGB 2D, the recipe's plans encoder otherwise
        config_encoder = encoder if is_2d and (pin_encoder or in_channels == 3) else PLANS_ENCODER
        width = DECODER_WIDTH_2D if is_2d else DECODER_WIDTH_3D
        model = measure_memory_model(base, in_channels, heads, config_encoder, width, lossnet=lossnet)
        median = base.get("median_image_size_in_voxels", base["patch_size"])
        dataset_pixels = math.prod(median) * int(dataset_json.get("numTraining", 1))
        wanted_patch = patch_size if (patch_size and len(patch_size) == len(base["patch_size"])) else None
        configurations[name] = m2snet_configuration(base, model, foreground_maps if lossnet else 0,
                                                    gpu_memory_gb, dataset_pixels, config_encoder, wanted_patch, width,
                                                    pin_encoder and is_2d)
    if not configurations:
        raise RuntimeError(f"{source} has no configurations; rerun nnUNetv2_plan_and_preprocess")
    plans["plans_name"] = plans_name
    plans["configurations"] = configurations  # data_identifier unchanged -> the preprocessed data is reused
    plans["experiment_planner_used"] = f"m2s-nnunet plan (from {source_plans})"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(plans, indent=4))
    tmp.replace(target)
    return target
