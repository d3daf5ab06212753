"""Guards installed in nnU-Net's processes by the trainer shim: input channels checked before prediction,
no orphaned workers after a kill -9, input errors without a traceback. No training needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from m2s_nnunet.nnunet_guards import input_channels

REPO = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _picture_folder(folder: Path, modes: dict[str, str]) -> Path:
    folder.mkdir()
    for case, mode in modes.items():
        Image.fromarray(np.zeros((8, 8, len(mode)), np.uint8).squeeze(), mode).save(folder / f"{case}_0000.png")
    return folder


@pytest.fixture(autouse=True)
def _nnunet_left_as_found():
    """Every test here leaves nnU-Net's predictor as it found it (a patch left behind would change the tests that
    run after it in the same session). Autouse fixtures are torn down after ``monkeypatch`` has undone its changes."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    before = nnUNetPredictor.__dict__["_manage_input_and_output_lists"], input_channels._installed
    yield
    after = nnUNetPredictor.__dict__["_manage_input_and_output_lists"], input_channels._installed
    assert after == before, "a test left nnUNetPredictor._manage_input_and_output_lists patched"


def _install_channel_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """``input_channels.install()`` for one test: ``monkeypatch`` puts nnU-Net's method (and the flag) back."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    monkeypatch.setattr(nnUNetPredictor, "_manage_input_and_output_lists",
                        nnUNetPredictor._manage_input_and_output_lists)
    monkeypatch.setattr(input_channels, "_installed", False)
    input_channels.install()


def test_rgba_input_to_an_rgb_model_is_refused_before_preprocessing(tmp_path, monkeypatch):
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from m2s_nnunet import M2SNet

    _install_channel_check(monkeypatch)
    folder = _picture_folder(tmp_path / "in", {"ok": "RGB", "alpha": "RGBA", "grey": "L"})
    predictor = nnUNetPredictor(device=__import__("torch").device("cpu"), verbose=False)
    predictor.network = M2SNet(3, 2, encoder="test_resnet")
    predictor.plans_manager = SimpleNamespace(image_reader_writer_class=NaturalImage2DIO)
    predictor.dataset_json = {"channel_names": {"0": "R", "1": "G", "2": "B"}, "file_ending": ".png"}
    with pytest.raises(input_channels.InputChannelsError) as info:
        predictor._manage_input_and_output_lists(str(folder), str(tmp_path / "out"))
    message = str(info.value)
    assert "M2SNet was built for (B, 3, H, W) inputs" in message
    assert "alpha_0000.png: 4" in message and "grey_0000.png: 1" in message and "ok_0000" not in message
    assert "convert them to 3 channel(s)" in message
    (folder / "alpha_0000.png").unlink()
    (folder / "grey_0000.png").unlink()
    lists = predictor._manage_input_and_output_lists(str(folder), str(tmp_path / "out"))[0]
    assert [Path(f).name for f in lists[0]] == ["ok_0000.png"]


def test_the_check_ignores_other_networks(tmp_path):
    input_channels.check_case_channels([[str(_picture_folder(tmp_path / "in", {"a": "RGB"}) / "a_0000.png")]],
                                       3, 3, True)
    predictor = SimpleNamespace(network=object(), dataset_json={"channel_names": {"0": "x"}})
    input_channels._check_predictor(predictor, [["whatever.png"]])  # not an M2SNet: nothing to check


def _run(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())


def test_forked_workers_exit_when_their_parent_is_killed():
    parent = _run("""
        import multiprocessing, time
        from m2s_nnunet.nnunet_guards import orphaned_workers
        orphaned_workers.install()
        def work():
            while True:
                time.sleep(0.1)
        worker = multiprocessing.get_context("fork").Process(target=work, daemon=True)
        worker.start()
        print(worker.pid, flush=True)
        time.sleep(60)
    """)
    worker = int(parent.stdout.readline())
    assert _alive(worker)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = _alive(worker)
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive, "the forked worker outlived its killed parent"


def test_input_errors_print_without_traceback():
    proc = _run("""
        from m2s_nnunet.nnunet_guards import clean_errors
        from m2s_nnunet.weights import MissingWeightsError
        clean_errors.install()
        raise MissingWeightsError("weights are missing; set M2S_NNUNET_ENCODER_WEIGHTS")
    """)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip() == "MissingWeightsError: weights are missing; set M2S_NNUNET_ENCODER_WEIGHTS"
    proc = _run("""
        from m2s_nnunet.nnunet_guards import clean_errors
        clean_errors.install()
        raise ValueError("a bug")
    """)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" in err and "ValueError: a bug" in err


def test_the_trainer_shim_installs_the_guards():
    proc = _run('''
        import sys
        sys.path.insert(0, {trainers!r})
        import m2s_nnunet_trainers
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        from m2s_nnunet.nnunet_guards import clean_errors, input_channels, orphaned_workers
        assert clean_errors._installed and orphaned_workers._installed and input_channels._installed
        print(nnUNetPredictor._manage_input_and_output_lists.__module__)
    '''.replace("{trainers!r}", repr(str(REPO / "trainers"))))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.strip() == "m2s_nnunet.nnunet_guards.input_channels"
