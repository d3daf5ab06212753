"""``m2s-nnunet doctor``: check what a run needs and say how to fix what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from shlex import quote

from m2s_nnunet.envflags import EnvFlagError
from m2s_nnunet.errors import UserError
from m2s_nnunet.inputs.folders import check_output_folder
from m2s_nnunet.nnunet_env import NNUNET_FOLDERS, ext_trainer_folder, same_folder

_OK, _WARN, _FAIL = "ok  ", "warn", "FAIL"


def _line(status: str, what: str, fix: str = "") -> None:
    print(f"[{status}] {what}" + (f"\n        fix: {fix}" if fix else ""))


def _versions() -> int:
    failures = 0
    for package, wanted in (("torch", None), ("nnunetv2", "2.8"), ("timm", None), ("torchvision", None)):
        try:
            found = version(package)
        except PackageNotFoundError:
            _line(_FAIL, f"{package} is not installed", "pip install -e . (from the m2s-nnunet checkout)")
            failures += 1
            continue
        if wanted and not found.startswith(wanted):
            _line(_WARN, f"{package} {found} (tested with {wanted}.x)", f"pip install 'nnunetv2>={wanted},<2.9'")
        else:
            _line(_OK, f"{package} {found}")
    return failures


def _folder_variable(name: str, value: str) -> int:
    """One nnU-Net folder variable: a folder (or creatable), and writable where nnU-Net writes.

    nnU-Net writes into nnUNet_preprocessed and nnUNet_results; its plan, train and predict steps only read
    nnUNet_raw, which only ``m2s-nnunet convert`` writes (and convert checks its own output folder). A read-only
    nnUNet_raw (a shared, read-only dataset mount) is therefore a warning, not a failure.
    """
    path = Path(value)
    if path.exists() and not path.is_dir():
        _line(_FAIL, f"{name}={value} is a file, not a folder", f"export {name}=<a folder>, or move that file away")
        return 1
    try:
        check_output_folder(path, name)
    except UserError as err:
        if name == "nnUNet_raw" and path.is_dir():
            _line(_WARN, f"{name}={value} is read-only (nnU-Net only reads it; m2s-nnunet convert cannot write there)",
                  "convert into another folder with --out, or make it writable if you convert here")
            return 0
        _line(_FAIL, str(err).splitlines()[0], f"export {name}=<a writable folder>, or fix its permissions")
        return 1
    if not path.is_dir():
        _line(_WARN, f"{name}={value} does not exist yet", f"mkdir -p {quote(value)}")
    else:
        _line(_OK, f"{name}={value} (writable)")
    return 0


def _variables() -> int:
    failures = 0
    for name in NNUNET_FOLDERS:
        value = os.environ.get(name)
        if not value:
            _line(_FAIL, f"{name} is not set", "eval \"$(m2s-nnunet env)\"")
            failures += 1
        else:
            failures += _folder_variable(name, value)
    folder = str(ext_trainer_folder())
    entries = os.environ.get("nnUNet_extTrainer", "").split(os.pathsep)
    if not any(e and same_folder(e, folder) for e in entries):
        _line(_FAIL, "nnUNet_extTrainer does not contain the M2SNet trainers folder",
              'eval "$(m2s-nnunet env)"  (adds it in front of your other entries)')
        failures += 1
    else:
        _line(_OK, f"nnUNet_extTrainer contains {folder}")
    return failures


def _discovery() -> int:
    """Ask nnU-Net itself, in a fresh process, to find the trainer (as nnUNetv2_train would)."""
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f;"
            "c=f('M2SNetTrainer'); print(c.__module__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode == 0:
        _line(_OK, f"nnU-Net finds M2SNetTrainer (module {proc.stdout.strip().splitlines()[-1]})")
        return 0
    _line(_FAIL, "nnU-Net cannot find M2SNetTrainer: " + proc.stderr.strip().splitlines()[-1:][0]
          if proc.stderr.strip() else "nnU-Net cannot find M2SNetTrainer",
          "set nnUNet_extTrainer as printed by `m2s-nnunet env`")
    return 1


def _weights() -> int:
    """Weight files: missing ones are a warning (downloaded when online), unusable ones a failure."""
    from m2s_nnunet.network import DEFAULT_ENCODER, LIGHT_ENCODER
    from m2s_nnunet.weights import (
        ENCODER_WEIGHTS_ENV,
        BadWeightsFileError,
        MissingWeightsError,
        pretrained_enabled,
        resolve_encoder_weights,
        resolve_vgg16_weights,
    )

    failures = 0
    try:
        if not pretrained_enabled():
            _line(_WARN, "M2S_NNUNET_PRETRAINED=0: encoders train from scratch")
    except EnvFlagError as err:
        problem, _, fix = str(err).partition("\n  fix: ")
        _line(_FAIL, problem, fix)
        failures += 1
    for name in (DEFAULT_ENCODER, LIGHT_ENCODER):
        try:
            found = resolve_encoder_weights(name, allow_download=False)
            _line(_OK, f"ImageNet weights for {name}: {found.path} ({found.origin})")
        except BadWeightsFileError as err:
            _line(_FAIL, f"ImageNet weights for {name}: {err.path}: {err.problem}", err.fix or "")
            failures += 1
        except MissingWeightsError as err:
            _line(_WARN, f"no local ImageNet weights for {name} (downloaded on first training when online)",
                  f"online once: python -c \"import timm; timm.create_model('{name}', pretrained=True)\"; "
                  f"offline: {ENCODER_WEIGHTS_ENV}=/path/file, or use M2SNetTrainer_scratch. "
                  + str(err).splitlines()[0])
    try:
        found = resolve_vgg16_weights(allow_download=False)
        _line(_OK, f"VGG16 weights for LossNet: {found.path} ({found.origin})")
    except BadWeightsFileError as err:
        _line(_FAIL, f"VGG16 weights for LossNet: {err.path}: {err.problem}", err.fix or "")
        failures += 1
    except MissingWeightsError:
        _line(_WARN, "no local VGG16 weights for LossNet (downloaded on first training when online)",
              "online once: python -c \"import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')\"; "
              "offline: M2S_NNUNET_VGG16_WEIGHTS=/path/vgg16-397923af.pth, or use M2SNetTrainer_noLossNet")
    return failures


def _device() -> None:
    import torch

    if torch.cuda.is_available():
        _line(_OK, f"CUDA device: {torch.cuda.get_device_name(0)}")
    else:
        _line(_WARN, f"no CUDA device: train and predict with `-device cpu` ({os.cpu_count()} cores)",
              "on CPU use M2SNetTrainer_scratch (needs no weight file; M2SNetTrainer_demo: the same recipe for 500 "
              "iterations, a quick check); set nnUNet_n_proc_DA to the core count")


def run_doctor() -> int:
    """Print one line per check; return 1 if something blocks training."""
    failures = _versions() + _variables()
    failures += _discovery()
    failures += _weights()
    _device()
    print("all required checks passed" if not failures else f"{failures} problem(s) need fixing (see 'fix:')")
    return 1 if failures else 0
