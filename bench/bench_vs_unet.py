"""What does M2SNet cost next to the U-Net nnU-Net would train on the same data? Same plans, same patch, same device.

Compared, at the plans' 2d patch size (and batch size, except on CPU where it defaults to 2):

* nnU-Net's network: ``PlainConvUNet`` built from the plans exactly as ``nnUNetTrainer`` builds it, trained
  with nnU-Net's Dice+CE under deep supervision (``DC_and_CE_loss`` + ``DeepSupervisionWrapper``, configured
  as ``nnUNetTrainer._build_loss`` does), SGD momentum 0.99;
* M2SNet with the default encoder (res2net50d) and a light one (resnet18), built by
  ``M2SNetTrainer.build_network_architecture`` / ``M2SNetTrainer_resnet18.build_network_architecture``, trained
  with Dice+CE + 0.1 LossNet (random VGG16 weights: the cost is the same as with ImageNet ones) and
  with Dice+CE alone; SGD momentum 0.9 with the encoder in its own group, as ``M2SNetTrainer`` does.

Measured: training iterations/s (forward + loss + backward + gradient clipping + SGD step, random data already
on the device: data loading and augmentation are *not* included), inference time per patch (batch 1, without
and with nnU-Net's test-time mirroring: 4 passes in 2D, 8 in 3D), peak memory, parameters, GMACs and the achieved
GFLOP/s as a fraction of a measured matrix-product peak. On CUDA both train and infer under fp16 autocast
with a GradScaler, as nnU-Net does. Timings are interleaved (U-Net, M2SNet, U-Net, ...) in one process;
peak memory is measured in a fresh process per model (a process-lifetime peak cannot be split otherwise).

``--trainers NAME ...`` adds M2SNet as a trainer class builds and trains it (network, side heads, loss and
optimiser from its resolved settings, e.g. ``M2SNetTrainer_scratch``, or an ablation row of
``bench/trainers/accuracy_trainers.py`` such as ``M2SAbl_DS_bench``).

Plans: ``--plans nnUNet_preprocessed/DatasetXXX/nnUNetPlans.json`` (its dataset.json is read from the same
folder), or by default nnU-Net's own planner (``nnUNetv2_plan_experiment``) run on a synthetic fingerprint of
``--num-images`` RGB images of ``--image-size`` (default 1000 x 352x352, a Kvasir-like polyp set).

    python bench/bench_vs_unet.py --device cpu --out bench/out/vs_unet.md --json bench/out/vs_unet.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from benchlib import (
    conv_peak_gflops,
    count_flops,
    current_rss_mib,
    describe_device,
    markdown_table,
    matmul_peak_gflops,
    median,
    peak_rss_mib,
    pick_device,
    precision_context,
    time_interleaved,
    write_report,
)
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from m2s_nnunet.complexity import count_parameters
from m2s_nnunet.losses import LossNet, StructureLoss
from m2s_nnunet.network import DEFAULT_ENCODER, LIGHT_ENCODER
from m2s_nnunet.nnunet_env import run_nnunet, work_env
from m2s_nnunet.settings import M2SNetSettings
from m2s_nnunet.training import M2SNetTrainer
from m2s_nnunet.training.loss import SegmentationPlusLossNet
from m2s_nnunet.training.trainer import unwrap

BUILTIN_DATASET_ID = 998


@dataclass(frozen=True)
class Spec:
    """One benchmarked setting; ``net`` names the network object it uses (shared by the LossNet on/off pair)."""

    key: str
    label: str
    net: str
    encoder: str | None = None
    lossnet: bool = False
    trainer: str | None = None  # a trainer class name: network, loss and optimiser as that trainer has them

    @property
    def is_unet(self) -> bool:
        return self.encoder is None and self.trainer is None

    @property
    def loss_label(self) -> str:
        if self.is_unet:
            return "Dice+CE, deep supervision"
        if self.trainer:
            return "as the trainer"
        return "Dice+CE + 0.1 LossNet" if self.lossnet else "Dice+CE"


def make_specs(encoders: list[str], skip_lossnet: bool, trainers: list[str] = ()) -> tuple[list[Spec], list[Spec]]:
    train = [Spec("unet", "nnU-Net U-Net", "unet")]
    infer = [Spec("unet", "nnU-Net U-Net", "unet")]
    for enc in encoders:
        if not skip_lossnet:
            train.append(Spec(f"m2s_{enc}_lossnet", f"M2SNet {enc}", f"m2s_{enc}", enc, True))
        train.append(Spec(f"m2s_{enc}", f"M2SNet {enc}", f"m2s_{enc}", enc, False))
        infer.append(Spec(f"m2s_{enc}", f"M2SNet {enc}", f"m2s_{enc}", enc, False))
    for name in trainers:
        spec = Spec(f"tr_{name}", name, f"tr_{name}", trainer=name)
        train.append(spec)
        infer.append(spec)
    return train, infer


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plans", type=Path, default=None, help="an nnUNetPlans.json (default: plan a synthetic dataset)")
    p.add_argument("--dataset-json", type=Path, default=None, help="default: dataset.json next to --plans")
    p.add_argument("--configuration", default="2d", help="plans configuration (default: %(default)s)")
    p.add_argument("--image-size", type=int, nargs=2, default=[352, 352], metavar=("H", "W"),
                   help="built-in plans: image size of the synthetic fingerprint (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=1000, help="built-in plans: number of images (default: 1000)")
    p.add_argument("--channels", type=int, default=3, help="built-in plans: image channels (default: 3, RGB)")
    p.add_argument("--classes", type=int, default=2, help="built-in plans: labels incl. background (default: 2)")
    p.add_argument("--save-plans", type=Path, default=None, metavar="DIR",
                   help="built-in plans: keep nnUNetPlans.json + dataset.json in DIR (reuse them with --plans)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available, else cpu")
    p.add_argument("--batch", type=int, default=None, help="training batch (default: the plans' on CUDA, 2 on CPU)")
    p.add_argument("--encoders", nargs="+", default=[DEFAULT_ENCODER, LIGHT_ENCODER],
                   help="M2SNet encoders (default: %(default)s)")
    p.add_argument("--skip-lossnet", action="store_true", help="do not time M2SNet with LossNet")
    p.add_argument("--trainers", nargs="+", default=[],
                   help="also time M2SNet as these trainer classes build and train it (e.g. M2SNetTrainer_scratch)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per setting (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed calls, median reported (default: 5)")
    p.add_argument("--memory", choices=("subprocess", "none"), default="subprocess",
                   help="peak memory: one fresh process per model and mode (default), or skip")
    p.add_argument("--memory-steps", type=int, default=2, help="calls per memory probe (default: %(default)s)")
    p.add_argument("--no-amp", action="store_true", help="CUDA: fp32 instead of nnU-Net's fp16 autocast")
    p.add_argument("--matmul-n", type=int, default=None, help="matmul peak size (default: 2048 CPU, 8192 CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--out", type=Path, default=None, help="also write the Markdown tables here")
    p.add_argument("--json", type=Path, default=None, help="write all numbers and samples here")
    # internal: a memory probe (one model, one mode) run in a fresh process by the main run
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    p.add_argument("--probe-mode", choices=("train", "infer"), default="train", help=argparse.SUPPRESS)
    return p.parse_args(argv)


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
def m2s_trainer_class(encoder: str) -> type[M2SNetTrainer]:
    """The paper's network with this encoder (the from-scratch recipe never replaces it here; see --trainers)."""
    # no ImageNet start: speed does not depend on it, and it would refuse inputs that are not RGB
    return type(f"M2SNetTrainer_{encoder}_paper", (M2SNetTrainer,),
                {"encoder": encoder, "recipe": False, "pretrained_encoder": False})


def trainer_settings(spec: Spec, s: Setup) -> M2SNetSettings:
    return trainer_class(spec.trainer).m2snet_settings(s.config, s.num_inputs)


def build_network(spec: Spec, s: Setup) -> nn.Module:
    if spec.is_unet:
        net = nnUNetTrainer.build_network_architecture(s.plans_manager, s.config, s.num_inputs, s.num_outputs,
                                                       enable_deep_supervision=True)
    elif spec.trainer:
        net = trainer_class(spec.trainer).build_network_architecture(
            s.plans_manager, s.config, s.num_inputs, s.num_outputs, enable_deep_supervision=True)
    else:
        net = m2s_trainer_class(spec.encoder).build_network_architecture(
            s.plans_manager, s.config, s.num_inputs, s.num_outputs, enable_deep_supervision=False)
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
    if spec.trainer:  # as M2SNetTrainer._build_loss
        settings = trainer_settings(spec, s)
        if settings.seg_loss == "structure":
            seg = StructureLoss()
        if settings.side_heads:
            weights = np.array([1 / 2**i for i in range(4)])
            seg = DeepSupervisionWrapper(seg, weights / weights.sum())
        lossnet = LossNet(pretrained=False, size=settings.lossnet_size) if settings.uses_lossnet else None
        return SegmentationPlusLossNet(seg, lossnet, settings.lossnet_weight,
                                       max_slices=settings.lossnet_slices).to(s.device)
    # random VGG16: timing only; sides above 224 resized down to it, as M2SNetTrainer._build_loss does
    lossnet = LossNet(pretrained=False) if spec.lossnet else None
    return SegmentationPlusLossNet(seg, lossnet, 0.1 if spec.lossnet else 0.0).to(s.device)


def build_optimizer(spec: Spec, net: nn.Module, s: Setup) -> torch.optim.Optimizer:
    if spec.is_unet or (spec.trainer and trainer_settings(spec, s).optimizer_recipe == "nnunet"):
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


def infer(net: nn.Module, x: torch.Tensor, s: Setup, tta: bool) -> torch.Tensor:
    """One patch as nnU-Net's predictor runs it: eval, no deep supervision, optional mirroring over every
    spatial axis (4 passes in 2D, 8 in 3D)."""
    set_unet_deep_supervision(net, False)
    net.eval()
    spatial = range(2, x.dim())
    flips = [c for n in range(1, len(spatial) + 1) for c in itertools.combinations(spatial, n)]
    with torch.inference_mode(), precision_context(s.device, s.amp):
        out = net(x)
        if tta:
            for axes in flips:
                out = out + torch.flip(net(torch.flip(x, axes)), axes)
            out = out / (len(flips) + 1)
    return out


# ---------------------------------------------------------------------------------------------- memory probes
def run_probe(args: argparse.Namespace) -> int:
    """Child process: build one model, run a few calls, print its peak memory as the last line (JSON)."""
    device = pick_device(args.device)
    dataset_json = args.dataset_json or args.plans.parent / "dataset.json"
    s = load_setup(args.plans, dataset_json, args.configuration, args.batch, device, not args.no_amp)
    if device.type == "cuda":
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats(device)
    baseline = current_rss_mib()
    train_specs, infer_specs = make_specs(["plans"] if len(s.patch) == 3 else args.encoders, args.skip_lossnet,
                                          args.trainers)
    spec = next(sp for sp in (train_specs if args.probe_mode == "train" else infer_specs) if sp.key == args.probe)
    net = build_network(spec, s)
    if args.probe_mode == "train":
        case = TrainCase(spec, s, net, build_optimizer(spec, net, s))
        for _ in range(args.memory_steps):
            case.step()
    else:
        x = make_batch(spec, s, 1)[0]
        for _ in range(args.memory_steps):
            infer(net, x, s, tta=True)
    result = {"baseline_rss_mib": baseline, "peak_rss_mib": peak_rss_mib()}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps(result))
    return 0


def probe_memory(args: argparse.Namespace, plans: Path, dataset_json: Path, key: str, mode: str,
                 batch: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", key, "--probe-mode", mode,
           "--plans", str(plans), "--dataset-json", str(dataset_json), "--configuration", args.configuration,
           "--batch", str(batch), "--memory-steps", str(args.memory_steps), "--encoders", *args.encoders,
           "--device", args.device] + (["--trainers", *args.trainers] if args.trainers else [])
    if args.no_amp:
        cmd.append("--no-amp")
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-2000:]
        print(f"  memory probe {key}/{mode} failed ({proc.returncode}):\n{tail}", file=sys.stderr)
        return {}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["delta_rss_mib"] = result["peak_rss_mib"] - result["baseline_rss_mib"]
    return result


def memory_value(m: dict, device: torch.device) -> float | None:
    """The number ratios use: CUDA peak allocated, or the RSS peak above the post-import baseline on CPU."""
    if not m:
        return None
    return m.get("cuda_peak_mib") if device.type == "cuda" else m.get("delta_rss_mib")


def memory_cell(m: dict, device: torch.device) -> str:
    if not m:
        return "-"
    if device.type == "cuda":
        return f"{m['cuda_peak_mib']:.0f}"
    return f"{m['peak_rss_mib']:.0f} (+{m['delta_rss_mib']:.0f})"


# ---------------------------------------------------------------------------------------------- main run
def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def run(args: argparse.Namespace, plans: Path, dataset_json: Path, plans_note: str) -> tuple[str, dict]:
    device = pick_device(args.device)
    args.device = device.type
    amp = not args.no_amp and device.type == "cuda"
    s = load_setup(plans, dataset_json, args.configuration, args.batch, device, amp)
    if len(s.patch) == 3:  # 3D M2SNet always uses the plans-built residual encoder (no timm backbone)
        args.encoders = ["plans"]
    train_specs, infer_specs = make_specs(args.encoders, args.skip_lossnet, args.trainers)
    torch.manual_seed(0)

    print(f"building {len(infer_specs)} networks at patch {s.patch}, batch {s.batch} on {device} ...", flush=True)
    nets = {spec.net: build_network(spec, s) for spec in infer_specs}
    optimizers = {spec.net: build_optimizer(spec, nets[spec.net], s) for spec in infer_specs}
    cases = {spec.key: TrainCase(spec, s, nets[spec.net], optimizers[spec.net]) for spec in train_specs}
    x1 = make_batch(infer_specs[0], s, 1)[0]

    info: dict[str, dict] = {}
    for spec in infer_specs:
        net = nets[spec.net]
        set_unet_deep_supervision(net, False)
        net.eval()
        with torch.no_grad():
            fwd_flops = count_flops(partial(net, x1))
        info[spec.net] = {"params_m": count_parameters(net)["total"] / 1e6, "gmacs_fwd": fwd_flops / 2e9,
                          "infer_flops": fwd_flops, "infer_tta_flops": count_flops(partial(infer, net, x1, s, True))}
    print("counting training FLOPs (one step each) ...", flush=True)
    train_flops = {key: count_flops(case.step) for key, case in cases.items()}

    print(f"timing {len(cases)} training settings, interleaved ({args.warmup} warm-up, {args.repeats} repeats) ...",
          flush=True)
    train_samples = time_interleaved({k: c.step for k, c in cases.items()}, device, args.warmup, args.repeats)
    print("timing inference, interleaved ...", flush=True)
    infer_fns = {}
    for spec in infer_specs:
        infer_fns[f"{spec.net}/plain"] = partial(infer, nets[spec.net], x1, s, False)
        infer_fns[f"{spec.net}/tta"] = partial(infer, nets[spec.net], x1, s, True)
    infer_samples = time_interleaved(infer_fns, device, args.warmup, args.repeats)

    n = args.matmul_n or (8192 if device.type == "cuda" else 2048)
    peak_dtype = torch.float16 if amp else torch.float32
    print(f"matmul peak ({n}^3, {str(peak_dtype).removeprefix('torch.')}) ...", flush=True)
    peak = matmul_peak_gflops(device, n, peak_dtype)
    conv_peak = conv_peak_gflops(device, peak_dtype)
    del cases, nets, optimizers

    memory: dict[str, dict] = {}
    if args.memory == "subprocess":
        for spec in train_specs:
            print(f"memory probe: {spec.key} training ...", flush=True)
            memory[f"{spec.key}/train"] = probe_memory(args, plans, dataset_json, spec.key, "train", s.batch)
        for spec in infer_specs:
            print(f"memory probe: {spec.key} inference ...", flush=True)
            memory[f"{spec.key}/infer"] = probe_memory(args, plans, dataset_json, spec.key, "infer", 1)

    # ---- tables
    train_rows, train_data = [], {}
    for spec in train_specs:
        t = median(train_samples[spec.key])
        gflops = train_flops[spec.key] / t / 1e9
        mem = memory.get(f"{spec.key}/train", {})
        train_rows.append([spec.label, spec.loss_label, info[spec.net]["params_m"], info[spec.net]["gmacs_fwd"], t,
                           1 / t, s.batch / t, gflops, 100 * gflops / peak, 100 * gflops / conv_peak,
                           memory_cell(mem, device)])
        train_data[spec.key] = {"step_s": t, "it_per_s": 1 / t, "img_per_s": s.batch / t,
                                "flops_per_step": train_flops[spec.key], "gflops_per_s": gflops,
                                "memory": mem, "samples_s": train_samples[spec.key]}
    infer_rows, infer_data = [], {}
    for spec in infer_specs:
        plain, tta = median(infer_samples[f"{spec.net}/plain"]), median(infer_samples[f"{spec.net}/tta"])
        gflops = info[spec.net]["infer_flops"] / plain / 1e9
        mem = memory.get(f"{spec.key}/infer", {})
        infer_rows.append([spec.label, plain * 1e3, tta * 1e3, gflops, 100 * gflops / peak, 100 * gflops / conv_peak,
                           memory_cell(mem, device)])
        infer_data[spec.key] = {"ms_per_patch": plain * 1e3, "ms_per_patch_tta": tta * 1e3, "gflops_per_s": gflops,
                                "memory": mem, "samples_s": {"plain": infer_samples[f"{spec.net}/plain"],
                                                             "tta": infer_samples[f"{spec.net}/tta"]}}
    ratio_rows = []
    unet_train, unet_infer = train_data["unet"], infer_data["unet"]
    for spec in train_specs[1:]:
        tr, inf = train_data[spec.key], infer_data[spec.net]
        ratio_rows.append([
            f"{spec.label} ({spec.loss_label})",
            ratio(tr["it_per_s"], unet_train["it_per_s"]),
            ratio(memory_value(tr["memory"], device), memory_value(unet_train["memory"], device)),
            ratio(inf["ms_per_patch"], unet_infer["ms_per_patch"]),
            ratio(inf["ms_per_patch_tta"], unet_infer["ms_per_patch_tta"]),
            ratio(memory_value(inf["memory"], device), memory_value(unet_infer["memory"], device)),
        ])

    mem_head = "peak allocated MiB" if device.type == "cuda" else "peak RSS MiB (+ over imports)"
    precision = "fp16 autocast + GradScaler (as nnU-Net on CUDA)" if amp else "fp32"
    md = [
        "# nnU-Net's U-Net vs M2SNet at the same plans",
        "",
        f"- plans: {plans_note}",
        f"- configuration '{args.configuration}': patch {list(s.patch)}, plans batch {s.config.batch_size}; "
        f"training batch used here: {s.batch}"
        + ("" if s.batch == s.config.batch_size else " (CPU default 2 keeps the run short; --batch to change)"),
        f"- device: {describe_device(device)}; precision {precision}",
        f"- matmul peak: {peak:.1f} GFLOP/s ({n}x{n}x{n} {str(peak_dtype).removeprefix('torch.')} torch.mm); "
        f"conv reference: {conv_peak:.1f} GFLOP/s (256->256 3x3 conv at 56x56)"
        + (" - above the matmul peak: this BLAS does not reach the device's peak, read '% of conv ref'"
           if conv_peak > peak else ""),
        f"- warm-up {args.warmup}, median of {args.repeats} interleaved repeats; random data already on the device "
        "(no data loading / augmentation)",
        "",
        "## Training iteration (forward + loss + backward + clip_grad_norm + SGD step)",
        "",
        markdown_table(["network", "loss", "params (M)", "GMACs/patch (fwd)", "s/iter", "it/s", "img/s",
                        "GFLOP/s", "% of matmul peak", "% of conv ref", mem_head], train_rows),
        "",
        "## Inference (one patch, batch 1, eval mode)",
        "",
        markdown_table(["network", "ms/patch", "ms/patch with TTA (all flips)", "GFLOP/s (no TTA)",
                        "% of matmul peak", "% of conv ref", mem_head + ", with TTA"], infer_rows),
        "",
        "## Ratios M2SNet / U-Net",
        "",
        markdown_table(["M2SNet setting", "training it/s", "training peak memory", "inference time",
                        "inference time with TTA", "inference peak memory"], ratio_rows),
        "",
        "- training it/s ratio < 1: M2SNet trains slower than the U-Net; time and memory ratios > 1: M2SNet "
        "costs more.",
        "- GMACs: multiply-accumulates of one forward pass of one patch (PyTorch FlopCounterMode / 2: convolutions "
        "and matrix products only). GFLOP/s: FLOPs counted the same way over a whole training step (backward and "
        "LossNet's VGG16 included) / measured time; the rest (norms, activations, resizes, optimizer) is "
        "memory-bound work that this count leaves out.",
        "- LossNet uses random VGG16 weights here (LossNet(pretrained=False)): a timing only; the cost does not "
        "depend on the weights.",
        "- U-Net loss: nnU-Net's own DC_and_CE_loss + DeepSupervisionWrapper, configured as nnUNetTrainer does; "
        "M2SNet: the same Dice+CE on its single output (+ 0.1 LossNet), as M2SNetTrainer does.",
    ]
    if device.type == "cuda":
        md.append("- memory: torch.cuda.max_memory_allocated of a fresh process running only that model "
                  f"({args.memory_steps} calls; weights, optimizer state and activations); ratios use it.")
    elif memory:
        md.append("- memory: peak RSS (VmHWM) of a fresh process running only that model for "
                  f"{args.memory_steps} calls; '+' is the rise over the same process after imports (Python, torch, "
                  "nnU-Net), which the ratios use. Inference memory is with TTA.")
    data = {"plans": str(plans), "plans_note": plans_note, "configuration": args.configuration, "patch": s.patch,
            "batch": s.batch, "plans_batch": s.config.batch_size, "device": describe_device(device),
            "precision": precision, "matmul_peak_gflops": peak,
            "conv_reference_gflops": conv_peak, "networks": info, "train": train_data,
            "inference": infer_data, "args": vars(args)}
    return "\n".join(md), data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:
        return run_probe(args)
    if args.plans is not None:
        plans = args.plans.resolve()
        if not plans.is_file():
            raise SystemExit(f"--plans {plans} does not exist")
        dataset_json = (args.dataset_json or plans.parent / "dataset.json").resolve()
        if not dataset_json.is_file():
            raise SystemExit(f"{dataset_json} not found; pass --dataset-json")
        md, data = run(args, plans, dataset_json, str(plans))
        write_report(md, data, args.out, args.json)
        return 0
    with tempfile.TemporaryDirectory(prefix="m2s_bench_plans_") as tmp:
        size = tuple(args.image_size)
        print(f"planning with nnU-Net's ExperimentPlanner for {args.num_images} images of {size[0]}x{size[1]} ...",
              flush=True)
        plans = make_builtin_plans(Path(tmp), size, args.num_images, args.channels, args.classes,
                                   Path(tmp) / "plan_experiment.log")
        if args.save_plans:
            args.save_plans.mkdir(parents=True, exist_ok=True)
            for name in (plans.name, "dataset.json"):
                shutil.copyfile(plans.parent / name, args.save_plans / name)
        note = (f"nnU-Net's default ExperimentPlanner (nnUNetv2_plan_experiment) for a synthetic fingerprint of "
                f"{args.num_images} {'RGB' if args.channels == 3 else f'{args.channels}-channel'} images of "
                f"{size[0]}x{size[1]}")
        md, data = run(args, plans, plans.parent / "dataset.json", note)
    write_report(md, data, args.out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
