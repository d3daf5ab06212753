"""``m2s-nnunet doctor``: checks that agree with what nnU-Net and the file system do."""

from __future__ import annotations

from m2s_nnunet import doctor
from m2s_nnunet.nnunet_env import ext_trainer_folder


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
