"""The training step every speed script times: nnU-Net's U-Net and M2SNet on the same plans, as the trainers build them.

* nnU-Net's network: ``PlainConvUNet`` built from the plans exactly as ``nnUNetTrainer`` builds it, trained with
  nnU-Net's Dice+CE under deep supervision (``DC_and_CE_loss`` + ``DeepSupervisionWrapper``, configured as
  ``nnUNetTrainer._build_loss`` does), SGD momentum 0.99;
* M2SNet as a trainer class builds and trains it (``Spec.trainer``: network, side heads, loss and optimiser from
  its resolved settings, e.g. ``M2SNetTrainer_scratch``, an ablation row of ``bench/trainers/accuracy_trainers.py``
  or a variant made with ``register_trainer``). LossNet uses random VGG16 weights: its cost does not depend on
  them.

``TrainCase.step`` is one iteration of ``nnUNetTrainer.train_step`` without data loading: forward, loss,
backward, gradient clipping, SGD step; on CUDA under fp16 autocast with a GradScaler, as nnU-Net trains.
Plans come from a real ``nnUNetPlans.json`` or from nnU-Net's own planner run on a synthetic fingerprint
(``make_synthetic_plans``). ``speed_table.py``, ``profile_step.py`` and ``gpu_check.py`` import this module.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from benchlib import precision_context
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from m2s_nnunet.cpu_bf16 import network_uses_cpu_bf16
from m2s_nnunet.losses import LossNet, StructureLoss
from m2s_nnunet.nnunet_env import run_nnunet, work_env
from m2s_nnunet.settings import M2SNetSettings
from m2s_nnunet.training import M2SNetTrainer
from m2s_nnunet.training.loss import SegmentationPlusLossNet
from m2s_nnunet.training.trainer import unwrap

BUILTIN_DATASET_ID = 998


@dataclass(frozen=True)
class Spec:
    """One timed network: nnU-Net's U-Net (no ``trainer``), or M2SNet with the network, loss and optimiser of
    that trainer class."""

    key: str
    trainer: str | None = None

    @property
    def is_unet(self) -> bool:
        return self.trainer is None


def register_trainer(name: str, base: type[M2SNetTrainer] = M2SNetTrainer, **attrs) -> str:
    """A trainer variant made for a benchmark (e.g. the paper's network without LossNet), registered where
    ``trainer_class`` finds it; returns its name."""
    import m2s_nnunet.training as training

    if not hasattr(training, name):
        setattr(training, name, type(name, (base,), attrs))
    return name


def trainer_class(name: str) -> type[M2SNetTrainer]:
    """An M2SNet trainer class of the package, or of bench/trainers/accuracy_trainers.py (ablation rows)."""
    import m2s_nnunet.training as training

    if hasattr(training, name):
        return getattr(training, name)
    sys.path.insert(0, str(Path(__file__).resolve().parent / "trainers"))
    import accuracy_trainers

    cls = accuracy_trainers.BENCH_TRAINERS.get(name)
    if cls is None or not issubclass(cls, M2SNetTrainer):
        raise SystemExit(f"--trainers: '{name}' is not an M2SNet trainer of m2s_nnunet.training or "
                         "bench/trainers/accuracy_trainers.py")
    return cls


# ---------------------------------------------------------------------------------------------- plans
def make_builtin_plans(work: Path, size: tuple[int, int], n_images: int, channels: int, classes: int,
                       log: Path) -> Path:
    """nnU-Net's plans for ``n_images`` natural images (PNG) of ``size``; see ``make_synthetic_plans``."""
    channel_names = {"0": "R", "1": "G", "2": "B"} if channels == 3 else {str(i): "grey" for i in range(channels)}
    return make_synthetic_plans(work, (1, *size), (999.0, 1.0, 1.0), n_images, channel_names, classes, log)


def make_synthetic_plans(work: Path, shape: tuple[int, int, int], spacing: tuple[float, float, float],
                         n_images: int, channel_names: dict[str, str], classes: int, log: Path) -> Path:
    """Run nnU-Net's ExperimentPlanner on a synthetic fingerprint: the plans nnU-Net would make for such a dataset.

    The planner only reads the fingerprint (shapes, spacings, intensities) and one example file for the reader
    choice, so one tiny file and a written fingerprint give the same plans as the real dataset would. A first
    axis of 1 with spacing 999 is a 2D dataset (PNG files), anything else 3D (NIfTI files).
    """
    env = work_env(work)
    name = f"Dataset{BUILTIN_DATASET_ID}_BenchPlans"
    raw = Path(env["nnUNet_raw"]) / name
    pre = Path(env["nnUNet_preprocessed"]) / name
    for folder in (raw / "imagesTr", raw / "labelsTr", pre):
        folder.mkdir(parents=True, exist_ok=True)
    is_2d = shape[0] == 1 and spacing[0] == 999.0
    if is_2d:
        from PIL import Image

        rgb = list(channel_names.values()) == ["R", "G", "B"]
        Image.fromarray(np.zeros((32, 32, 3) if rgb else (32, 32), dtype=np.uint8)).save(
            raw / "imagesTr" / "case_000_0000.png")
        Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(raw / "labelsTr" / "case_000.png")
        file_ending, reader = ".png", {"overwrite_image_reader_writer": "NaturalImage2DIO"}
    else:
        import SimpleITK as sitk

        for folder, fname in ((raw / "imagesTr", "case_000_0000.nii.gz"), (raw / "labelsTr", "case_000.nii.gz")):
            image = sitk.GetImageFromArray(np.zeros((8, 8, 8), dtype=np.int16))
            image.SetSpacing(tuple(float(v) for v in reversed(spacing)))
            sitk.WriteImage(image, str(folder / fname))
        file_ending, reader = ".nii.gz", {}
    labels = {"background": 0} | {f"class_{i}": i for i in range(1, classes)}
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": channel_names, "labels": labels, "numTraining": n_images, "file_ending": file_ending,
        **reader}, indent=2))
    stats = {"mean": 110.0, "median": 105.0, "std": 60.0, "min": 0.0, "max": 255.0,
             "percentile_99_5": 250.0, "percentile_00_5": 2.0}
    fingerprint = {
        "spacings": [list(spacing)] * n_images,
        "shapes_after_crop": [list(shape)] * n_images,
        "foreground_intensity_properties_per_channel": {str(i): stats for i in range(len(channel_names))},
        "median_relative_size_after_cropping": 1.0,
    }
    (pre / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))
    run_nnunet("nnUNetv2_plan_experiment", ["-d", str(BUILTIN_DATASET_ID)], env, log, quiet=True)
    return pre / "nnUNetPlans.json"


@dataclass
class Setup:
    plans_manager: PlansManager
    config: ConfigurationManager
    dataset_json: dict
    num_inputs: int
    num_outputs: int
    patch: tuple[int, ...]
    batch: int
    device: torch.device
    amp: bool


def load_setup(plans_path: Path, dataset_json_path: Path, configuration: str, batch: int | None,
               device: torch.device, amp: bool) -> Setup:
    plans = json.loads(plans_path.read_text())
    dataset_json = json.loads(dataset_json_path.read_text())
    pm = PlansManager(plans)
    cm = pm.get_configuration(configuration)
    lm = pm.get_label_manager(dataset_json)
    if lm.has_regions:
        raise SystemExit("region-based datasets are not supported by this benchmark (the loss differs)")
    num_inputs = len(dataset_json.get("channel_names", dataset_json.get("modality", {})))
    default_batch = cm.batch_size if device.type == "cuda" else 2
    return Setup(pm, cm, dataset_json, num_inputs, lm.num_segmentation_heads, tuple(cm.patch_size),
                 batch or default_batch, device, amp)


# ---------------------------------------------------------------------------------------------- models
def trainer_settings(spec: Spec, s: Setup) -> M2SNetSettings:
    return trainer_class(spec.trainer).m2snet_settings(s.config, s.num_inputs)


def build_network(spec: Spec, s: Setup) -> nn.Module:
    cls = nnUNetTrainer if spec.is_unet else trainer_class(spec.trainer)
    net = cls.build_network_architecture(s.plans_manager, s.config, s.num_inputs, s.num_outputs,
                                         enable_deep_supervision=True)
    if not spec.is_unet:  # bf16 as a training run sets it (plans without a trainer's record build fp32)
        net.cpu_bf16 = net.cpu_bf16_eval = network_uses_cpu_bf16(trainer_settings(spec, s).cpu_bf16)
    return net.to(s.device)


def set_unet_deep_supervision(net: nn.Module, enabled: bool) -> None:
    """Deep supervision on or off: the U-Net's decoder flag, or M2SNet's side heads where it has them."""
    net = unwrap(net)
    decoder = getattr(net, "decoder", None)
    if decoder is not None and hasattr(decoder, "deep_supervision"):
        decoder.deep_supervision = enabled
    elif getattr(net, "has_side_heads", False):
        net.deep_supervision = enabled


def deep_supervision_sizes(s: Setup) -> list[tuple[int, ...]]:
    """Target sizes per output, from the plans' pooling as nnUNetTrainer._get_deep_supervision_scales does."""
    scales = 1 / np.cumprod(np.vstack(s.config.pool_op_kernel_sizes), axis=0)[:-1]
    return [tuple(int(round(p * f)) for p, f in zip(s.patch, scale)) for scale in scales]


def build_loss(spec: Spec, s: Setup) -> nn.Module:
    seg = DC_and_CE_loss({"batch_dice": s.config.batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                         weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    if spec.is_unet:
        weights = np.array([1 / 2**i for i in range(len(deep_supervision_sizes(s)))])
        weights[-1] = 0
        return DeepSupervisionWrapper(seg, weights / weights.sum())
    settings = trainer_settings(spec, s)  # as M2SNetTrainer._build_loss, with random VGG16 weights
    if settings.seg_loss == "structure":
        seg = StructureLoss()
    if settings.side_heads:
        weights = np.array([1 / 2**i for i in range(4)])
        seg = DeepSupervisionWrapper(seg, weights / weights.sum())
    lossnet = LossNet(pretrained=False, size=settings.lossnet_size) if settings.uses_lossnet else None
    return SegmentationPlusLossNet(seg, lossnet, settings.lossnet_weight,
                                   max_slices=settings.lossnet_slices).to(s.device)


def build_optimizer(spec: Spec, net: nn.Module, s: Setup) -> torch.optim.Optimizer:
    if spec.is_unet or trainer_settings(spec, s).optimizer_recipe == "nnunet":
        return torch.optim.SGD(net.parameters(), 1e-2, momentum=0.99, weight_decay=3e-5, nesterov=True)
    encoder = {id(p) for p in net.encoder.parameters()}
    groups = [{"params": [p for p in net.parameters() if id(p) not in encoder]},
              {"params": list(net.encoder.parameters()), "lr": 5e-3}]
    return torch.optim.SGD(groups, 5e-2, momentum=0.9, weight_decay=5e-4, nesterov=True)


def make_batch(spec: Spec, s: Setup, batch: int) -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor]]:
    """Random images and label maps on the device (nnU-Net feeds float label maps of shape (B, 1, H, W))."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, s.num_inputs, *s.patch, generator=g).to(s.device)
    y = torch.randint(0, s.num_outputs, (batch, 1, *s.patch), generator=g).float().to(s.device)
    if spec.trainer and trainer_settings(spec, s).side_heads:  # M2SNet's side heads: full, O2, O3, O4 sizes
        net = trainer_class(spec.trainer).build_network_architecture(s.plans_manager, s.config, s.num_inputs,
                                                                     s.num_outputs, enable_deep_supervision=True)
        sizes = [s.patch] + [tuple(round(p * f) for p, f in zip(s.patch, sc)) for sc in net.side_head_scales]
        return x, [y if size == s.patch else F.interpolate(y, size=size, mode="nearest") for size in sizes]
    if not spec.is_unet:
        return x, y
    return x, [y if size == s.patch else F.interpolate(y, size=size, mode="nearest")
               for size in deep_supervision_sizes(s)]


class TrainCase:
    """One training setting; ``step()`` is one nnU-Net-style iteration (nnUNetTrainer.train_step without I/O)."""

    def __init__(self, spec: Spec, s: Setup, net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.spec, self.s, self.net, self.optimizer = spec, s, net, optimizer
        self.loss = build_loss(spec, s)
        self.x, self.y = make_batch(spec, s, s.batch)
        use_scaler = s.amp and s.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    def step(self, precision=None) -> float:
        """One iteration; returns the loss. ``precision``: a context to run forward + loss in (default: the
        setup's, nnU-Net's fp16 autocast on CUDA)."""
        set_unet_deep_supervision(self.net, True)
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        with precision if precision is not None else precision_context(self.s.device, self.s.amp):
            loss = self.loss(self.net(self.x), self.y)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 12)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 12)
            self.optimizer.step()
        if isinstance(self.loss, SegmentationPlusLossNet):
            self.loss.pop_running_means()
        return float(loss.detach())
