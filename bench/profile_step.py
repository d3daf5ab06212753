"""Where does one M2SNet training step spend its time? torch.profiler over the default trainer setting.

Default: what ``M2SNetTrainer`` runs (res2net50d, 2 output channels, nnU-Net's Dice+CE + 0.1 LossNet, SGD
Nesterov), at batch 2 and 352x352 on the CPU. LossNet uses random VGG16 weights (the cost does not depend on them).

To separate LossNet's backward from the network's, the step backpropagates in two exact stages: first LossNet's
term down to the probabilities (a detached leaf), then the network's graph with that gradient added to the
Dice+CE gradient (``torch.autograd.backward([dice_ce, probs], [1, dL/dprobs])``). The parameter gradients are
the same as one ``loss.backward()``; only the bookkeeping differs.

Prints (1) the wall-clock split network forward / loss / LossNet forward / LossNet backward / network backward /
clip + optimizer step (median of ``--steps`` un-profiled steps), and (2) the top ops by self CPU time from
``--profile-steps`` profiled steps.

    python bench/profile_step.py --out bench/out/profile.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from benchlib import describe_device, markdown_table, median, pick_device, precision_context, sync, write_report
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from torch.profiler import ProfilerActivity, profile, record_function

from m2s_nnunet.losses import LossNet
from m2s_nnunet.network import DEFAULT_ENCODER, M2SNet

PHASES = ("network forward", "Dice+CE", "LossNet forward", "LossNet backward", "network backward",
          "clip + optimizer step")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: %(default)s")
    p.add_argument("--encoder", default=DEFAULT_ENCODER, help="timm encoder (default: %(default)s)")
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


class Step:
    """One training iteration of M2SNetTrainer (nnU-Net's train_step), cut into labelled phases."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.device = device
        self.net = M2SNet(3, args.classes, encoder=args.encoder).to(device)
        self.seg_loss = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                                       weight_ce=1, weight_dice=1, ignore_label=None,
                                       dice_class=MemoryEfficientSoftDiceLoss)
        self.lossnet = None if args.no_lossnet else LossNet(pretrained=False).to(device)
        encoder = {id(p) for p in self.net.encoder.parameters()}
        groups = [{"params": [p for p in self.net.parameters() if id(p) not in encoder]},
                  {"params": list(self.net.encoder.parameters()), "lr": 5e-3}]
        self.optimizer = torch.optim.SGD(groups, 5e-2, momentum=0.9, weight_decay=5e-4, nesterov=True)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
        self.y = torch.randint(0, args.classes, (args.batch, 1, args.size, args.size), generator=g).float().to(device)
        classes = torch.arange(1, args.classes, device=device).view(1, -1, 1, 1)
        self.onehot = (self.y == classes).float()  # foreground channels, as SegmentationPlusLossNet compares them

    def _phase(self, name: str, times: dict[str, float], fn):
        sync(self.device)
        start = time.perf_counter()
        with record_function(name):
            result = fn()
        sync(self.device)
        times[name] = time.perf_counter() - start
        return result

    def run(self) -> dict[str, float]:
        times: dict[str, float] = {}
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        with precision_context(self.device, amp=True):  # nnU-Net autocasts on CUDA only; a no-op on CPU
            logits = self._phase("network forward", times, lambda: self.net(self.x))
            seg = self._phase("Dice+CE", times, lambda: self.seg_loss(logits, self.y))
        grads = [None, None]
        outputs = [seg, None]
        if self.lossnet is not None:
            probs = torch.softmax(logits.float(), 1)[:, 1:]
            leaf = probs.detach().requires_grad_(True)
            with precision_context(self.device, amp=True):
                term = self._phase("LossNet forward", times, lambda: 0.1 * self.lossnet(leaf, self.onehot))
            self._phase("LossNet backward", times, term.backward)
            outputs[1], grads[1] = probs, leaf.grad
        pairs = [(o, g) for o, g in zip(outputs, grads) if o is not None]
        self._phase("network backward", times,
                    lambda: torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs]))

        def update() -> None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 12)
            self.optimizer.step()

        self._phase("clip + optimizer step", times, update)
        return times


def top_ops(prof, top: int, cuda: bool) -> list[list[object]]:
    events = [e for e in prof.key_averages() if e.key not in PHASES and not e.key.startswith("ProfilerStep")]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    rows = []
    for e in events[:top]:
        row = [e.key, e.count, e.self_cpu_time_total / 1e3, 100 * e.self_cpu_time_total / total, e.cpu_time_total / 1e3]
        if cuda:
            row.append(getattr(e, "self_device_time_total", 0.0) / 1e3)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(0)
    step = Step(args, device)
    for _ in range(args.warmup):
        step.run()
    samples = [step.run() for _ in range(max(1, args.steps))]
    phases = [p for p in PHASES if p in samples[0]]
    med = {p: median([s[p] for s in samples]) for p in phases}
    total = sum(med.values())
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(max(1, args.profile_steps)):
            step.run()
    if args.trace:
        args.trace.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(args.trace))
    cuda = device.type == "cuda"
    ops = top_ops(prof, args.top, cuda)
    loss = "Dice+CE" if args.no_lossnet else "Dice+CE + 0.1 LossNet (random VGG16 weights: timing only)"
    md = [
        "# One M2SNet training step, profiled",
        "",
        f"- device: {describe_device(device)}" + ("; fp16 autocast as nnU-Net (no GradScaler)" if cuda else "; fp32"),
        f"- M2SNet {args.encoder}, batch {args.batch}, {args.size}x{args.size}, {args.classes} output channels, "
        f"loss {loss}, SGD Nesterov with clip_grad_norm 12 (as M2SNetTrainer)",
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
        markdown_table(["op", "calls", "self CPU ms", "% of self CPU", "CPU total ms"]
                       + (["self CUDA ms"] if cuda else []), ops),
        "",
        "'network backward' includes the Dice+CE backward and the softmax; 'LossNet backward' stops at the "
        "probabilities. Convolution backward ops (e.g. convolution_backward / mkldnn) carry both the network's and "
        "LossNet's backward in the op table.",
    ]
    data = {"device": describe_device(device), "args": vars(args), "top_ops": ops, "phase_samples_s": samples,
            "phase_ms_median": {k: v * 1e3 for k, v in med.items()}}
    write_report("\n".join(md), data, args.out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
