"""``m2s-nnunet env``: the shell exports nnU-Net and M2SNet need."""

from __future__ import annotations

import argparse
import os


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("env", help="print the environment variables nnU-Net + M2SNet need")
    p.add_argument("--base", default=".", help="folder for nnUNet_raw/preprocessed/results when unset")
    return p


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


def run(args: argparse.Namespace) -> int:
    print("# Exports for nnU-Net with M2SNet (add them to your shell profile):")
    print("\n".join(env_exports(args.base)))
    print("# Offline machines: place pretrained weights and point to them, see `m2s-nnunet doctor`")
    return 0
