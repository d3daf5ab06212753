"""nnU-Net environment: folders, trainer discovery path and a runner for nnU-Net's commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
SHIM_NAME = "m2s_nnunet_trainers.py"
_SHIM_SOURCE = '''"""Discovery shim for nnU-Net (written by m2s-nnunet): re-exports the installed trainers and installs
the guards of m2s_nnunet.nnunet_guards in nnU-Net's process."""

from m2s_nnunet.nnunet_guards import install as _install_guards
from m2s_nnunet.training import *  # noqa: F401,F403
from m2s_nnunet.training import __all__  # noqa: F401

_install_guards()
'''


def ext_trainer_folder() -> Path:
    """The folder for ``nnUNet_extTrainer``.

    In a source checkout (``pip install -e .``) this is the repository's ``trainers/``. For a regular
    install, the same short shim is written to ``~/.m2s_nnunet/trainers`` (and rewritten when it is outdated).
    """
    repo_folder = Path(__file__).resolve().parents[1] / "trainers"
    if (repo_folder / SHIM_NAME).is_file():
        return repo_folder
    user_folder = Path.home() / ".m2s_nnunet" / "trainers"
    shim = user_folder / SHIM_NAME
    if not shim.is_file() or shim.read_text() != _SHIM_SOURCE:
        user_folder.mkdir(parents=True, exist_ok=True)
        shim.write_text(_SHIM_SOURCE)
    return user_folder


def same_folder(a: str | Path, b: str | Path) -> bool:
    """Whether two spellings name the same folder (trailing slashes, '..', symbolic links)."""
    return os.path.realpath(os.path.expanduser(str(a))) == os.path.realpath(os.path.expanduser(str(b)))


def with_ext_trainer(env: dict[str, str]) -> dict[str, str]:
    """Add our trainer folder to ``nnUNet_extTrainer`` (kept first, other entries preserved, no duplicates)."""
    folder = str(ext_trainer_folder())
    parts = [p for p in env.get("nnUNet_extTrainer", "").split(os.pathsep) if p and not same_folder(p, folder)]
    env["nnUNet_extTrainer"] = os.pathsep.join([folder, *parts])
    return env


def work_env(work_dir: str | Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for running nnU-Net inside ``work_dir`` (raw/preprocessed/results subfolders), on CPU-friendly
    settings: one augmentation worker per core at most, two helper processes, torch.compile off."""
    env = dict(os.environ if base is None else base)
    work = Path(work_dir).resolve()
    for name in NNUNET_FOLDERS:
        (work / name).mkdir(parents=True, exist_ok=True)
        env[name] = str(work / name)
    env.setdefault("nnUNet_n_proc_DA", str(max(1, min(2, os.cpu_count() or 1))))
    env.setdefault("nnUNet_def_n_proc", "2")
    env.setdefault("nnUNet_compile", "f")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return with_ext_trainer(env)


def nnunet_command(name: str) -> str:
    """Absolute path of an nnU-Net console script (next to this Python first)."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"'{name}' not found: is nnunetv2 installed in this environment?")
    return found


def run_nnunet(name: str, args: list[str], env: dict[str, str], log: Path | None = None,
               quiet: bool = False) -> None:
    """Run an nnU-Net command, streaming its output (nnU-Net prints per-epoch progress) and teeing to ``log``."""
    cmd = [nnunet_command(name), *args]
    print(f"$ {' '.join([name, *args])}", flush=True)
    handle = open(log, "a") if log else None
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            if handle:
                handle.write(line)
            tail = (tail + [line])[-40:]
            if not quiet:
                print("  " + line, end="", flush=True)
        code = proc.wait()
    finally:
        if handle:
            handle.close()
    if code != 0:
        where = f" (full log: {log})" if log else ""
        raise RuntimeError(f"{name} failed with exit code {code}{where}. Last lines:\n{''.join(tail)}")


def find_dataset_folder(dataset: str, root: str | Path) -> Path | list[Path]:
    """``root/DatasetXXX_Name`` for an id (``4``, ``004``), a full name or a bare name (``Hippocampus``).

    The one lookup every command shares (nnunetv2's ``maybe_convert_to_dataset_name`` searches the three
    environment folders only and raises a bare RuntimeError; commands here search the folder the user named).
    Returns the folder, or the list of candidates (empty or ambiguous) so each caller can word its own error.
    """
    import re

    root = Path(root)
    if (root / dataset).is_dir():  # a folder named exactly as given
        return root / dataset
    match = re.fullmatch(r"(?:Dataset)?(\d+)(?:_.*)?", dataset)
    pattern = f"Dataset{int(match.group(1)):03d}_*" if match else f"Dataset*_{dataset}"
    hits = sorted(p for p in root.glob(pattern) if p.is_dir())
    return hits[0] if len(hits) == 1 else hits
