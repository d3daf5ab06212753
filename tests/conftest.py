"""Shared fixtures: where the shared research data is, and skip helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from fsutil import make_readonly_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
VENV_BIN = Path(sys.executable).parent

requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real data folder {SHARED_DATA} is absent (it only exists on project machines)"
)


@pytest.fixture
def offline_caches(tmp_path, monkeypatch):
    """Empty, private weight caches and no download: what an offline user without weights has."""
    for var in ("M2S_NNUNET_ENCODER_WEIGHTS", "M2S_NNUNET_VGG16_WEIGHTS", "M2S_NNUNET_WEIGHTS_DIR",
                "M2S_NNUNET_PRETRAINED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch

    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch_home" / "hub"))
    yield tmp_path
    torch.hub.set_dir(old)


def pytest_report_header(config):
    return [f"shared data: {SHARED_DATA} ({'present' if SHARED_DATA.is_dir() else 'absent'})",
            f"threads: {os.cpu_count()} cores"]


@pytest.fixture
def readonly_dir(tmp_path):
    """An existing folder this process cannot write into (see ``fsutil.make_readonly_dir``); skips where there is
    none (root on a machine whose /sys is writable)."""
    folder = make_readonly_dir(tmp_path)
    if folder is None:
        pytest.skip("no read-only folder available as root")
    yield folder
    if folder.is_relative_to(tmp_path):
        folder.chmod(0o755)
