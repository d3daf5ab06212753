"""The README's quick start runs as written, on the demo's data, in a fresh shell.

The block is taken from README.md (the first ``bash`` block) and run line by line with ``bash -e`` in a work folder
that holds the demo's generated dataset 990 and a ``new_scans`` folder, as the README says. One substitution keeps
it to a test's time: ``M2SNetTrainer_scratch`` trains nnU-Net's 1000 x 250 iterations, so the test trains
``M2SNetTrainer_smoke``, the same network on 1 epoch of 2 iterations.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from m2s_nnunet.synthetic import make_rgb_dataset

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start() -> list[str]:
    """The command lines of the README's first bash block (comments stripped)."""
    block = re.search(r"```bash\n(.*?)```", README.read_text(), re.S)
    assert block, "README.md has no bash block"
    lines = [line.split("  #")[0].strip() for line in block[1].splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_quick_start_block_is_the_five_lines_users_type():
    lines = quick_start()
    assert len(lines) == 5 and lines[0] == 'eval "$(m2s-nnunet env)"'
    assert [line.split()[0] for line in lines[1:]] == ["nnUNetv2_plan_and_preprocess", "nnUNetv2_train",
                                                       "nnUNetv2_predict", "m2s-nnunet"]


def test_the_quick_start_runs_as_written(tmp_path):
    work = tmp_path / "m2s_work"
    dataset = make_rgb_dataset(work / "nnUNet_raw", 990, "SyntheticPolyps", num_train=8, num_test=2, size=(64, 64))
    shutil.copytree(dataset / "imagesTs", work / "new_scans")
    script = "\n".join(["set -e", *(line.replace("M2SNetTrainer_scratch", "M2SNetTrainer_smoke")
                                    for line in quick_start())])
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["nnUNet_n_proc_DA"] = "1"  # the test's own limit on workers, on 2 cores
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert sorted(p.name for p in (work / "out").glob("*.png")) == ["case_008.png", "case_009.png"]
    assert (work / "nnUNet_results" / dataset.name / "m2s_summary").is_dir()
