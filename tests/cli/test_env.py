"""``m2s-nnunet env``: output that is safe to ``eval``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from m2s_nnunet import cli
from m2s_nnunet.cli.env import env_exports
from m2s_nnunet.nnunet_env import ext_trainer_folder


def test_env_output_is_shell_quoted(tmp_path):
    evil = tmp_path / "data`touch pwned`$(touch pwned2) 'x'"
    lines = env_exports(str(tmp_path), {"nnUNet_raw": str(evil)})
    script = "\n".join(lines) + '\nprintf "%s" "$nnUNet_raw"'
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert proc.stdout == str(evil)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_env_adds_our_trainers_in_front_of_existing_ext_trainer_entries(tmp_path):
    mine = str(ext_trainer_folder())
    lines = env_exports(str(tmp_path), {"nnUNet_extTrainer": f"/opt/other_trainers:{mine}/"})
    export = next(line for line in lines if line.startswith("export nnUNet_extTrainer="))
    assert export == f"export nnUNet_extTrainer={mine}:/opt/other_trainers"


def test_env_command_prints_quoted_exports(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "a b"))
    assert cli.main(["env", "--base", str(tmp_path)]) == 0
    assert f"export nnUNet_raw='{tmp_path / 'a b'}'" in capsys.readouterr().out
    assert Path(os.environ["nnUNet_raw"]).name == "a b"
