"""Where does one M2SNet training step spend its time? torch.profiler over ``steplib.TrainCase``'s step.

Default: the published network of ``M2SNetTrainer`` (res2net50d, random weights; Dice+CE + 0.1 LossNet with
random VGG16 weights; SGD Nesterov) at batch 2 and 352x352 on the CPU, on nnU-Net's plans for such images;
``--trainer`` profiles a trainer class's network, loss and optimiser instead. Hooks mark the phase boundaries
without changing the step. Prints (1) the median phase split of ``--steps`` un-profiled steps and (2) the
top ops by self CPU time of ``--profile-steps`` profiled steps.

    python bench/profile_step.py --out bench/out/profile.md
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from benchlib import describe_device, markdown_table, median, pick_device, sync, write_report
from steplib import (
    Spec,
    TrainCase,
    build_network,
    build_optimizer,
    load_setup,
    make_builtin_plans,
    register_trainer,
)
from torch.profiler import ProfilerActivity, profile

from m2s_nnunet.network import DEFAULT_ENCODER
from m2s_nnunet.training.loss import SegmentationPlusLossNet

PHASES = ("network forward", "segmentation loss", "LossNet forward", "LossNet backward", "network backward",
          "clip + optimizer step")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: %(default)s")
    p.add_argument("--encoder", default=DEFAULT_ENCODER, help="timm encoder (default: %(default)s)")
    p.add_argument("--trainer", default=None, help="profile this M2SNet trainer class's step instead, e.g. "
                   "M2SNetTrainer_scratch (--encoder and --no-lossnet then do not apply)")
    p.add_argument("--batch", type=int, default=2, help="default: %(default)s")
    p.add_argument("--size", type=int, default=352, help="square patch side (default: %(default)s)")
    p.add_argument("--classes", type=int, default=2, help="output channels incl. background (default: 2)")
    p.add_argument("--no-lossnet", action="store_true", help="Dice+CE only (M2SNetTrainer_noLossNet)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default: %(default)s)")
    p.add_argument("--steps", type=int, default=3, help="timed steps for the phase split (default: %(default)s)")
    p.add_argument("--profile-steps", type=int, default=1, help="steps under torch.profiler (default: %(default)s)")
    p.add_argument("--top", type=int, default=15, help="ops to list (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--trace", type=Path, default=None, help="also write a Chrome trace (chrome://tracing) here")
    p.add_argument("--out", type=Path, default=None, help="also write the Markdown tables here")
    p.add_argument("--json", type=Path, default=None, help="write the numbers here")
    return p.parse_args(argv)


class PhaseClock:
    """Timestamps at the phase boundaries of ``TrainCase.step``, taken by hooks; a phase ends at its own mark
    and starts at the previous one, so the phases add up to the step."""

    def __init__(self, case: TrainCase) -> None:
        self.device, self.marks = case.s.device, {}
        case.net.register_forward_pre_hook(lambda *_: self.mark("start"))
        case.net.register_forward_hook(lambda *_: self.mark("network forward"))
        plus_lossnet = isinstance(case.loss, SegmentationPlusLossNet)
        (case.loss.seg_loss if plus_lossnet else case.loss).register_forward_hook(
            lambda *_: self.mark("segmentation loss"))
        lossnet = case.loss.lossnet if plus_lossnet else None
        if lossnet is not None:
            lossnet.register_forward_pre_hook(self._watch_probabilities)
            lossnet.register_forward_hook(lambda *_: self.mark("LossNet forward"))
        for p in case.net.parameters():  # the last gradient written ends the backward pass (unsynced on CUDA)
            p.register_post_accumulate_grad_hook(lambda _: self.mark("network backward", synced=False))
        case.optimizer.register_step_post_hook(lambda *_: self.mark("clip + optimizer step"))

    def _watch_probabilities(self, _module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if inputs[0].requires_grad:  # its gradient is ready once LossNet's backward is done
            inputs[0].register_hook(lambda _: self.mark("LossNet backward"))

    def mark(self, name: str, synced: bool = True) -> None:
        if synced:
            sync(self.device)
        if name == "start":
            self.marks = {}
        self.marks[name] = time.perf_counter()

    def phases(self) -> dict[str, float]:
        """Seconds per phase of the last step."""
        names = [n for n in ("start", *PHASES) if n in self.marks]
        return {b: self.marks[b] - self.marks[a] for a, b in zip(names, names[1:])}


def make_case(args: argparse.Namespace, device: torch.device, work: Path) -> TrainCase:
    """The step on nnU-Net's plans for 2D RGB images of ``--size``, with the patch set to ``--size``."""
    plans = make_builtin_plans(work, (args.size, args.size), 1000, 3, args.classes, work / "plan.log")
    s = load_setup(plans, plans.parent / "dataset.json", "2d", args.batch, device, device.type == "cuda")
    s = dataclasses.replace(s, patch=(args.size, args.size))
    # the paper's network with --encoder, without an ImageNet start (the cost does not depend on the weights)
    trainer = args.trainer or register_trainer(
        f"Profile_M2SNet_{args.encoder}" + ("_noLossNet" if args.no_lossnet else ""), encoder=args.encoder,
        recipe=False, pretrained_encoder=False, **({"lossnet_weight": 0.0} if args.no_lossnet else {}))
    spec = Spec("m2s", trainer)
    net = build_network(spec, s)
    return TrainCase(spec, s, net, build_optimizer(spec, net, s))


def profile_steps(case: TrainCase, steps: int, top: int) -> tuple[profile, list[list[object]]]:
    """``steps`` training steps under torch.profiler: the profile and its ``top`` ops by self CPU time as table
    rows (ms, % of all self CPU time; self CUDA ms on CUDA). ``speed_table.py --profile`` uses it too."""
    return profile_calls(case.step, steps, top, case.s.device.type == "cuda")


def profile_calls(fn: Callable[[], object], calls: int, top: int, cuda: bool) -> tuple[profile, list[list[object]]]:
    """``calls`` calls of ``fn`` under torch.profiler: the profile and its ``top`` ops as ``profile_steps`` lists
    them (``speed_table.py --profile`` profiles a predictor call with it)."""
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for _ in range(max(1, calls)):
            fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    ops = [[e.key, e.count, e.self_cpu_time_total / 1e3, 100 * e.self_cpu_time_total / total, e.cpu_time_total / 1e3]
           + ([getattr(e, "self_device_time_total", 0.0) / 1e3] if cuda else []) for e in events[:top]]
    return prof, ops


def ops_header(cuda: bool) -> list[str]:
    return ["op", "calls", "self CPU ms", "% of self CPU", "CPU total ms"] + (["self CUDA ms"] if cuda else [])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="m2s_profile_") as tmp:
        case = make_case(args, device, Path(tmp))
    clock = PhaseClock(case)
    for _ in range(args.warmup):
        case.step()
    samples = []
    for _ in range(max(1, args.steps)):
        case.step()
        samples.append(clock.phases())
    phases = [p for p in PHASES if p in samples[0]]
    med = {p: median([s[p] for s in samples if p in s]) for p in phases}  # a step GradScaler skips has no update
    total = sum(med.values())
    cuda = device.type == "cuda"
    prof, ops = profile_steps(case, args.profile_steps, args.top)
    if args.trace:
        args.trace.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(args.trace))
    what = (f"{args.trainer} (network, loss and optimiser as the trainer builds them)" if args.trainer else
            f"M2SNet {args.encoder}, loss Dice+CE" + ("" if args.no_lossnet else " + 0.1 LossNet (random VGG16 "
                                                      "weights: timing only)") + ", SGD Nesterov")
    md = [
        "# One M2SNet training step, profiled",
        "",
        f"- device: {describe_device(device)}" + ("; fp16 autocast + GradScaler as nnU-Net" if cuda else "; fp32"),
        f"- {what}; batch {args.batch}, {args.size}x{args.size}, {args.classes} output channels, clip_grad_norm 12",
        f"- phase split: median of {len(samples)} steps after {args.warmup} warm-up; ops: {args.profile_steps} "
        "profiled step(s)",
        "",
        "## Phase split (wall clock)",
        "",
        markdown_table(["phase", "ms", "% of step"], [[p, med[p] * 1e3, 100 * med[p] / total] for p in phases]
                       + [["whole step", total * 1e3, 100.0]]),
        "",
        f"## Top {args.top} ops by self CPU time (torch.profiler)",
        "",
        markdown_table(ops_header(cuda), ops),
        "",
        "'LossNet forward' includes the softmax and one-hot maps; 'LossNet backward' stops at the probabilities; "
        "'network backward' includes the segmentation loss's backward. Convolution backward ops carry both the "
        "network's and LossNet's backward in the op table.",
    ]
    data = {"device": describe_device(device), "args": vars(args), "top_ops": ops, "phase_samples_s": samples,
            "phase_ms_median": {k: v * 1e3 for k, v in med.items()}}
    write_report("\n".join(md), data, args.out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
