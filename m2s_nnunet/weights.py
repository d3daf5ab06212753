"""Pretrained weights for the encoder (timm, ImageNet) and for LossNet's VGG16 (torchvision, ImageNet).

Resolution order, the same for both: an explicit file (argument, then environment variable), a file in
``$M2S_NNUNET_WEIGHTS_DIR``, the library's normal cache (Hugging Face hub cache for timm, torch hub cache
for torchvision), and finally a download for users who are online. When nothing works we fail fast with
a message that says which file is missing, where to put it and which variable to set; training from
scratch is an explicit opt-out (``pretrained=False``, ``M2S_NNUNET_PRETRAINED=0`` or a ``_scratch`` trainer).

A file that is found is also checked (not empty, a complete safetensors/torch container), so an empty or
garbage file fails here with the file and the variable named, not later as an unpickling error. Before a
download, a quick connection test tells an offline machine apart in milliseconds, instead of the half minute
of retries of the download libraries.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from m2s_nnunet.envflags import HF_TRUE, env_flag, foreign_flag
from m2s_nnunet.errors import UserError

PRETRAINED_ENV = "M2S_NNUNET_PRETRAINED"
ENCODER_WEIGHTS_ENV = "M2S_NNUNET_ENCODER_WEIGHTS"
VGG16_WEIGHTS_ENV = "M2S_NNUNET_VGG16_WEIGHTS"
WEIGHTS_DIR_ENV = "M2S_NNUNET_WEIGHTS_DIR"
_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class MissingWeightsError(UserError, RuntimeError):
    """Pretrained weights are required but could not be found locally nor downloaded."""


class BadWeightsFileError(MissingWeightsError):
    """A weights file was found but cannot be used (empty, truncated, not a state dict container)."""


@dataclass(frozen=True)
class WeightFile:
    path: Path
    origin: str  # "argument", "environment", "weights dir", "cache" or "download"
    variable: str | None = None  # the environment variable that pointed at it, if any


def pretrained_enabled() -> bool:
    """False when the user opted out of pretrained encoder weights with ``M2S_NNUNET_PRETRAINED=0``."""
    return bool(env_flag(PRETRAINED_ENV, default=True))


def _explicit(path: str | os.PathLike | None, env_var: str) -> WeightFile | None:
    if path is not None:
        if not Path(path).is_file():
            raise MissingWeightsError(f"weights file '{path}' (given as argument) does not exist")
        return WeightFile(Path(path), "argument")
    env = os.environ.get(env_var)
    if env:
        if not Path(env).is_file():
            raise MissingWeightsError(f"{env_var}='{env}' does not point to an existing file")
        return WeightFile(Path(env), "environment", env_var)
    return None


def _in_weights_dir(stems: list[str]) -> WeightFile | None:
    folder = os.environ.get(WEIGHTS_DIR_ENV)
    if not folder:
        return None
    for stem in stems:
        for suffix in _SUFFIXES:
            candidate = Path(folder) / f"{stem}{suffix}"
            if candidate.is_file():
                return WeightFile(candidate, "weights dir", WEIGHTS_DIR_ENV)
    return None


def check_weight_file(found: WeightFile) -> WeightFile:
    """Refuse an empty, truncated or foreign file cheaply (headers only), naming the file and where it came from."""
    problem = _container_problem(found.path)
    if problem is None:
        return found
    where = {"argument": "given as argument", "cache": "in the library cache", "download": "just downloaded"}
    source = f"set by {found.variable}" if found.variable else where.get(found.origin, found.origin)
    fix = ("replace it with the original file (see `m2s-nnunet doctor` for where to get it)"
           + (f", or unset {found.variable}" if found.variable else "")
           + ("; delete it so that it is downloaded again" if found.origin in ("cache", "download") else ""))
    raise BadWeightsFileError(f"unusable weights file ({source}): {problem}", found.path, fix)


def _container_problem(path: Path) -> str | None:
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as fh:
        head = fh.read(8)
        if path.suffix == ".safetensors":
            if len(head) < 8:
                return "too short to be a safetensors file"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100_000_000:
                return "not a safetensors file (bad header length; truncated or another format)"
            try:
                meta = json.loads(fh.read(n))
            except ValueError:
                return "not a safetensors file (unreadable header)"
            ends = _safetensors_ends(meta)
            if ends is None:
                return "not a safetensors file (its header is not a table of tensors with data_offsets)"
            if 8 + n + max(ends, default=0) > size:
                return "truncated safetensors file (its tensors end after the end of the file)"
            return None
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                zf.infolist()
        except (zipfile.BadZipFile, OSError):
            return "truncated or damaged torch file (its zip directory is unreadable)"
        return None
    if head[:1] == b"\x80":  # legacy (pre-1.6) torch.save pickle
        return None
    return "neither a safetensors nor a torch (.pth) file"


def _safetensors_ends(meta: object) -> list[int] | None:
    """Where each tensor of a safetensors header ends (None: the header is not a safetensors table: a JSON list,
    an entry without ``data_offsets``, offsets that are not two integers)."""
    if not isinstance(meta, dict):
        return None
    ends = []
    for key, entry in meta.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
                or offsets[0] > offsets[1]):
            return None
        ends.append(offsets[1])
    return ends


def _offline() -> bool:
    return foreign_flag("HF_HUB_OFFLINE", HF_TRUE) or bool(env_flag("M2S_NNUNET_OFFLINE", default=False))


_REACHABLE: dict[tuple[str, int], bool] = {}


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the server of ``url`` (or to the configured HTTPS proxy) opens.

    Offline machines answer in milliseconds (name resolution fails), so the download libraries' retries are
    skipped. The answer is cached per server for the life of the process.
    """
    proxy = next((os.environ[v] for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(v)), None)
    target = urlparse(proxy if proxy and "://" in proxy else f"http://{proxy}" if proxy else url)
    if not target.hostname:
        return True  # nothing to test: let the download report its own error
    key = (target.hostname, target.port or (443 if target.scheme == "https" else 80))
    if key not in _REACHABLE:
        try:
            socket.create_connection(key, timeout=timeout).close()
            _REACHABLE[key] = True
        except OSError:
            _REACHABLE[key] = False
    return _REACHABLE[key]


def _unreachable_reason(url: str) -> str:
    return (f"no network: {urlparse(url).hostname} cannot be reached (on an offline machine set HF_HUB_OFFLINE=1, "
            "and provide the file as described below)")


def _missing_message(what: str, file_hint: str, env_var: str, stem: str, reason: str, scratch_hint: str) -> str:
    return (
        f"{what} are required but could not be obtained ({reason}).\n"
        f"Fix one of:\n"
        f"  1. on a machine with internet, download {file_hint}, copy it here and set\n"
        f"     {env_var}=/path/to/that/file  (or put it in $" + WEIGHTS_DIR_ENV + f"/{stem}.safetensors|.pth);\n"
        f"  2. fill the library cache once while online (see `m2s-nnunet doctor`);\n"
        f"  3. {scratch_hint}"
    )


def resolve_encoder_weights(encoder_name: str, path: str | os.PathLike | None = None,
                            allow_download: bool = True) -> WeightFile:
    """Find (or download) the ImageNet weights of a timm encoder; raise MissingWeightsError otherwise."""
    import timm

    found = _explicit(path, ENCODER_WEIGHTS_ENV) or _in_weights_dir([encoder_name])
    if found:
        return check_weight_file(found)
    cfg = timm.models.get_pretrained_cfg(encoder_name)
    hf_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    url = getattr(cfg, "url", None) if cfg is not None else None
    candidates = ["model.safetensors", "pytorch_model.bin"]
    if hf_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in candidates:
            cached = try_to_load_from_cache(hf_id, filename)
            if isinstance(cached, str) and Path(cached).is_file():
                return check_weight_file(WeightFile(Path(cached), "cache"))
    if url:
        cached_file = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if cached_file.is_file():
            return check_weight_file(WeightFile(cached_file, "cache"))
    reason = "offline mode" if _offline() else "downloads disabled"
    server = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if hf_id else url
    if allow_download and not _offline() and server and not reachable(server):
        reason = _unreachable_reason(server)
    elif allow_download and not _offline():
        try:
            if hf_id:
                from huggingface_hub import hf_hub_download

                return WeightFile(Path(hf_hub_download(hf_id, candidates[0])), "download")
            if url:
                dst = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
                dst.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(url, str(dst), progress=True)
                return WeightFile(dst, "download")
            reason = f"timm knows no pretrained weights for '{encoder_name}'"
        except Exception as err:  # network errors come in many types (OSError, HTTPError, hub errors)
            reason = f"download failed: {type(err).__name__}: {err}"
    hint = f"'{candidates[0]}' from the Hugging Face repo '{hf_id}'" if hf_id else f"'{url}'"
    raise MissingWeightsError(
        _missing_message(
            f"ImageNet weights for the encoder '{encoder_name}'", hint, ENCODER_WEIGHTS_ENV, encoder_name, reason,
            f"train from scratch: {PRETRAINED_ENV}=0, or the trainer variant M2SNetTrainer_scratch.",
        )
    )


def resolve_vgg16_weights(path: str | os.PathLike | None = None, allow_download: bool = True) -> WeightFile:
    """Find (or download) torchvision's ImageNet VGG16 weights used by LossNet."""
    from torchvision.models import VGG16_Weights

    url = VGG16_Weights.IMAGENET1K_V1.url
    filename = Path(url).name  # vgg16-397923af.pth
    found = _explicit(path, VGG16_WEIGHTS_ENV) or _in_weights_dir([Path(filename).stem, "vgg16"])
    if found:
        return check_weight_file(found)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return check_weight_file(WeightFile(cached, "cache"))
    reason = "offline mode" if _offline() else "downloads disabled"
    if allow_download and not _offline() and not reachable(url):
        reason = _unreachable_reason(url)
    elif allow_download and not _offline():
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), progress=True)
            return WeightFile(cached, "download")
        except Exception as err:  # see resolve_encoder_weights
            reason = f"download failed: {type(err).__name__}: {err}"
    raise MissingWeightsError(
        _missing_message(
            "ImageNet VGG16 weights for LossNet", f"'{url}' (torchvision VGG16_Weights.IMAGENET1K_V1)",
            VGG16_WEIGHTS_ENV, "vgg16", reason,
            f"or copy it to {cached}; or train without LossNet: trainer variant M2SNetTrainer_noLossNet.",
        )
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or a torch file (unwrapping 'state_dict'/'model' containers)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - safetensors, zip and unpickling errors all mean "unusable file"
        raise BadWeightsFileError(f"cannot read the weights ({type(err).__name__}: {str(err)[:200]})", path,
                                  "replace it with the original file (see `m2s-nnunet doctor`)") from err
    for key in ("state_dict", "model", "network_weights"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"'{path}' does not hold a state dict (found {type(obj).__name__})")
    return obj


def _flat(key: str) -> str:
    # timm's features_only wrappers flatten nested module names ('stem.0' -> 'stem_0'); compare flattened.
    return key.replace(".", "_")


def load_pretrained_into(module: nn.Module, state_dict: dict[str, torch.Tensor], first_conv: str = "",
                         source: str = "state dict") -> int:
    """Copy a (classification-model) state dict into ``module``, matching keys modulo timm's name flattening.

    Extra source keys (classifier) are ignored; every key of ``module`` must be found with the same shape,
    except the first convolution's input channels, which are adapted from RGB (timm's ``adapt_input_conv``).
    Returns the number of tensors loaded.
    """
    from timm.models import adapt_input_conv

    by_flat = {_flat(k): k for k in state_dict}
    target = module.state_dict()
    first_key = _flat(first_conv + ".weight") if first_conv else None
    loaded, missing, mismatched = {}, [], []
    for key, value in target.items():
        src = by_flat.get(_flat(key))
        if src is None:
            if key.endswith("num_batches_tracked"):
                continue
            missing.append(key)
            continue
        tensor = state_dict[src]
        if first_key and _flat(key) == first_key and tensor.shape != value.shape:
            tensor = adapt_input_conv(value.shape[1], tensor.float()).to(value.dtype)
        if tensor.shape != value.shape:
            mismatched.append(f"{key}: file {tuple(tensor.shape)} vs model {tuple(value.shape)}")
            continue
        loaded[key] = tensor
    if missing or mismatched:
        details = "; ".join(missing[:5] + mismatched[:5])
        raise ValueError(
            f"{source} does not fit the model: {len(missing)} missing and {len(mismatched)} mismatched tensors "
            f"(e.g. {details}). Is it the right architecture?"
        )
    module.load_state_dict(loaded, strict=False)
    return len(loaded)


def load_encoder_weights(network: nn.Module, path: str | os.PathLike | None = None,
                         allow_download: bool = True) -> WeightFile:
    """Resolve and load ImageNet weights into ``network.encoder`` (an M2SNet or a TimmEncoder owner)."""
    encoder = network.encoder
    weights = resolve_encoder_weights(encoder.name, path, allow_download)
    load_pretrained_into(encoder.body, read_state_dict(weights.path), encoder.first_conv, str(weights.path))
    return weights
