"""``m2s-nnunet bench``: run the benchmark scripts of a source checkout (they live in the repository's ``bench/``).

The scripts are not part of the installed package (they import nnU-Net's planner and trainers in ways a
library should not), so this command only works from a source checkout (``pip install -e .``). Every argument
after the benchmark's name is forwarded unchanged, e.g. ``m2s-nnunet bench network --sizes 128 --lossnet``;
``m2s-nnunet bench network --help`` shows the script's own options.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import m2s_nnunet

BENCHMARKS = {
    "network": ("bench_network.py", "M2SNet forward/backward time per image, fast fixed filters, LossNet"),
    "vs-unet": ("bench_vs_unet.py", "M2SNet vs nnU-Net's U-Net at the same plans: it/s, inference, memory, GFLOP/s"),
    "equal-budget": ("equal_budget.py", "train U-Net and M2SNet for the same wall-clock time, score held-out images"),
    "accuracy": ("accuracy.py", "same data, plans, fold and schedule for several trainers; paired test on held-out"),
    "profile": ("profile_step.py", "torch.profiler split of one M2SNet training step"),
}


def bench_folder() -> Path:
    """The repository's ``bench/`` folder; a clear error when this is not a source checkout."""
    folder = Path(m2s_nnunet.__file__).resolve().parents[1] / "bench"
    if not (folder / "benchlib.py").is_file():
        raise FileNotFoundError(
            f"benchmark scripts not found in {folder}: `m2s-nnunet bench` needs a source checkout of m2s-nnunet "
            "installed with `pip install -e .` (the scripts are not shipped in the wheel)"
        )
    return folder


def run_bench(args: argparse.Namespace) -> int:
    script = bench_folder() / BENCHMARKS[args.benchmark][0]
    forwarded = list(args.bench_args)
    if forwarded[:1] == ["--"]:
        forwarded = forwarded[1:]
    return subprocess.call([sys.executable, str(script), *forwarded])


def add_bench_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``bench BENCHMARK [ARGS...]`` to the ``m2s-nnunet`` command."""
    listing = "\n".join(f"  {name:13s} {help_}" for name, (_, help_) in BENCHMARKS.items())
    p = subparsers.add_parser(
        "bench",
        help="run a benchmark script of the source checkout (network, vs-unet, equal-budget, accuracy, profile)",
        description=f"Run a benchmark of the repository's bench/ folder; arguments after its name are forwarded.\n\n"
                    f"benchmarks:\n{listing}\n\nExample: m2s-nnunet bench network --device cpu --sizes 128 --lossnet",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("benchmark", choices=list(BENCHMARKS), help="which benchmark")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for the script (see BENCHMARK --help)")
    p.set_defaults(func=run_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m m2s_nnunet.bench_cli BENCHMARK [ARGS...]`` (the same as ``m2s-nnunet bench``)."""
    parser = argparse.ArgumentParser(prog="m2s-nnunet")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except FileNotFoundError as err:
        print(f"m2s-nnunet bench: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
