"""The ``m2s-nnunet`` command itself: one message and exit code 2 for refusals, ``env`` output that is safe to
``eval``, and ``doctor`` checks that agree with what nnU-Net and the file system do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from m2s_nnunet import cli, doctor
from m2s_nnunet.errors import UserError
from m2s_nnunet.nnunet_env import ext_trainer_folder


def test_env_output_is_shell_quoted(tmp_path):
    evil = tmp_path / "data`touch pwned`$(touch pwned2) 'x'"
    lines = cli.env_exports(str(tmp_path), {"nnUNet_raw": str(evil)})
    script = "\n".join(lines) + '\nprintf "%s" "$nnUNet_raw"'
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert proc.stdout == str(evil)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_env_adds_our_trainers_in_front_of_existing_ext_trainer_entries(tmp_path):
    mine = str(ext_trainer_folder())
    lines = cli.env_exports(str(tmp_path), {"nnUNet_extTrainer": f"/opt/other_trainers:{mine}/"})
    export = next(line for line in lines if line.startswith("export nnUNet_extTrainer="))
    assert export == f"export nnUNet_extTrainer={mine}:/opt/other_trainers"


def _folders_env(monkeypatch, tmp_path, **override):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        monkeypatch.setenv(name, override.get(name, str(folder)))
    monkeypatch.setenv("nnUNet_extTrainer", override.get("nnUNet_extTrainer", str(ext_trainer_folder())))


def test_doctor_accepts_a_trailing_slash_in_ext_trainer(tmp_path, monkeypatch, capsys):
    _folders_env(monkeypatch, tmp_path, nnUNet_extTrainer=str(ext_trainer_folder()) + "/")
    assert doctor._variables() == 0
    assert "[ok  ] nnUNet_extTrainer contains" in capsys.readouterr().out


def test_doctor_says_when_a_folder_variable_points_at_a_file(tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    _folders_env(monkeypatch, tmp_path, nnUNet_results=str(a_file))
    assert doctor._variables() == 1
    out = capsys.readouterr().out
    assert f"[FAIL] nnUNet_results={a_file} is a file, not a folder" in out and "mkdir" not in out


def test_doctor_checks_that_folders_are_writable(tmp_path, monkeypatch, capsys, readonly_dir):
    _folders_env(monkeypatch, tmp_path, nnUNet_preprocessed=str(readonly_dir))
    assert doctor._variables() == 1
    assert "not writable" in capsys.readouterr().out


def test_doctor_only_warns_about_a_read_only_nnunet_raw(tmp_path, monkeypatch, capsys, readonly_dir):
    """nnU-Net's plan, train and predict only read nnUNet_raw; only convert writes there (and checks it itself)."""
    _folders_env(monkeypatch, tmp_path, nnUNet_raw=str(readonly_dir))
    assert doctor._variables() == 0
    out = capsys.readouterr().out
    assert f"[warn] nnUNet_raw={readonly_dir} is read-only" in out and "--out" in out and "[FAIL]" not in out


def test_doctor_suggests_a_quoted_mkdir_for_a_missing_folder(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "new folder"
    _folders_env(monkeypatch, tmp_path, nnUNet_raw=str(missing))
    assert doctor._variables() == 0
    assert f"mkdir -p '{missing}'" in capsys.readouterr().out


@pytest.mark.parametrize("error, code, text", [
    (UserError("bad thing", "/data/x.png", "do this"), 2, "/data/x.png: bad thing\n  fix: do this"),
    (PermissionError(13, "Permission denied", "/data/out/per_case.csv"), 2,
     "Permission denied: /data/out/per_case.csv"),
    (KeyboardInterrupt(), 130, "interrupted (Ctrl-C)"),
])
def test_main_turns_errors_into_one_message(monkeypatch, capsys, error, code, text):
    def handler(args):
        raise error

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.set_defaults(func=handler)
    for action in parser._subparsers._group_actions[0].choices.values():
        action.set_defaults(func=handler)
    assert cli.main(["doctor"]) == code
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err


def test_env_command_prints_quoted_exports(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "a b"))
    assert cli.main(["env", "--base", str(tmp_path)]) == 0
    assert f"export nnUNet_raw='{tmp_path / 'a b'}'" in capsys.readouterr().out
    assert Path(os.environ["nnUNet_raw"]).name == "a b"
