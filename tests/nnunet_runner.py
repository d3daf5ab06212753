"""Helpers to run nnU-Net's real command-line tools from tests."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from m2s_nnunet.nnunet_env import nnunet_command, work_env

TEST_TRAINERS = Path(__file__).resolve().parent / "ext_trainers"


def make_env(work: Path, **extra: str) -> dict[str, str]:
    """nnU-Net folders in ``work``; our trainers plus the test-only ones; CPU-friendly worker counts."""
    env = work_env(work)
    env["nnUNet_extTrainer"] += os.pathsep + str(TEST_TRAINERS)
    env["nnUNet_n_proc_DA"] = "1"
    env["nnUNet_def_n_proc"] = "1"
    env.update(extra)
    return env


def run(name: str, args: list[str], env: dict[str, str], expect_ok: bool = True,
        timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([nnunet_command(name), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if expect_ok and proc.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def write_two_fold_split(preprocessed: Path, cases: list[str]) -> None:
    """A 2-fold split (nnU-Net's splits_final.json format) so that CV-level tools run on two folds."""
    half = len(cases) // 2
    folds = [{"train": cases[half:], "val": cases[:half]}, {"train": cases[:half], "val": cases[half:]}]
    (preprocessed / "splits_final.json").write_text(json.dumps(folds, indent=2))
