"""The ``m2s-nnunet`` command: :func:`main` and the top-level parser.

Each subcommand lives in its own module of this package (``env``, ``doctor``, ``plan``, ``demo``, ``flops``,
``convert``, ``evaluate``, ``summarize``, ``cv``) and exposes the same two functions:

- ``add_parser(subparsers) -> argparse.ArgumentParser``: register the subcommand and its options;
- ``run(args) -> int``: do the work for the parsed options and return the exit code (0 when done).

Exit codes of :func:`main`: 0 done; 2 a refused input or output (an ``m2s_nnunet.errors.UserError``, or an
``OSError``, printed with the path it concerns), one message without a traceback; 1 another failure (a
``RuntimeError`` or ``ValueError``, e.g. an nnU-Net step failed); 130 interrupted (Ctrl-C).

The modules import only the standard library when they are loaded; torch, nnU-Net and pandas are imported
inside ``run`` so that ``m2s-nnunet --help`` starts fast.
"""

from __future__ import annotations

import argparse
import sys

from m2s_nnunet import __version__
from m2s_nnunet.cli import convert, cv, demo, doctor, env, evaluate, flops, plan, summarize

COMMANDS = (env, doctor, plan, demo, flops, convert, evaluate, summarize, cv)


def build_parser() -> argparse.ArgumentParser:
    """The ``m2s-nnunet`` parser; each subcommand's parsed namespace has ``func``, its module's ``run``."""
    parser = argparse.ArgumentParser(prog="m2s-nnunet", description="M2SNet for nnU-Net v2")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub).set_defaults(func=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand and return its exit code (see the module docstring for the codes)."""
    from m2s_nnunet.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, UserError, describe_os_error

    args = build_parser().parse_args(argv)
    prefix = f"m2s-nnunet {args.command}: error:"
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"{prefix} {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:  # unreadable input, read-only or full disk: name the path instead of a traceback
        print(f"{prefix} {describe_os_error(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"\nm2s-nnunet {args.command}: interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (RuntimeError, ValueError) as err:
        print(f"{prefix} {err}", file=sys.stderr)
        return 1
