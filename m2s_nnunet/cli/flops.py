"""``m2s-nnunet flops``: parameters and multiply-accumulates of M2SNet (``m2s_nnunet.complexity``)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from m2s_nnunet.settings import DEFAULT_ENCODER

    p = subparsers.add_parser("flops", help="parameters and MACs of M2SNet")
    p.add_argument("--encoder", default=DEFAULT_ENCODER)
    p.add_argument("--size", type=int, nargs=2, default=[352, 352], metavar=("H", "W"))
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--classes", type=int, default=1)
    p.add_argument("--json", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    from m2s_nnunet.complexity import complexity_report

    report = complexity_report(args.encoder, args.in_channels, args.classes, tuple(args.size))
    p = report["params"]
    print(f"M2SNet ({report['encoder']}), input {report['input']}")
    print(f"  parameters: {p['total'] / 1e6:.2f} M (encoder {p['encoder'] / 1e6:.2f} M, "
          f"decoder {p['decoder'] / 1e6:.2f} M); paper: ~27.7 M with Res2Net-50")
    print(f"  GMACs (multiply-accumulates; FLOPs = 2 x MACs): {report['gmacs_fast_filters']:.2f} with the fast "
          f"fixed filters, {report['gmacs_plain_filters']:.2f} with plain all-ones convolutions "
          f"(encoder alone {report['gmacs_encoder']:.2f})")
    print("  The paper's '~9 GFLOPs' does not match the network as described (see docs/network.md in the repository).")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0
