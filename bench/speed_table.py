"""Every row of the speed table of issue 11, measured as M2SNet / U-Net ratios in one process.

Each case builds nnU-Net's own plans for a synthetic fingerprint (``nnUNetv2_plan_experiment``; the planner
only reads shapes, spacings and intensities), the U-Net exactly as ``nnUNetTrainer`` builds it and M2SNet as a
trainer class builds it, and times them interleaved on random data (``steplib.py`` does the building and
the training step: forward, loss, backward, clipping, SGD). It is the one script for speed ratios against the
U-Net (it replaced ``bench_vs_unet.py`` in 0.9.0):

* 2D, 1000 RGB images of 352x352 (nnU-Net plans a 384x384 patch), batch 2: Res2Net-50 M2SNet + 0.1 LossNet
  (``M2SNetTrainer``), with and without LossNet (the LossNet share of the step);
* 2D, 1000 RGB images of 128x128 (patch 128x128), batch 8: the same, LossNet as 0.3.0 ran it (128 px
  maps upsampled to 224 before VGG16), and the from-scratch recipe (``M2SNetTrainer_scratch``), also with
  ``cpu_bf16`` where the CPU computes bf16 natively;
* 3D thick-slice CT (5 x 0.8 x 0.8 mm, 40x128x128 voxels: patch 40x128x128, 6 stages), batch 1, and MSD
  Hippocampus (1 mm, 36x50x35: patch 40x56x40, 4 stages), batch 2: ``M2SNetTrainer`` in 3D (the from-scratch
  recipe + 0.1 LossNet on slices; with 4-stage plans its ``level_mapping: "deeper"`` keeps X2 below the
  full resolution) and, for Hippocampus, the same with ``"last4"`` (X2 on the full-resolution stage,
  the recipe's mapping until 0.5.0), and where the CPU computes bf16 natively the recipe with ``cpu_bf16``; with
  ``--eager-and-compiled`` every network of these 2D and 3D rows but the 2D recipe in bf16 also compiled
  (inductor; the network, not LossNet, as nnU-Net compiles it), timed in the same process;
  for the 128x128 paper model and the Hippocampus recipe (fp32 and bf16), the same network with autograd's
  backward of the subtraction units (as 0.9.0 trained), beside the compact one that keeps int8 gradient factors;
* inference at 128x128 and on the Hippocampus 3D patch (``--cases predictor predictor_3d``) inside nnU-Net's
  predictor (``nnUNetPredictor.predict_sliding_window_return_logits``:
  Gaussian sliding window and test-time mirroring): U-Net, Res2Net-50 M2SNet (2D), M2SNet on the plans encoder,
  and on CPU the same M2SNet as 0.9.0 predicted: with PyTorch's own kernel choice (its oneDNN inference
  convolutions off), and with a filter pass per subtraction-unit input; with ``--eager-and-compiled`` every
  network also compiled, in the same process (what ``nnUNet_compile=t`` gives each), and with ``--freezing``
  compiled with inductor's freezing (weights folded into the program as constants, as
  ``TORCHINDUCTOR_FREEZING=1`` does); the first call of each network is reported beside the median, since it
  holds the compile time;
* with ``--plans``, a dataset's own plans (e.g. a preprocessed folder's ``nnUNetPlans.json``): the U-Net
  against each trainer of ``--trainers`` at ``--configuration`` and ``--batch``.

Throughput ratio = U-Net step time / M2SNet step time (> 1: M2SNet is faster). Activation memory = bytes
of the tensors autograd saves for the backward pass in one training forward (parameters excluded): a
device-independent count of what a step keeps alive, measured in this process. GFLOP/s counts convolutions
and matrix products (PyTorch's FlopCounterMode) over the step, as a share of a measured fp32 matmul peak.

    python bench/speed_table.py --out bench/out/speed_table.md --json bench/out/speed_table.json
    python bench/speed_table.py --quick          # tiny repeats: checks that every row runs (a few minutes)
    python bench/speed_table.py --plans $nnUNet_preprocessed/Dataset004_Hippocampus/nnUNetPlans.json \
        --configuration 3d_fullres --trainers M2SNetTrainer M2SNetTrainer_scratch
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from accuracy import provenance
from benchlib import (
    count_flops,
    describe_device,
    markdown_table,
    matmul_peak_gflops,
    median,
    pick_device,
    time_interleaved,
    time_once,
    write_report,
)
from profile_step import ops_header, profile_calls, profile_steps
from steplib import (
    Setup,
    Spec,
    TrainCase,
    build_network,
    build_optimizer,
    load_setup,
    make_synthetic_plans,
    register_trainer,
    set_unet_deep_supervision,
)
from torch import nn

from m2s_nnunet.complexity import count_parameters
from m2s_nnunet.cpu_bf16 import cpu_computes_bf16
from m2s_nnunet.losses import LossNet
from m2s_nnunet.network.blocks import MultiScaleFilters, set_compact_backward
from m2s_nnunet.training.loss import SegmentationPlusLossNet

RGB = {"0": "R", "1": "G", "2": "B"}


@dataclass(frozen=True)
class PlansCase:
    """A synthetic dataset nnU-Net plans for, the configuration to use and the training batch."""

    name: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    channels: dict[str, str]
    classes: int
    configuration: str
    batch: int


CASES = {
    "2d_352": PlansCase("2D, 1000 RGB images of 352x352", (1, 352, 352), (999.0, 1.0, 1.0), RGB, 2, "2d", 2),
    "2d_128": PlansCase("2D, 1000 RGB images of 128x128", (1, 128, 128), (999.0, 1.0, 1.0), RGB, 2, "2d", 8),
    "3d_ct": PlansCase("3D thick-slice CT, 5x0.8x0.8 mm, 40x128x128 voxels", (40, 128, 128), (5.0, 0.8, 0.8),
                       {"0": "CT"}, 2, "3d_fullres", 1),
    "3d_hippo": PlansCase("3D MSD Hippocampus-like, 1 mm, 36x50x35 voxels", (36, 50, 35), (1.0, 1.0, 1.0),
                          {"0": "MRI"}, 3, "3d_fullres", 2),
}


class UpsamplingLossNet(LossNet):
    """LossNet as 0.3.0 ran it in 2D: every map resized to 224x224, small patches upsampled."""

    def input_size(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.size, self.size)


PAPER = register_trainer("SpeedTable_M2SNet_paper", recipe=False)  # Res2Net-50, 2D, as published
PAPER_NO_LOSSNET = register_trainer("SpeedTable_M2SNet_paper_noLossNet", recipe=False, lossnet_weight=0.0)
DEFAULT_3D = "M2SNetTrainer"  # 3D: the from-scratch recipe + 0.1 LossNet on slices
# the recipe with the full-resolution pyramid of 4-stage plans (the recipe's mapping until 0.5.0)
LAST4_3D = register_trainer("SpeedTable_M2SNet_last4", level_mapping="last4")
# the recipe trained under CPU bf16 autocast (its cpu_bf16 setting): timed where the CPU computes bf16 natively
BF16_3D = register_trainer("SpeedTable_M2SNet_cpu_bf16", cpu_bf16=True)
RECIPE_2D = "M2SNetTrainer_scratch"  # 2D: the from-scratch recipe on the plans encoder, no LossNet
# the same under CPU bf16 autocast: timed where the CPU computes bf16 natively
RECIPE_2D_BF16 = register_trainer("SpeedTable_M2SNet_scratch_cpu_bf16", recipe=True, lossnet_weight=0.0,
                                  cpu_bf16=True)


def activation_bytes(case: TrainCase) -> int:
    """Bytes autograd saves for backward in one training forward + loss (parameters and buffers excluded)."""
    owned = {p.data_ptr() for m in (case.net, case.loss) for p in [*m.parameters(), *m.buffers()]}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in owned:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    set_unet_deep_supervision(case.net, True)
    case.net.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = case.loss(case.net(case.x), case.y)
    del loss
    return sum(seen.values())


def autograd_difference_cases(s: Setup, trainers: list[str]) -> dict[str, TrainCase]:
    """The M2SNets of ``trainers`` again, each subtraction unit with autograd's backward (what a training step
    ran in 0.9.0: seven float maps saved per unit), keyed with ``AUTOGRAD_SUFFIX``."""
    cases = {f"{k}{AUTOGRAD_SUFFIX}": c for k, c in train_cases(s, trainers).items() if k != "unet"}
    for case in cases.values():
        set_compact_backward(case.net, False)
    return cases


def compact_backward_rows(label: str, steps: dict[str, dict], names: dict[str, str]) -> list[list[object]]:
    """What the compact backward of the subtraction units gives each network (``names``: trainer -> label):
    the step's speed-up and activation memory, against the same network with autograd's backward."""
    rows: list[list[object]] = []
    for trainer, name in names.items():
        compact, plain = steps.get(f"tr_{trainer}"), steps.get(f"tr_{trainer}{AUTOGRAD_SUFFIX}")
        if compact is None or plain is None:
            continue
        memory = (compact["activation_mib"] / plain["activation_mib"]
                  if compact["activation_mib"] and plain["activation_mib"] else None)
        rows.append([f"{label}: {name}, compact / autograd's backward of the subtraction units (speed-up; memory)",
                     plain["step_s"] / compact["step_s"], memory])
    return rows


def _specs(trainers: list[str]) -> list[Spec]:
    return [Spec("unet")] + [Spec(f"tr_{t}", t) for t in trainers]


def train_cases(s: Setup, trainers: list[str], lossnet_factory=None, compile_: bool = False,
                channels_last: bool = False) -> dict[str, TrainCase]:
    cases = {}
    fmt = torch.channels_last if len(s.patch) == 2 else torch.channels_last_3d
    for spec in _specs(trainers):
        net = build_network(spec, s)
        if channels_last:
            net = net.to(memory_format=fmt)
        if compile_:
            net = torch.compile(net)
        case = TrainCase(spec, s, net, build_optimizer(spec, net, s))
        if channels_last:
            case.x = case.x.contiguous(memory_format=fmt)
        if lossnet_factory is not None and isinstance(case.loss, SegmentationPlusLossNet) and case.loss.lossnet:
            case.loss.lossnet = lossnet_factory().to(s.device)
        cases[spec.key] = case
    return cases


def time_steps(cases: dict[str, TrainCase], device: torch.device, warmup: int, repeats: int,
               compiled: bool = False, profile: bool = False) -> dict[str, dict]:
    """Step times (interleaved), the first step's time (which compiles a compiled network), FLOPs per step and
    saved activations (not measured for compiled networks: ``compiled``, or a key with ``COMPILED_SUFFIX``)."""
    first = {k: time_once(c.step, device) for k, c in cases.items()} if warmup > 0 else {}
    samples = time_interleaved({k: c.step for k, c in cases.items()}, device, max(0, warmup - 1), repeats)
    out = {}
    for key, case in cases.items():
        t = median(samples[key])
        is_compiled = compiled or key.endswith(COMPILED_SUFFIX)
        out[key] = {"step_s": t, "samples_s": samples[key], "first_step_s": first.get(key),
                    "flops_per_step": count_flops(case.step), "params_m": count_parameters(case.net)["total"] / 1e6,
                    "activation_mib": None if is_compiled else activation_bytes(case) / 2**20}
        out[key]["gflops_per_s"] = out[key]["flops_per_step"] / t / 1e9
        if profile:
            out[key]["profile"] = profile_steps(case, steps=1, top=8)[1]
    return out


def _activation_ratio(steps: dict[str, dict], key: str) -> float | None:
    m, unet = steps[key]["activation_mib"], steps["unet"]["activation_mib"]
    return None if m is None or not unet else m / unet


def calibrate_batch_norm(net: nn.Module, channels: int, s: Setup) -> None:
    """Give random-weight BatchNorm layers the statistics of their inputs (a few training-mode passes).

    With the default running statistics (mean 0, variance 1) the activations of an untrained 50-layer
    encoder grow to ~1e6 in eval mode, which overflows nnU-Net's fp16 logit buffer ("inf in predicted
    array"); trained networks never see that. The cost of a forward pass does not depend on the values.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes below
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(2, channels, *s.patch, device=s.device))


class CpuBf16Autocast(nn.Module):
    """A network run under CPU bfloat16 autocast with fp32 logits: what M2SNet's ``cpu_bf16`` does, given to the
    U-Net so that a row can compare the two networks at the same precision."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.net(x).float()


BF16_SUFFIX = "+bf16"  # a network of the predictor rows run in bf16: M2SNet as M2S_NNUNET_PREDICT_BF16=1 runs it
BF16_LABEL = "M2SNet on the plans encoder, bf16 prediction"


TORCH_KERNELS_SUFFIX = "+torch_kernels"  # M2SNet with its oneDNN inference convolutions off (as up to 0.9.0)
TORCH_KERNELS_LABEL = "M2SNet on the plans encoder, PyTorch's kernels"
PASS_PER_INPUT_SUFFIX = "+pass_per_input"  # each subtraction unit filters its two inputs in two passes (0.9.0)
PASS_PER_INPUT_LABEL = "M2SNet on the plans encoder, a filter pass per input"
AUTOGRAD_SUFFIX = "+autograd_differences"  # subtraction units with autograd's backward (compact_backward off)
COMPILED_SUFFIX = "+compiled"  # --eager-and-compiled: the network compiled, beside its eager self
COMPILED_LABEL = " (compiled)"
SWITCH_LABELS = (TORCH_KERNELS_LABEL, PASS_PER_INPUT_LABEL)  # M2SNet with one of its inference paths switched off


def predictor_networks(bf16: bool, dim: int = 2, compiled: bool = False,
                       eager_and_compiled: bool = False) -> dict[str, str]:
    """Label -> network of the predictor rows: the U-Net, M2SNet (in 2D also Res2Net-50) and M2SNet with one
    inference path switched off as 0.9.0 ran it (PyTorch's own kernel choice; a filter pass per subtraction-unit
    input); with ``bf16`` also both networks under CPU bf16 autocast.

    ``compiled``: every network compiled, the switched-off M2SNets left out (inductor picks the kernels and fuses
    the filters of every network). ``eager_and_compiled``: every network eager and, the switched-off ones
    excepted, also compiled, so that one process times what compiling gives each network."""
    networks = {"U-Net": "unet", "Res2Net-50 M2SNet": PAPER, "M2SNet on the plans encoder": "M2SNetTrainer_scratch",
                TORCH_KERNELS_LABEL: f"M2SNetTrainer_scratch{TORCH_KERNELS_SUFFIX}",
                PASS_PER_INPUT_LABEL: f"M2SNetTrainer_scratch{PASS_PER_INPUT_SUFFIX}"}
    if dim == 3:
        networks.pop("Res2Net-50 M2SNet")  # a 2D encoder
    if compiled:
        for label in SWITCH_LABELS:
            networks.pop(label)
    if bf16:
        networks.update({"U-Net in bf16": f"unet{BF16_SUFFIX}", BF16_LABEL: f"M2SNetTrainer_scratch{BF16_SUFFIX}"})
    if eager_and_compiled and not compiled:
        networks.update({f"{label}{COMPILED_LABEL}": f"{name}{COMPILED_SUFFIX}" for label, name in networks.items()
                         if label not in SWITCH_LABELS})
    return networks


def filter_each_input_separately(net: nn.Module) -> None:
    """Every subtraction unit of ``net`` filters its two inputs in two passes, as 0.9.0 predicted (the same
    values: the one-pass path is bit-identical); an instance attribute, so only this network changes."""
    for module in net.modules():
        if isinstance(module, MultiScaleFilters):
            module.pair_responses = lambda a, b, filters=module: (filters.responses(a), filters.responses(b))


def predictor_times(s: Setup, trainers: dict[str, str], device: torch.device, warmup: int,
                    repeats: int, compile_: bool = False, profile: bool = False
                    ) -> tuple[dict[str, float], dict[str, float], dict[str, list[list[object]]]]:
    """Seconds per image of one patch in nnU-Net's predictor (sliding window, Gaussian, all mirror axes), the
    seconds of each network's first call (which compiles a compiled network), and with ``profile`` the top ops of
    one such call per network (else an empty dict).

    ``compile_``: the network compiled as the predictor compiles it under ``nnUNet_compile=t``."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    fns = {}
    # one image as nnU-Net's predictor holds it: (c, 1, y, x) in 2D, (c, z, y, x) in 3D
    image = torch.randn(s.num_inputs, *([1] if len(s.patch) == 2 else []), *s.patch)
    for label, name in trainers.items():
        trainer, *rest = name.split("+")
        switches = {f"+{switch}" for switch in rest}
        bf16, torch_kernels = BF16_SUFFIX in switches, TORCH_KERNELS_SUFFIX in switches
        spec = Spec("unet") if trainer == "unet" else Spec(f"tr_{trainer}", trainer)
        net = build_network(spec, s)
        calibrate_batch_norm(net, image.shape[0], s)
        set_unet_deep_supervision(net, False)
        net.eval()
        if hasattr(net, "cpu_bf16_eval"):  # M2SNet: the row's precision, whatever the shell's variables say
            net.cpu_bf16, net.cpu_bf16_eval, net.cpu_onednn = False, bf16, not torch_kernels
        elif bf16:
            net = CpuBf16Autocast(net)
        if PASS_PER_INPUT_SUFFIX in switches:
            filter_each_input_separately(net)
        if compile_ or COMPILED_SUFFIX in switches:
            net = torch.compile(net)
        predictor = nnUNetPredictor(use_mirroring=True, perform_everything_on_device=device.type == "cuda",
                                    device=device, allow_tqdm=False)
        predictor.manual_initialization(net, s.plans_manager, s.config, None, s.dataset_json, "bench",
                                        tuple(range(len(s.patch))))
        fns[label] = partial(predictor.predict_sliding_window_return_logits, image)
    first_calls = {label: time_once(fn, device) for label, fn in fns.items()}  # a compiled network compiles here
    samples = time_interleaved(fns, device, max(0, warmup - 1), repeats)
    cuda = device.type == "cuda"
    profiles = {label: profile_calls(fn, 1, 8, cuda)[1] for label, fn in fns.items()} if profile else {}
    return {label: median(v) for label, v in samples.items()}, first_calls, profiles


TRAINING_3D_LABELS = {LAST4_3D: "M2SNetTrainer with level_mapping 'last4'",
                      # nnU-Net's U-Net has no bf16 on CPU: its default, fp32, is what users compare with
                      BF16_3D: "M2SNetTrainer in bf16 (cpu_bf16)"}


def training_3d_label(trainer: str) -> str:
    return TRAINING_3D_LABELS.get(trainer, "M2SNetTrainer (recipe + LossNet)")


TRAINING_2D_LABELS = {PAPER: "Res2Net-50 M2SNet + LossNet", PAPER_NO_LOSSNET: "Res2Net-50 M2SNet without LossNet",
                      RECIPE_2D: "the recipe (M2SNetTrainer_scratch)",
                      # nnU-Net's U-Net has no bf16 on CPU: its default, fp32, is what users compare with
                      RECIPE_2D_BF16: "the recipe in bf16 (cpu_bf16)"}


def training_2d_label(trainer: str) -> str:
    return TRAINING_2D_LABELS[trainer]


def compiled_training_rows(label: str, steps: dict[str, dict], trainers: list[str],
                           name_of: Callable[[str], str] = training_3d_label) -> list[list[object]]:
    """``--eager-and-compiled``, training: what compiling gives each network, each M2SNet compiled against the
    U-Net compiled, and against the U-Net eager (nnU-Net compiles on CUDA by default, never on CPU).
    ``name_of``: trainer -> its label in the rows."""
    t = {key: m["step_s"] for key, m in steps.items()}
    rows: list[list[object]] = []
    for key in [k for k in t if k.endswith(COMPILED_SUFFIX)]:
        eager = key.removesuffix(COMPILED_SUFFIX)
        name = "U-Net" if eager == "unet" else name_of(eager.removeprefix("tr_"))
        rows.append([f"{label}: {name}, compiled / eager (the compile speed-up)", t[eager] / t[key], None])
    unet = t.get(f"unet{COMPILED_SUFFIX}")
    for trainer in trainers:
        m2s = t.get(f"tr_{trainer}{COMPILED_SUFFIX}")
        if m2s is None:
            continue
        if unet is not None:
            rows.append([f"{label}, both compiled: {name_of(trainer)} / U-Net", unet / m2s, None])
        rows.append([f"{label}: {name_of(trainer)}, compiled / U-Net (eager)", t["unet"] / m2s, None])
    return rows


def compiled_predictor_rows(where: str, times: dict[str, float]) -> list[list[object]]:
    """``--eager-and-compiled``: what compiling gives each network, and the ratios with both networks compiled
    (nnU-Net's predictor compiles only under ``nnUNet_compile=t``; eager is what a user gets by default)."""
    rows: list[list[object]] = []
    compiled = {label.removesuffix(COMPILED_LABEL): t for label, t in times.items() if label.endswith(COMPILED_LABEL)}
    for label, t in compiled.items():
        rows.append([f"{where}: {label}, compiled / eager (the compile speed-up)", times[label] / t, None])
    if "U-Net" in compiled:
        for label in ("Res2Net-50 M2SNet", "M2SNet on the plans encoder"):
            if label in compiled:
                rows.append([f"{where}, both compiled: {label} / U-Net", compiled["U-Net"] / compiled[label], None])
        if BF16_LABEL in compiled:
            rows.append([f"{where}: {BF16_LABEL}, compiled / U-Net (fp32, eager: nnU-Net's default)",
                         times["U-Net"] / compiled[BF16_LABEL], None])
    return rows


def forget_compiled_graphs() -> None:
    """Drop every compiled graph before a case builds its networks. All M2SNets share ``M2SNet.forward``, and
    dynamo compiles it once per network instance (twice in nnU-Net's predictor, which passes both inference and
    ordinary tensors); past its recompile limit (8 per function) it runs the function eagerly, with only a log
    warning, so the later "compiled" rows of a long run would time eager code."""
    torch._dynamo.reset()


def plan(work: Path, case: PlansCase, device: torch.device) -> Setup:
    """nnU-Net's plans for the case's synthetic dataset (1000 images in 2D, 100 volumes in 3D)."""
    folder = Path(tempfile.mkdtemp(prefix="plans_", dir=work))
    plans = make_synthetic_plans(folder, case.shape, case.spacing, 1000 if case.shape[0] == 1 else 100,
                                 case.channels, case.classes, folder / "plan.log")
    # CUDA: fp16 autocast + GradScaler, as nnU-Net trains there
    return load_setup(plans, plans.parent / "dataset.json", case.configuration, case.batch, device,
                      device.type == "cuda")


def run(args: argparse.Namespace) -> tuple[str, dict]:
    device = pick_device(args.device)
    if args.freezing:  # every torch.compile of this process; the recorded args say so
        import torch._inductor.config as inductor_config  # "import torch._inductor..." would make torch local

        inductor_config.freezing = True
    torch.manual_seed(0)
    w, r = args.warmup, args.repeats
    # before measuring: the code that is timed is the code recorded (commit, uncommitted changes, versions)
    data: dict[str, dict] = {"device": describe_device(device), "provenance": provenance()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="m2s_speed_table_") as tmp:
        work = Path(tmp)

        def setup(key: str) -> Setup:
            forget_compiled_graphs()
            s = plan(work, CASES[key], device)
            print(f"[{key}] patch {list(s.patch)}, batch {s.batch}, "
                  f"{s.config.configuration['architecture']['arch_kwargs']['n_stages']} stages", flush=True)
            return s

        for key in [k for k in ("2d_352", "2d_128") if k in args.cases]:
            s = setup(key)
            trainers = [PAPER, PAPER_NO_LOSSNET] + ([RECIPE_2D] if key == "2d_128" else [])
            bf16 = [RECIPE_2D_BF16] if key == "2d_128" and device.type == "cpu" and cpu_computes_bf16() else []
            cases = train_cases(s, trainers + bf16, compile_=args.compile, channels_last=args.channels_last)
            if args.eager_and_compiled and not args.compile:  # the same networks compiled, timed interleaved
                cases.update({f"{k}{COMPILED_SUFFIX}": c for k, c in train_cases(
                    s, trainers, compile_=True, channels_last=args.channels_last).items()})
            if key == "2d_128":
                cases.update({f"{k}_upsampled": c for k, c in train_cases(
                    s, [PAPER], lambda: UpsamplingLossNet(pretrained=False), args.compile,
                    args.channels_last).items() if k != "unet"})
                if not (args.compile or args.channels_last):
                    cases.update(autograd_difference_cases(s, [PAPER]))
            t = time_steps(cases, device, w, r, args.compile, args.profile)
            data[key] = {"patch": s.patch, "batch": s.batch, "steps": t}
            unet, m2s, bare = t["unet"]["step_s"], t[f"tr_{PAPER}"]["step_s"], t[f"tr_{PAPER_NO_LOSSNET}"]["step_s"]
            label = f"2D {s.patch[0]}x{s.patch[1]}, batch {s.batch}"
            rows.append([f"{label}: Res2Net-50 M2SNet + LossNet / U-Net", unet / m2s,
                         _activation_ratio(t, f"tr_{PAPER}")])
            rows.append([f"{label}: Res2Net-50 M2SNet without LossNet / U-Net", unet / bare,
                         _activation_ratio(t, f"tr_{PAPER_NO_LOSSNET}")])
            rows.append([f"{label}: LossNet share of the M2SNet step (a fraction)", (m2s - bare) / m2s, None])
            if key == "2d_128":
                rows.append([f"{label}: M2SNet + 0.3.0's LossNet (maps upsampled to 224) / U-Net",
                             unet / t[f"tr_{PAPER}_upsampled"]["step_s"], None])
                rows += compact_backward_rows(label, t, {PAPER: TRAINING_2D_LABELS[PAPER]})
            for trainer in trainers[2:] + bf16:
                what = training_2d_label(trainer) + (" / U-Net in fp32" if trainer == RECIPE_2D_BF16 else " / U-Net")
                rows.append([f"{label}: {what}", unet / t[f"tr_{trainer}"]["step_s"],
                             _activation_ratio(t, f"tr_{trainer}")])
            rows += compiled_training_rows(label, t, trainers, training_2d_label)
        for key in [k for k in ("3d_ct", "3d_hippo") if k in args.cases]:
            trainers = [DEFAULT_3D, LAST4_3D] if key == "3d_hippo" else [DEFAULT_3D]
            if key == "3d_hippo" and device.type == "cpu" and cpu_computes_bf16():
                trainers.append(BF16_3D)
            s = setup(key)
            cases = train_cases(s, trainers, compile_=args.compile, channels_last=args.channels_last)
            if args.eager_and_compiled and not args.compile:  # the same networks compiled, timed interleaved
                cases.update({f"{k}{COMPILED_SUFFIX}": c for k, c in train_cases(
                    s, trainers, compile_=True, channels_last=args.channels_last).items()})
            compact_rows = [tr for tr in (DEFAULT_3D, BF16_3D) if tr in trainers] if key == "3d_hippo" else []
            if not (args.compile or args.channels_last):
                cases.update(autograd_difference_cases(s, compact_rows))
            t = time_steps(cases, device, w, r, args.compile, args.profile)
            data[key] = {"patch": s.patch, "batch": s.batch, "steps": t}
            label = f"3D {'x'.join(map(str, s.patch))}, batch {s.batch}"
            for trainer in trainers:
                what = training_3d_label(trainer) + (" / U-Net in fp32" if trainer == BF16_3D else " / U-Net")
                m = t[f"tr_{trainer}"]
                rows.append([f"{label}: {what}", t["unet"]["step_s"] / m["step_s"],
                             _activation_ratio(t, f"tr_{trainer}")])
            rows += compiled_training_rows(label, t, trainers)
            rows += compact_backward_rows(label, t, {trainer: training_3d_label(trainer) for trainer in compact_rows})
        if args.plans is not None:
            forget_compiled_graphs()
            s = load_setup(args.plans, args.dataset_json or args.plans.parent / "dataset.json", args.configuration,
                           args.batch, device, device.type == "cuda")
            print(f"[plans] {args.plans.name} {args.configuration}: patch {list(s.patch)}, batch {s.batch}", flush=True)
            t = time_steps(train_cases(s, args.trainers, compile_=args.compile, channels_last=args.channels_last),
                           device, w, r, args.compile, args.profile)
            data["plans"] = {"plans": args.plans.name, "configuration": args.configuration, "patch": s.patch,
                             "batch": s.batch, "steps": t}
            label = f"{args.configuration} {'x'.join(map(str, s.patch))} of the given plans, batch {s.batch}"
            for trainer in args.trainers:
                rows.append([f"{label}: {trainer} / U-Net", t["unet"]["step_s"] / t[f"tr_{trainer}"]["step_s"],
                             _activation_ratio(t, f"tr_{trainer}")])
        for key, case in (("predictor", "2d_128"), ("predictor_3d", "3d_hippo")):
            if key not in args.cases:
                continue
            s = setup(case)
            bf16 = device.type == "cpu" and cpu_computes_bf16()  # on CUDA the predictor runs fp16 autocast
            data["predictor_repeats"] = max(r, 5)  # single calls are short and noisy: at least 5
            networks = predictor_networks(bf16, len(s.patch), args.compile, args.eager_and_compiled)
            times, first_calls, profiles = predictor_times(s, networks, device, w, data["predictor_repeats"],
                                                           args.compile, args.profile)
            name = "predictor_128" if key == "predictor" else "predictor_3d_hippo"
            data[name] = times
            data[f"{name}_first_call"] = first_calls
            if profiles:
                data[f"{name}_profile"] = profiles
            where = f"inference {'x'.join(map(str, s.patch))} with TTA in nnU-Net's predictor"
            for label in ("Res2Net-50 M2SNet", "M2SNet on the plans encoder", TORCH_KERNELS_LABEL):
                if label in times:
                    rows.append([f"{where}: {label} / U-Net", times["U-Net"] / times[label], None])
            if TORCH_KERNELS_LABEL in times and device.type == "cpu":
                rows.append([f"{where}: M2SNet, oneDNN inference convolutions / PyTorch's kernels (the speed-up)",
                             times[TORCH_KERNELS_LABEL] / times["M2SNet on the plans encoder"], None])
            if PASS_PER_INPUT_LABEL in times:
                rows.append([f"{where}: M2SNet, one filter pass for both inputs of a unit / a pass per input "
                             "(the speed-up)", times[PASS_PER_INPUT_LABEL] / times["M2SNet on the plans encoder"],
                             None])
            if bf16:
                rows.append([f"{where}: {BF16_LABEL} / U-Net (fp32, nnU-Net's default on CPU)",
                             times["U-Net"] / times[BF16_LABEL], None])
                rows.append([f"{where}: {BF16_LABEL} / U-Net in bf16", times["U-Net in bf16"] / times[BF16_LABEL],
                             None])
                rows.append([f"{where}: {BF16_LABEL} / the same M2SNet in fp32 (the bf16 speed-up)",
                             times["M2SNet on the plans encoder"] / times[BF16_LABEL], None])
            rows += compiled_predictor_rows(where, times)
    data["matmul_peak_gflops"] = matmul_peak_gflops(device, args.matmul_n, torch.float32)
    data["rows"] = rows
    data["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return render(data), data


def render(data: dict) -> str:
    """The Markdown report of one run, from what its ``--json`` file holds (``bench/results_tables.py`` renders
    the committed files with it)."""
    args = data["args"]
    cuda = data["device"].startswith("cuda")
    w, r, peak = args["warmup"], args["repeats"], data["matmul_peak_gflops"]
    timed_predictor = any(k in data for k in ("predictor_128", "predictor_3d_hippo"))
    # files written before the count was recorded used max(r, 5) too
    predictor_r = data.get("predictor_repeats", max(r, 5)) if timed_predictor else r
    step_rows = []
    measured = [k for k in (*CASES, "plans") if k in data]
    for key in measured:
        for name, m in data[key]["steps"].items():
            # 0.7.0's files hold no parameter count
            step_rows.append([key, name.removeprefix("tr_"), m.get("params_m"), m["step_s"], m["gflops_per_s"],
                              100 * m["gflops_per_s"] / peak, m["activation_mib"]])
    md = [
        "# Speed: M2SNet against nnU-Net's U-Net, one process",
        "",
        f"- device: {data['device']}; {'fp16 autocast' if cuda else 'fp32 (bf16 where a row says so)'}"
        f"{'; torch.compile' if args['compile'] else ''}"
        f"{'; networks eager and compiled' if args.get('eager_and_compiled') else ''}"
        f"{' (inductor freezing: weights folded into the compiled program)' if args.get('freezing') else ''}"
        f"{'; channels_last' if args['channels_last'] else ''}; "
        f"warm-up {w}, median of {r} interleaved repeats"
        f"{f' ({predictor_r} for the predictor rows)' if predictor_r != r else ''}; random data",
        f"- code: commit {data['provenance']['git_commit']}"
        f"{' with uncommitted changes' if data['provenance']['git_dirty'] else ''}, "
        f"m2s-nnunet {data['provenance']['m2s_nnunet']}, nnunetv2 {data['provenance']['nnunetv2']}",
        f"- matmul peak: {peak:.1f} GFLOP/s ({args['matmul_n']}^3 fp32 torch.mm)",
        "",
        markdown_table(["row", "throughput ratio (> 1: M2SNet faster)", "activation memory ratio"], data["rows"]),
        "",
    ]
    if step_rows:  # training rows were measured
        md += ["## Per network", "", markdown_table(["case", "network", "params (M)", "s/step", "GFLOP/s",
                                                     "% of matmul peak", "activation MiB"], step_rows), ""]
    for key in measured:
        for name, m in data[key]["steps"].items():
            if m.get("profile"):
                md += ["", f"### Profile: {key}, {name.removeprefix('tr_')} (one step, top ops by self CPU time)",
                       "", markdown_table(ops_header(cuda), m["profile"])]
    first_steps = {f"{key} {name.removeprefix('tr_')}": m["first_step_s"] for key in measured
                   for name, m in data[key]["steps"].items() if name.endswith(COMPILED_SUFFIX)}
    if first_steps:
        md.append("- s of the first training step (compiling it): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in first_steps.items()))
    for key in ("predictor_128", "predictor_3d_hippo"):
        if key in data:
            md.append(f"- {key}, s per image of one patch with TTA: "
                      + ", ".join(f"{k} {v:.3f}" for k, v in data[key].items()))
        if f"{key}_first_call" in data:  # files before 2026-12-06 did not record it
            md.append(f"- {key}, s of the first call (compiling, for a compiled network): "
                      + ", ".join(f"{k} {v:.1f}" for k, v in data[f"{key}_first_call"].items()))
    for key in ("predictor_128", "predictor_3d_hippo"):
        for label, ops in data.get(f"{key}_profile", {}).items():
            md += ["", f"### Profile: {key}, {label} (one image with TTA, top ops by self CPU time)", "",
                   markdown_table(ops_header(cuda), ops)]
    return "\n".join(md)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available, else cpu")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed calls, median reported")
    p.add_argument("--matmul-n", type=int, default=2048)
    p.add_argument("--cases", nargs="+", choices=[*CASES, "predictor", "predictor_3d"], default=None,
                   help="which built-in rows to measure (default: all; none when --plans is given)")
    p.add_argument("--plans", type=Path, default=None,
                   help="also time the U-Net against --trainers on this nnUNetPlans.json (its dataset.json next to it)")
    p.add_argument("--dataset-json", type=Path, default=None, help="--plans: default dataset.json next to it")
    p.add_argument("--configuration", default="2d", help="--plans: the configuration (default: %(default)s)")
    p.add_argument("--batch", type=int, default=None,
                   help="--plans: training batch (default: the plans' on CUDA, 2 on CPU)")
    p.add_argument("--trainers", nargs="+", default=["M2SNetTrainer"],
                   help="--plans: M2SNet trainer classes to time, of the package or of bench/trainers "
                        "(default: %(default)s)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile every network (activation memory is then not measured)")
    p.add_argument("--eager-and-compiled", action="store_true",
                   help="predictor and training rows: every network eager and compiled (not the 2D recipe in "
                        "bf16), timed in one process "
                        "(the compile speed-up of each, and the ratios with both compiled)")
    p.add_argument("--freezing", action="store_true",
                   help="compile with inductor's freezing (weights become constants of the program; CPU inference "
                        "only); with --eager-and-compiled or --compile")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format for networks and inputs")
    p.add_argument("--profile", action="store_true",
                   help="also list the top ops (torch.profiler) of each training step and predictor call")
    p.add_argument("--quick", action="store_true", help="no warm-up, one repeat: checks that every row runs")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.cases is None:
        args.cases = [] if args.plans is not None else [*CASES, "predictor", "predictor_3d"]
    if args.plans is not None and not args.plans.is_file():
        p.error(f"--plans {args.plans}: no such file (an nnUNetPlans.json of nnUNet_preprocessed/DatasetXXX)")
    if args.freezing and not (args.compile or args.eager_and_compiled):
        p.error("--freezing changes how networks compile: give it with --compile or --eager-and-compiled")
    if args.quick:
        args.warmup, args.repeats, args.matmul_n = 0, 1, 512
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    md, data = run(args)
    write_report(md, data, args.out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
