"""Real data: convert subsets of Kvasir-SEG and BUSI and let nnU-Net verify them (``--verify_dataset_integrity``).

The data in ``../shared/data`` is for research use only; it is read in place and converted into a temporary
folder, never copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from m2s_nnunet.cli import convert as convert_command

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCES = {
    901: ("Kvasir", SHARED / "polyp" / "Kvasir-SEG-train", []),
    902: ("BUSI", SHARED / "ultrasound" / "BUSI-train", ["--modality", "US", "--label-name", "lesion"]),
}
N_CASES = 40

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data folder {SHARED} is absent"),
]


def test_converted_subsets_pass_nnunet_integrity_check(tmp_path):
    env = dict(os.environ)
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[var] = str(tmp_path / var)
        Path(env[var]).mkdir()
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    parser = argparse.ArgumentParser()
    convert_command.add_parser(parser.add_subparsers())
    for ds_id, (name, src, extra) in SOURCES.items():
        argv = [
            "convert",
            str(src / "images"),
            str(src / "masks"),
            "-d",
            str(ds_id),
            "-n",
            name,
            "--out",
            env["nnUNet_raw"],
            "--limit",
            str(N_CASES),
            "--folds",
            "5",
            *extra,
        ]
        args = parser.parse_args(argv)
        assert convert_command.run(args) == 0
        ds = Path(env["nnUNet_raw"]) / f"Dataset{ds_id}_{name}"
        assert len(list((ds / "imagesTr").glob("*_0000.png"))) == N_CASES
    dj = json.loads((Path(env["nnUNet_raw"]) / "Dataset902_BUSI" / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "US"} and dj["labels"] == {"background": 0, "lesion": 1}

    proc = subprocess.run(
        [
            "nnUNetv2_extract_fingerprint",
            "-d",
            *map(str, SOURCES),
            "--verify_dataset_integrity",
            "-np",
            "1",
            "--no_pbar",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert output.count("verify_dataset_integrity Done") == len(SOURCES)
    for ds_id, (name, _, _) in SOURCES.items():
        pre = Path(env["nnUNet_preprocessed"]) / f"Dataset{ds_id}_{name}"
        assert (pre / "dataset_fingerprint.json").is_file()
