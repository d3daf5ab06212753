"""``m2s-nnunet doctor``: versions, variables, trainer discovery, weights and device (``m2s_nnunet.doctor``)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return subparsers.add_parser("doctor", help="check versions, variables, trainer discovery, weights, device")


def run(args: argparse.Namespace) -> int:
    """1 when something blocks training, else 0."""
    from m2s_nnunet.doctor import run_doctor

    return run_doctor()
