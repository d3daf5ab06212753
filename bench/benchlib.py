"""Shared helpers of the benchmark scripts: device choice, honest timing, memory readings, Markdown output.

Timing rules used everywhere: warm-up calls first (allocator, cuDNN autotuning, lazy inits), then the median
of N repeats; on CUDA every measured call is bracketed by ``torch.cuda.synchronize`` so that asynchronous
kernels are counted. When several variants are compared they are run *interleaved* (A, B, A, B, ...) so
that slow drifts of the machine (thermal, other load) hit all of them alike.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch


def pick_device(name: str | None) -> torch.device:
    """``cuda`` when available unless told otherwise; a clear error for an unavailable CUDA."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was requested but torch sees no CUDA device; use --device cpu")
    return device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_device(device: torch.device) -> str:
    """One line naming the hardware and the thread count (what the numbers depend on)."""
    threads = torch.get_num_threads()
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)} (torch {torch.__version__}, CPU threads: {threads})"
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from m2s_nnunet.cpu_bf16 import cpu_computes_bf16

    bf16 = "native" if cpu_computes_bf16() else "emulated"
    return (f"cpu: {model}, {os.cpu_count()} cores visible, torch threads: {threads}, bf16 {bf16} "
            f"(torch {torch.__version__})")


def time_once(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def time_interleaved(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int,
                     repeats: int) -> dict[str, list[float]]:
    """Seconds per call of every function: ``warmup`` untimed calls each, then ``repeats`` rounds A, B, C, ..."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            samples[name].append(time_once(fn, device))
    return samples


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_mib() -> float:
    """Resident set size now (Linux /proc; NaN elsewhere)."""
    kib = _proc_status_kib("VmRSS")
    return kib / 1024 if kib is not None else float("nan")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (VmHWM; ru_maxrss as fallback).

    Both are process-lifetime peaks: compare models only when each ran in its own fresh process.
    """
    kib = _proc_status_kib("VmHWM")
    if kib is not None:
        return kib / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def matmul_peak_gflops(device: torch.device, n: int = 2048, dtype: torch.dtype = torch.float32,
                       repeats: int = 5) -> float:
    """Achieved GFLOP/s of an n x n x n matrix product (2 n^3 FLOPs): the practical peak of the device."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    samples = time_interleaved({"mm": lambda: torch.mm(a, b)}, device, warmup=2, repeats=repeats)["mm"]
    return 2 * n**3 / median(samples) / 1e9


def conv_peak_gflops(device: torch.device, dtype: torch.dtype = torch.float32, repeats: int = 5) -> float:
    """Achieved GFLOP/s of a 256->256 3x3 convolution at 56x56 (direct-convolution FLOP count).

    A second reference next to the matmul: on some CPUs (e.g. AMD with MKL) the oneDNN convolution runs far
    faster than MKL's sgemm, and Winograd kernels can even beat the direct FLOP count.
    """
    import torch.nn.functional as F

    batch = 32 if device.type == "cuda" else 1
    x = torch.randn(batch, 256, 56, 56, device=device, dtype=dtype)
    w = torch.randn(256, 256, 3, 3, device=device, dtype=dtype)
    samples = time_interleaved({"conv": lambda: F.conv2d(x, w, padding=1)}, device, warmup=2, repeats=repeats)
    return 2 * batch * 256 * 256 * 9 * 56 * 56 / median(samples["conv"]) / 1e9


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (2 x MACs) of convolutions and matrix products executed by ``fn``, backward included.

    Uses PyTorch's ``FlopCounterMode``; pooling, norms, activations and resizes are not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 2) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v, digits) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(markdown: str, data: dict, out: Path | None, json_path: Path | None) -> None:
    """Markdown to stdout (always) and to ``out``; raw numbers (every sample) to ``json_path``."""
    print(markdown, flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown + "\n")
        print(f"\nwrote {out}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(f"wrote {json_path}")


def precision_context(device: torch.device, amp: bool):
    """nnU-Net's choice: autocast (fp16) on CUDA, plain fp32 elsewhere."""
    import contextlib

    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()
