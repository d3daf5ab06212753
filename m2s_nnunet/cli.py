"""The ``m2s-nnunet`` command: env, doctor, plan, demo, flops, and the analysis tools."""

from __future__ import annotations

import argparse
import json
import os
import sys

from m2s_nnunet import __version__, cli_analysis
from m2s_nnunet.bench_cli import add_bench_parser
from m2s_nnunet.cv.cli import add_cv_parser


def env_exports(base: str, environ: dict[str, str] | None = None) -> list[str]:
    """``export`` lines for ``eval "$(m2s-nnunet env)"``: shell-quoted (a folder name is data, never a command),
    current values kept, our trainer folder added in front of an existing ``nnUNet_extTrainer``."""
    from shlex import quote

    from m2s_nnunet.nnunet_env import NNUNET_FOLDERS, with_ext_trainer

    environ = dict(os.environ if environ is None else environ)
    lines = []
    for name in NNUNET_FOLDERS:
        value = environ.get(name) or os.path.abspath(os.path.join(base, name))
        lines.append(f"export {name}={quote(value)}")
    ext = with_ext_trainer({"nnUNet_extTrainer": environ.get("nnUNet_extTrainer", "")})["nnUNet_extTrainer"]
    lines.append(f"export nnUNet_extTrainer={quote(ext)}")
    return lines


def _cmd_env(args: argparse.Namespace) -> int:
    print("# Exports for nnU-Net with M2SNet (add them to your shell profile):")
    print("\n".join(env_exports(args.base)))
    print("export nnUNet_compile=f   # torch.compile is opt-in for M2SNet (not validated yet)")
    print("# Offline machines: place pretrained weights and point to them, see `m2s-nnunet doctor`")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from m2s_nnunet.doctor import run_doctor

    return run_doctor()


def _cmd_plan(args: argparse.Namespace) -> int:
    from m2s_nnunet.planning import plan_m2snet

    path = plan_m2snet(args.dataset, gpu_memory_gb=args.gpu_memory_gb, encoder=args.encoder,
                       patch_size=args.patch_size, source_plans=args.source_plans, plans_name=args.plans_name,
                       lossnet=not args.no_lossnet, overwrite=args.overwrite)
    print(f"wrote {path}")
    for name, config in json.loads(path.read_text())["configurations"].items():
        if "m2snet" not in config:
            print(f"  {name}: inherits from {config.get('inherits_from')}")
            continue
        memory = config["m2snet"]["memory_model"]
        pinned = " (pinned in the plans)" if "encoder" in config["m2snet"] else ""
        print(f"  {name}: patch {config['patch_size']}, batch {config['batch_size']}, sized for encoder "
              f"{memory['encoder']}{pinned}, estimated {memory['estimated_gb']} GB of {args.gpu_memory_gb} GB")
    print(f"  train: nnUNetv2_train {args.dataset} 2d 0 -tr M2SNetTrainer -p {args.plans_name}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from m2s_nnunet.demo import run_demo

    run_demo(args.work_dir, trainer=args.trainer)
    return 0


def _cmd_flops(args: argparse.Namespace) -> int:
    from m2s_nnunet.complexity import complexity_report

    report = complexity_report(args.encoder, args.in_channels, args.classes, tuple(args.size))
    p = report["params"]
    print(f"M2SNet ({report['encoder']}), input {report['input']}")
    print(f"  parameters: {p['total'] / 1e6:.2f} M (encoder {p['encoder'] / 1e6:.2f} M, "
          f"decoder {p['decoder'] / 1e6:.2f} M); paper: ~27.7 M with Res2Net-50")
    print(f"  GMACs (multiply-accumulates; FLOPs = 2 x MACs): {report['gmacs_fast_filters']:.2f} with the fast "
          f"fixed filters, {report['gmacs_plain_filters']:.2f} with plain all-ones convolutions "
          f"(encoder alone {report['gmacs_encoder']:.2f})")
    print("  The paper's '~9 GFLOPs' does not match the network as described (see M2SNET_SPEC / README).")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from m2s_nnunet.defaults import DEFAULT_ENCODER

    parser = argparse.ArgumentParser(prog="m2s-nnunet", description="M2SNet for nnU-Net v2")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("env", help="print the environment variables nnU-Net + M2SNet need")
    p.add_argument("--base", default=".", help="folder for nnUNet_raw/preprocessed/results when unset")
    p.set_defaults(func=_cmd_env)

    p = sub.add_parser("doctor", help="check versions, variables, trainer discovery, weights, device")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("plan", help="write M2SNetPlans.json (patch and batch sizes for M2SNet, 2D and 3D)")
    p.add_argument("-d", "--dataset", required=True, help="dataset id or DatasetXXX_Name (already planned by nnU-Net)")
    p.add_argument("--gpu-memory-gb", type=float, default=8.0, help="GPU memory target (default 8, like nnU-Net)")
    p.add_argument("--encoder", default=None, help=f"timm encoder for 2d (default {DEFAULT_ENCODER}; 'plans' "
                   "for nnU-Net's residual encoder); 3D always uses the plans encoder")
    p.add_argument("--patch-size", type=int, nargs="+", default=None,
                   help="patch size for the configurations with that many axes (e.g. 352 352)")
    p.add_argument("--source-plans", default="nnUNetPlans")
    p.add_argument("--plans-name", default="M2SNetPlans")
    p.add_argument("--no-lossnet", action="store_true", help="size batches for training without LossNet")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("demo", help="generate data, plan, train, predict and score on CPU (a few minutes)")
    p.add_argument("--work-dir", default="m2s_work")
    p.add_argument("--trainer", default="M2SNetTrainer_demo")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("flops", help="parameters and MACs of M2SNet")
    p.add_argument("--encoder", default=DEFAULT_ENCODER)
    p.add_argument("--size", type=int, nargs=2, default=[352, 352], metavar=("H", "W"))
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--classes", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_flops)

    cli_analysis.add_convert_parser(sub)
    cli_analysis.add_evaluate_parser(sub)
    cli_analysis.add_summarize_parser(sub)
    add_cv_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Exit codes: 0 done, 2 refused input/output (one message, no traceback; see
    ``m2s_nnunet.errors``), 1 another failure (e.g. an nnU-Net step failed), 130 interrupted (Ctrl-C)."""
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


if __name__ == "__main__":
    sys.exit(main())
