"""``m2s-nnunet demo``: generate data, plan, train, predict and score on the CPU (``m2s_nnunet.demo``)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="generate data, plan, train, predict and score on CPU (a few minutes)")
    p.add_argument("--work-dir", default="m2s_work")
    p.add_argument("--trainer", default="M2SNetTrainer_demo")
    return p


def run(args: argparse.Namespace) -> int:
    from m2s_nnunet.demo import run_demo

    run_demo(args.work_dir, trainer=args.trainer)
    return 0
