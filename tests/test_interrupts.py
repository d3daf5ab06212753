"""Interrupted runs: kill -9 and Ctrl-C of ``convert`` (the old dataset stays intact, nothing half-written is
visible to nnU-Net, the next run cleans up and says so), and kill -9 of ``nnUNetv2_train`` (no orphaned workers;
``--c`` continues from the last epoch and reaches the same final epoch)."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m2s_nnunet.conversion import ConvertOptions, convert
from m2s_nnunet.staging import host_tag


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _source(root: Path, n: int = 60, size: int = 160) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    img, msk = root / "images", root / "masks"
    img.mkdir(parents=True)
    msk.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(img / f"c{i:03d}.png")
        mask = np.zeros((size, size), np.uint8)
        mask[10:40, 10 + i % 50:60 + i % 50] = 255
        Image.fromarray(mask).save(msk / f"c{i:03d}.png")
    return img, msk


def _visible_datasets(raw: Path, dataset_id: int) -> list[str]:
    """What nnU-Net's dataset lookup sees (``subdirs(nnUNet_raw, prefix='DatasetXXX')``: hidden folders excluded)."""
    return sorted(p.name for p in raw.iterdir() if p.is_dir() and p.name.startswith(f"Dataset{dataset_id:03d}"))


def _interrupt_convert(tmp_path: Path, sig: int) -> tuple[subprocess.CompletedProcess, Path, dict, Path]:
    """Convert once, then start an --overwrite run and send ``sig`` while it writes its hidden folder."""
    img, msk = _source(tmp_path / "src")
    raw = tmp_path / "raw"
    convert(ConvertOptions(img, msk, 501, "Kill", out=raw, progress=False))
    dataset = raw / "Dataset501_Kill"
    before = _digest(dataset)
    cmd = [sys.executable, "-m", "m2s_nnunet.cli", "convert", str(img), str(msk), "-d", "501", "-n", "Kill",
           "--out", str(raw), "--overwrite", "--resize", "144", "144"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = raw / f".Dataset501_Kill.partial-{host_tag()}-{proc.pid}"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if (partial / "imagesTr").is_dir() and any((partial / "imagesTr").iterdir()):
            proc.send_signal(sig)
            break
        time.sleep(0.002)
    out, err = proc.communicate(timeout=120)
    if not (partial / "imagesTr").exists() and proc.returncode == 0:
        pytest.skip("the conversion finished before it could be interrupted (machine too fast for this test)")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), dataset, before, partial


def test_convert_killed_with_sigkill_keeps_the_old_dataset_and_the_next_run_cleans_up(tmp_path):
    proc, dataset, before, partial = _interrupt_convert(tmp_path, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert _digest(dataset) == before  # the existing dataset is untouched
    assert _visible_datasets(dataset.parent, 501) == ["Dataset501_Kill"]  # the half-written one is hidden
    img, msk = tmp_path / "src" / "images", tmp_path / "src" / "masks"
    report = convert(ConvertOptions(img, msk, 501, "Kill", out=dataset.parent, overwrite=True, progress=False))
    assert not partial.exists()
    assert any(f"removed {partial}" in w and "interrupted" in w for w in report.warnings)
    assert [p.name for p in dataset.parent.iterdir()] == ["Dataset501_Kill"]


def test_ctrl_c_during_convert_prints_one_line_and_leaves_nothing_behind(tmp_path):
    proc, dataset, before, partial = _interrupt_convert(tmp_path, signal.SIGINT)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "interrupted (Ctrl-C)" in proc.stderr
    assert _digest(dataset) == before and not partial.exists()
    assert [p.name for p in dataset.parent.iterdir()] == ["Dataset501_Kill"]


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_training_killed_with_sigkill_resumes_with_c_and_leaves_no_orphans(tmp_path):
    """One smoke training (6 short epochs) killed after epoch 2: its data-augmentation workers must exit, and
    ``--c`` must continue from checkpoint_latest (not from an older checkpoint_best) to the same final epoch.
    The resumed model then gets an RGBA image to predict: the channel message, not nnU-Net's IndexError."""
    from nnunet_runner import make_env, run

    from m2s_nnunet.synthetic import make_rgb_dataset

    trainer = "M2SNetTrainer_smokeKill"
    env = make_env(tmp_path)
    folder = make_rgb_dataset(env["nnUNet_raw"], 935, "Kill", num_train=6, num_test=1, size=(64, 64))
    run("nnUNetv2_plan_and_preprocess", ["-d", "935", "-c", "2d", "-np", "1", "-npfp", "1"], env)
    fold = Path(env["nnUNet_results"]) / folder.name / f"{trainer}__nnUNetPlans__2d" / "fold_0"
    log = tmp_path / "train.log"
    from m2s_nnunet.nnunet_env import nnunet_command

    with open(log, "w") as out:
        proc = subprocess.Popen([nnunet_command("nnUNetv2_train"), "935", "2d", "0", "-tr", trainer, "-device",
                                 "cpu"], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and "Epoch 3" not in log.read_text():
        time.sleep(0.2)
    workers = _children(proc.pid)
    assert proc.poll() is None, log.read_text()[-3000:]
    proc.kill()
    proc.wait()
    assert workers, "expected data-augmentation worker processes"
    deadline = time.monotonic() + 15
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    orphans = [w for w in workers if _alive(w)]
    for w in orphans:
        subprocess.run(["kill", "-9", str(w)])
    assert not orphans, "data-augmentation workers outlived the killed trainer"
    assert (fold / "checkpoint_latest.pth").is_file() and not (fold / "checkpoint_final.pth").exists()
    latest = torch.load(fold / "checkpoint_latest.pth", map_location="cpu", weights_only=False)["current_epoch"]
    assert latest >= 3
    resumed = run("nnUNetv2_train", ["935", "2d", "0", "-tr", trainer, "-device", "cpu", "--c"], env)
    assert f"Epoch {latest}" in resumed.stdout and f"Epoch {latest - 1}\n" not in resumed.stdout
    final = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert final["current_epoch"] == 6
    rgba = tmp_path / "rgba_in"
    rgba.mkdir()
    Image.fromarray(np.full((64, 64, 4), 200, np.uint8), "RGBA").save(rgba / "rgba_0000.png")
    pred = run("nnUNetv2_predict", ["-i", str(rgba), "-o", str(tmp_path / "rgba_out"), "-d", "935", "-c", "2d",
                                    "-tr", trainer, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"],
               env, expect_ok=False)
    output = pred.stdout + pred.stderr
    assert pred.returncode != 0
    assert "M2SNet was built for (B, 3, H, W) inputs" in output and "rgba_0000.png: 4" in output
    assert "IndexError" not in output and "Traceback" not in output
    assert json.loads((fold.parent / "dataset.json").read_text())["channel_names"] == {"0": "R", "1": "G", "2": "B"}
