"""A 2-fold dataset goes through the documented commands with no fold flag they do not show.

The "Fewer than five folds" block of docs/usage.md is run as written (with ``--folds 2`` and folds 0 1 for a
small generated set, and ``M2SNetTrainer_smoke`` instead of the full ``M2SNetTrainer_scratch`` schedule): convert,
plan, train, find_best_configuration, predict, summarize. Then ``m2s-nnunet cv`` takes the split's two folds by
itself and refuses fold 2.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nnunet_runner import make_env

from m2s_nnunet.synthetic import make_rgb_dataset

pytestmark = pytest.mark.slow

USAGE = Path(__file__).resolve().parents[1] / "docs" / "usage.md"


def documented_block() -> str:
    section = USAGE.read_text().split("## Fewer than five folds", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "docs/usage.md: no bash block under 'Fewer than five folds'"
    return block[1]


def test_a_two_fold_dataset_through_the_documented_commands(tmp_path):
    env = make_env(tmp_path / "work")
    source = make_rgb_dataset(tmp_path / "generated", 999, "Gen", num_train=10, num_test=0, size=(64, 64))
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for picture in sorted((source / "imagesTr").glob("*_0000.png")):
        case = picture.name[: -len("_0000.png")]
        shutil.copyfile(picture, images / f"{case}.png")
        shutil.copyfile(source / "labelsTr" / f"{case}.png", masks / f"{case}.png")
    (tmp_path / "test.txt").write_text("case_000\ncase_001\n")
    script = (documented_block().replace("--folds 3", "--folds 2").replace("0 1 2", "0 1")
              .replace("M2SNetTrainer_scratch", "M2SNetTrainer_smoke"))
    assert "-f 0 1" in script and "--folds 2" in script
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    proc = subprocess.run(["bash", "-c", "set -e\n" + script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert sorted(p.name for p in (tmp_path / "preds").glob("*.png")) == ["case_000.png", "case_001.png"]
    assert "MISSING" not in proc.stdout and "folds_ok" not in proc.stderr
    assert re.search(r"M2SNetTrainer_smoke__nnUNetPlans__2d.*2/2", proc.stdout), proc.stdout[-2000:]

    def cv(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "m2s_nnunet.cli", "cv", "502", "--executor", "local",
                               "--dry-run", "-tr", "M2SNetTrainer_smoke", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True)

    planned = cv()
    assert planned.returncode == 0 and "x 2 fold(s)" in planned.stdout and "every fold is done" in planned.stdout
    refused = cv("-f", "0", "1", "2")
    assert refused.returncode == 2 and "fold(s) [2] are not in the split" in refused.stderr
