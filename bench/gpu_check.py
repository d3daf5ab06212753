"""The GPU checks of issue 11, in one run that writes one Markdown report (about 5-10 minutes on one GPU).

1. numerics under CUDA autocast: the fixed filters' fast path against the plain convolution and a subtraction
   unit's fused paths (both inputs in one pass for prediction, one channel sum per input for both filters in
   training) against separate filter calls, in fp16 (nnU-Net's) and bf16, eager and compiled; LossNet against
   fp32, and 20 training steps of ``M2SNetTrainer``'s network and loss with a GradScaler (every loss finite);
2. throughput and activation-memory ratios against the U-Net (``speed_table.py`` on the device), with
   ``torch.compile`` off and on;
3. ``torch.cuda.max_memory_allocated`` of a training step at the batch ``m2s-nnunet plan`` picks for 8, 11
   and 24 GB, against that target and the memory model's estimate;
4. a 2-process DDP step (NCCL) when more than one GPU is present: equal gradients on both ranks.

Without CUDA it writes a report that says so and exits 0 (CI runs that path). ``--cpu-smoke`` runs every
check on the CPU at toy sizes instead (bf16 autocast, one repeat), to test the code paths without a GPU.

    bash bench/gpu_check.sh                       # after `make install`, on the GPU machine
    python bench/gpu_check.py --out bench/out/gpu_check.md
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))


class Context:
    """Where and how big: the GPU run, or the CPU smoke run (toy sizes, bf16 autocast)."""

    def __init__(self, device: torch.device, smoke: bool) -> None:
        self.device, self.smoke = device, smoke
        self.amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16  # nnU-Net's choice on CUDA
        # the fused paths are checked under both half precisions a GPU offers (bf16 only on the CPU)
        self.amp_dtypes = (torch.float16, torch.bfloat16) if device.type == "cuda" else (torch.bfloat16,)
        self.size = 64 if smoke else 352
        self.steps = 3 if smoke else 20

    def autocast(self, dtype: torch.dtype | None = None):
        return torch.autocast(self.device.type, dtype=dtype or self.amp_dtype)


# ------------------------------------------------------------------------------------------- 1. numerics
def check_fixed_filters(ctx: Context) -> list[str]:
    from m2s_nnunet.network.blocks import FixedAllOnesFilter

    lines = ["| filter | dim | autocast | max abs error, fast vs plain under autocast | max abs error in fp32 |",
             "|---|---|---|---|---|"]
    for dim in (2, 3):
        for k in (3, 5):
            torch.manual_seed(0)
            fast = FixedAllOnesFilter(64, k, dim, fast_path=True).to(ctx.device).eval()
            plain = FixedAllOnesFilter(64, k, dim, fast_path=False).to(ctx.device).eval()
            plain.load_state_dict(fast.state_dict())
            side = (24 if dim == 3 else 96) if not ctx.smoke else 12
            x = torch.randn(2, 64, *([side] * dim), device=ctx.device)
            with torch.no_grad():
                exact = (fast(x) - plain(x)).abs().max().item()
                for dtype in ctx.amp_dtypes:
                    with ctx.autocast(dtype):
                        amp = (fast(x).float() - plain(x).float()).abs().max().item()
                    lines.append(f"| {k}x{k}{'x' + str(k) if dim == 3 else ''} | {dim}D | {_name(dtype)} | "
                                 f"{amp:.3g} | {exact:.3g} |")
    return lines


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_subtraction_unit(ctx: Context) -> list[str]:
    """A subtraction unit against the fixed filters called one by one, under fp16 and bf16 autocast, eager and
    compiled (compiled on CUDA only: inductor on CPU takes minutes). Without gradients (prediction) the unit
    filters both inputs in one pass; with them (training mode, inputs that need gradients) one pass per input,
    each sharing one channel sum for F3 and F5, and the compact backward (int8 gradient factors), whose input
    gradient is compared with autograd's through the separate calls."""
    import copy

    from m2s_nnunet.network.blocks import MultiScaleFilters, MultiScaleSubtractionUnit, resize_to

    lines = ["| dim | norm | path | autocast | compiled | max abs error, fused vs separate | input gradient: max abs "
             "error (max abs) | finite |", "|---|---|---|---|---|---|---|---|"]
    for dim in (2, 3):
        for norm in ("batch", "instance"):
            torch.manual_seed(0)
            filters = MultiScaleFilters(64, dim, norm=norm).to(ctx.device).eval()
            unit = MultiScaleSubtractionUnit(64, dim, norm=norm).to(ctx.device).eval()
            ref_filters, ref_unit = copy.deepcopy(filters), copy.deepcopy(unit)

            def separate(a, b, f=ref_filters, u=ref_unit):
                a = resize_to(a, b)
                return u.conv((a - b).abs() + (f.f3(a) - f.f3(b)).abs() + (f.f5(a) - f.f5(b)).abs())

            side = (12 if dim == 3 else 48) if ctx.smoke else (24 if dim == 3 else 96)
            a = torch.randn(2, 64, *([side // 2] * dim), device=ctx.device)
            b = torch.randn(2, 64, *([side] * dim), device=ctx.device)
            paths = (("one pass (prediction)", False), ("pass per input, compact backward (training)", True))
            for path, training in paths:
                for module in (filters, unit, ref_filters, ref_unit):
                    module.train(training)
                for dtype in ctx.amp_dtypes:
                    for compiled in (False, True) if ctx.device.type == "cuda" else (False,):
                        fused = torch.compile(unit) if compiled else unit
                        x, y = a.clone().requires_grad_(training), b.clone()
                        x_ref = a.clone().requires_grad_(training)
                        with torch.set_grad_enabled(training), ctx.autocast(dtype):
                            ref = separate(x_ref, y).float()
                            out = fused(x, y, filters).float()
                        gradient = "-"
                        if training:
                            weights = torch.randn_like(ref)
                            (ref * weights).sum().backward()
                            (out * weights).sum().backward()
                            gradient = (f"{(x.grad - x_ref.grad).abs().max().item():.3g} "
                                        f"({x_ref.grad.abs().max().item():.3g})")
                        finite = bool(torch.isfinite(out).all())
                        finite = finite and (not training or bool(torch.isfinite(x.grad).all()))
                        lines.append(f"| {dim}D | {norm} | {path} | {_name(dtype)} | {compiled} | "
                                     f"{(out - ref).abs().max().item():.3g} | {gradient} | {finite} |")
    return lines


def check_lossnet(ctx: Context) -> list[str]:
    from m2s_nnunet.losses import LossNet

    torch.manual_seed(0)
    net = LossNet(pretrained=False).to(ctx.device)
    side = ctx.size
    pred = torch.rand(4, 1, side, side, device=ctx.device, requires_grad=True)
    target = (torch.rand(4, 1, side, side, device=ctx.device) > 0.5).float()
    ref = net(pred, target)
    (g_ref,) = torch.autograd.grad(ref, pred)
    with ctx.autocast():
        amp = net(pred, target)
    (g_amp,) = torch.autograd.grad(amp.float(), pred)
    cos = torch.nn.functional.cosine_similarity(g_ref.flatten(), g_amp.flatten(), dim=0).item()
    return [f"- LossNet at {side}x{side} (VGG16 sees {net.input_size((side, side))}): fp32 {ref.item():.5g}, "
            f"autocast {amp.item():.5g} (relative difference {abs(amp.item() - ref.item()) / ref.item():.2e}); "
            f"gradient cosine {cos:.5f}; finite: {bool(torch.isfinite(amp).item())}"]


def check_training_steps(ctx: Context) -> list[str]:
    """``M2SNetTrainer``'s network and loss (Res2Net-50 + 0.1 LossNet, random weights) under autocast + GradScaler."""
    import steplib

    with tempfile.TemporaryDirectory() as tmp:
        plans = steplib.make_builtin_plans(Path(tmp), (ctx.size, ctx.size), 1000, 3, 2, Path(tmp) / "plan.log")
        s = steplib.load_setup(plans, plans.parent / "dataset.json", "2d", 2, ctx.device, ctx.device.type == "cuda")
    spec = steplib.Spec("m2s", "M2SNetTrainer")
    net = steplib.build_network(spec, s)
    case = steplib.TrainCase(spec, s, net, steplib.build_optimizer(spec, net, s))
    losses = [case.step(ctx.autocast()) for _ in range(ctx.steps)]  # autocast + GradScaler on CUDA
    finite = all(math.isfinite(v) for v in losses)
    return [f"- {ctx.steps} training steps at patch {list(s.patch)}, batch 2, autocast {ctx.amp_dtype}: "
            f"losses {losses[0]:.4f} -> {losses[-1]:.4f}, all finite: **{finite}**"]


# ------------------------------------------------------------------------------------------- 2. speed
def check_speed(ctx: Context) -> list[str]:
    import speed_table

    out = []
    cases = ["3d_hippo"] if ctx.smoke else list(speed_table.CASES) + ["predictor", "predictor_3d"]
    for compile_ in (False, True):
        if compile_ and ctx.smoke:
            out.append("- torch.compile: not run in the CPU smoke test")
            continue
        argv = ["--device", ctx.device.type, "--cases", *cases] + (["--quick"] if ctx.smoke else [])
        if compile_:
            argv.append("--compile")
        md, _ = speed_table.run(speed_table.parse_args(argv))
        out += [f"### torch.compile {'on' if compile_ else 'off'}", "", *md.splitlines()[2:], ""]
    return out


# ------------------------------------------------------------------------------------------- 3. memory model
def check_memory_model(ctx: Context) -> list[str]:
    import steplib

    from m2s_nnunet.planning import m2snet_configuration, measure_memory_model
    from m2s_nnunet.settings import M2SNetSettings

    lines = ["| target GB | planned batch | patch | model's estimate GB | measured max_memory_allocated GB |",
             "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        plans = steplib.make_builtin_plans(Path(tmp), (ctx.size, ctx.size), 1000, 3, 2, Path(tmp) / "plan.log")
        s = steplib.load_setup(plans, plans.parent / "dataset.json", "2d", 2, ctx.device, ctx.device.type == "cuda")
        base = s.config.configuration
        settings = M2SNetSettings(dim=2, encoder="res2net50d")  # the paper's model, with LossNet
        model = measure_memory_model(settings, base, 3, 2)
        for target in ((8.0, 11.0, 24.0) if not ctx.smoke else (8.0,)):
            config = m2snet_configuration(base, model, 1, target, 1000 * ctx.size**2, settings)
            batch = config["batch_size"] if not ctx.smoke else 1
            patch = config["patch_size"] if not ctx.smoke else [ctx.size, ctx.size]
            measured = _peak_training_memory_gb(ctx, s, batch, patch)
            est = model.bytes_for(batch, patch, 1) / 1e9
            shown = "-" if measured is None else f"{measured:.2f}"
            lines.append(f"| {target:g} | {batch} | {patch} | {est:.2f} | {shown} |")
    if ctx.device.type != "cuda":
        lines.append("- CPU smoke: no CUDA allocator, the measured column is empty")
    return lines


def _peak_training_memory_gb(ctx: Context, s, batch: int, patch: list[int]) -> float | None:
    import steplib

    s.batch, s.patch = batch, tuple(patch)
    spec = steplib.Spec("m2s", "M2SNetTrainer")
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(ctx.device)
    net = steplib.build_network(spec, s)
    case = steplib.TrainCase(spec, s, net, steplib.build_optimizer(spec, net, s))
    for _ in range(2):
        case.step()
    if ctx.device.type != "cuda":
        return None
    torch.cuda.synchronize(ctx.device)
    peak = torch.cuda.max_memory_allocated(ctx.device) / 1e9
    del case, net
    return peak


# ------------------------------------------------------------------------------------------- 4. DDP
def _ddp_worker(rank: int, world: int, port: int, backend: str, result_file: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from m2s_nnunet.network import M2SNet

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=world)
    device = torch.device(f"cuda:{rank}") if backend == "nccl" else torch.device("cpu")
    torch.manual_seed(0)
    net = M2SNet(3, 2, encoder="resnet18", side_heads=True, deep_supervision=True).to(device)
    if backend == "nccl":
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    ddp = DistributedDataParallel(net, device_ids=[rank] if backend == "nccl" else None)
    torch.manual_seed(rank)  # different data per rank, as DDP training has
    x = torch.randn(2, 3, 64, 64, device=device)
    sum(o.float().pow(2).mean() for o in ddp(x)).backward()
    flat = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    unused = sum(p.grad is None for p in net.parameters())
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        diff = max((g - gathered[0]).abs().max().item() for g in gathered)
        Path(result_file).write_text(f"{diff} {unused}")
    dist.destroy_process_group()


def check_ddp(ctx: Context) -> list[str]:
    import torch.multiprocessing as mp

    if ctx.device.type == "cuda" and torch.cuda.device_count() < 2:
        return [f"- skipped: {torch.cuda.device_count()} GPU (needs 2)"]
    backend = "nccl" if ctx.device.type == "cuda" else "gloo"
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "ddp.txt"
        mp.spawn(_ddp_worker, args=(2, 29500 + os.getpid() % 1000, backend, str(result)), nprocs=2, join=True)
        diff, unused = result.read_text().split()
    return [f"- 2-process DDP step ({backend}{', SyncBatchNorm' if backend == 'nccl' else ''}): max gradient "
            f"difference between ranks {float(diff):.3g}, parameters without a gradient: {unused}"]


# ------------------------------------------------------------------------------------------- main
CHECKS = {
    "fixed filters: fast path vs plain convolution": check_fixed_filters,
    "subtraction unit: fused paths vs separate filters": check_subtraction_unit,
    "LossNet under autocast": check_lossnet,
    "training steps under autocast": check_training_steps,
    "throughput and activation memory vs the U-Net": check_speed,
    "memory model vs max_memory_allocated": check_memory_model,
    "DDP": check_ddp,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=BENCH / "out" / "gpu_check.md")
    p.add_argument("--cpu-smoke", action="store_true", help="run every check on the CPU at toy sizes")
    p.add_argument("--only", nargs="+", choices=list(CHECKS), default=list(CHECKS), metavar="CHECK")
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available() and not args.cpu_smoke:
        text = "# GPU check\n\nSkipped: no CUDA device on this machine (`torch.cuda.is_available()` is False).\n"
        args.out.write_text(text)
        print(text.strip())
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu_smoke else "cpu")
    ctx = Context(device, args.cpu_smoke)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke run, toy sizes)"
    report = [f"# GPU check: {name}", "", f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}", ""]
    failed = 0
    for title in args.only:
        print(f"== {title}", flush=True)
        start = time.perf_counter()
        try:
            body = CHECKS[title](ctx)
        except Exception:  # one failing check must not hide the others' results
            failed += 1
            body = ["```", traceback.format_exc().strip(), "```"]
        report += [f"## {title} ({time.perf_counter() - start:.0f} s)", "", *body, ""]
        args.out.write_text("\n".join(report))  # partial report survives a time limit
    print("\n".join(report))
    print(f"report: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
