"""Pretrained weights: resolution order, key matching, first-conv adaptation and the missing-weights error.

The machines are offline, so every file here is a small state dict written by the test itself.
"""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from m2s_nnunet import LossNet, M2SNet
from m2s_nnunet.weights import (
    MissingWeightsError,
    load_encoder_weights,
    pretrained_enabled,
    resolve_encoder_weights,
    resolve_vgg16_weights,
)

ENCODER = "test_resnet"  # a 0.4 M-parameter timm ResNet with a deep stem, like Res2Net-50d


@pytest.fixture
def classifier_state(tmp_path):
    """State dict of the *classification* model (with its fc head), as timm/ImageNet files are."""
    torch.manual_seed(0)
    state = timm.create_model(ENCODER, pretrained=False).state_dict()
    path = tmp_path / "encoder.pth"
    torch.save(state, path)
    return state, path


def _encoder_state(net):
    return net.encoder.body.state_dict()


def test_load_from_explicit_file_matches_every_tensor(offline_caches, classifier_state):
    state, path = classifier_state
    net = M2SNet(3, 2, encoder=ENCODER)
    found = load_encoder_weights(net, path)
    assert found.origin == "argument"
    for key, value in _encoder_state(net).items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(value, state[key])


def test_first_conv_adapted_for_one_channel(offline_caches, classifier_state):
    state, path = classifier_state
    net = M2SNet(1, 2, encoder=ENCODER)
    load_encoder_weights(net, path)
    loaded = _encoder_state(net)["conv1.0.weight"]
    assert loaded.shape[1] == 1
    torch.testing.assert_close(loaded, state["conv1.0.weight"].sum(dim=1, keepdim=True))
    net5 = M2SNet(5, 2, encoder=ENCODER)
    load_encoder_weights(net5, path)
    assert _encoder_state(net5)["conv1.0.weight"].shape[1] == 5


def test_environment_variable_and_safetensors(offline_caches, classifier_state, tmp_path, monkeypatch):
    state, _ = classifier_state
    path = tmp_path / "enc.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    monkeypatch.setenv("M2S_NNUNET_ENCODER_WEIGHTS", str(path))
    net = M2SNet(3, 2, encoder=ENCODER)
    assert load_encoder_weights(net).origin == "environment"
    torch.testing.assert_close(_encoder_state(net)["layer4.0.conv1.weight"], state["layer4.0.conv1.weight"])


def test_weights_dir(offline_caches, classifier_state, tmp_path, monkeypatch):
    _, path = classifier_state
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / f"{ENCODER}.pth").write_bytes(path.read_bytes())
    monkeypatch.setenv("M2S_NNUNET_WEIGHTS_DIR", str(folder))
    assert resolve_encoder_weights(ENCODER).origin == "weights dir"


def test_huggingface_cache_is_found(offline_caches, classifier_state, monkeypatch):
    import huggingface_hub.constants as hf_constants

    state, _ = classifier_state
    cache = offline_caches / "hf_cache"
    repo = cache / "models--timm--test_resnet.r160_in1k"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    found = resolve_encoder_weights(ENCODER)
    assert found.origin == "cache" and found.path.name == "model.safetensors"


def test_missing_encoder_weights_give_an_actionable_error(offline_caches):
    with pytest.raises(MissingWeightsError) as info:
        resolve_encoder_weights("res2net50d")
    message = str(info.value)
    for needle in ("res2net50d", "model.safetensors", "timm/res2net50d.in1k", "M2S_NNUNET_ENCODER_WEIGHTS",
                   "M2S_NNUNET_PRETRAINED=0", "M2SNetTrainer_scratch", "offline"):
        assert needle in message


def test_explicit_missing_file_is_an_error(offline_caches, tmp_path, monkeypatch):
    with pytest.raises(MissingWeightsError, match="does not exist"):
        resolve_encoder_weights(ENCODER, tmp_path / "nope.pth")
    monkeypatch.setenv("M2S_NNUNET_ENCODER_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(MissingWeightsError, match="M2S_NNUNET_ENCODER_WEIGHTS"):
        resolve_encoder_weights(ENCODER)


def test_wrong_architecture_is_refused(offline_caches, tmp_path):
    path = tmp_path / "effnet.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    net = M2SNet(3, 2, encoder=ENCODER)
    before = {k: v.clone() for k, v in _encoder_state(net).items()}
    with pytest.raises(ValueError, match="does not fit the model"):
        load_encoder_weights(net, path)
    for key, value in _encoder_state(net).items():  # nothing half-loaded
        torch.testing.assert_close(value, before[key])


def test_pretrained_opt_out(monkeypatch):
    monkeypatch.setenv("M2S_NNUNET_PRETRAINED", "0")
    assert not pretrained_enabled()
    monkeypatch.setenv("M2S_NNUNET_PRETRAINED", "1")
    assert pretrained_enabled()


def _vgg_state():
    from torchvision.models import vgg16

    torch.manual_seed(0)
    return vgg16(weights=None).state_dict()  # torchvision's key layout: features.N.*, classifier.*


def test_lossnet_loads_vgg16_from_the_torch_hub_cache(offline_caches):
    state = _vgg_state()
    cache_file = offline_caches / "torch_home" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    cache_file.parent.mkdir(parents=True)
    torch.save(state, cache_file)
    assert resolve_vgg16_weights().origin == "cache"
    net = LossNet()
    torch.testing.assert_close(net.blocks[3][-2].weight, state["features.21.weight"])  # conv4_3
    torch.testing.assert_close(net.blocks[0][0].bias, state["features.0.bias"])


def test_lossnet_vgg16_from_environment(offline_caches, tmp_path, monkeypatch):
    path = tmp_path / "vgg.pth"
    torch.save(_vgg_state(), path)
    monkeypatch.setenv("M2S_NNUNET_VGG16_WEIGHTS", str(path))
    assert resolve_vgg16_weights().origin == "environment"


def test_missing_vgg16_gives_an_actionable_error(offline_caches):
    with pytest.raises(MissingWeightsError) as info:
        LossNet()
    message = str(info.value)
    for needle in ("VGG16", "vgg16-397923af.pth", "M2S_NNUNET_VGG16_WEIGHTS", "M2SNetTrainer_noLossNet"):
        assert needle in message


# ---------------------------------------------------------------------------------------------- bad inputs (issue 10)
@pytest.mark.parametrize("content, suffix, problem", [
    (b"", ".pth", "empty file"),
    (b"garbage, not weights" * 10, ".pth", "neither a safetensors nor a torch"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}", ".safetensors", "not a safetensors file"),
    ("truncated_torch", ".pth", "truncated or damaged torch file"),
    ("truncated_safetensors", ".safetensors", "truncated safetensors file"),
])
@pytest.mark.parametrize("variable", ["M2S_NNUNET_ENCODER_WEIGHTS", "M2S_NNUNET_VGG16_WEIGHTS"])
def test_unusable_weight_files_name_the_file_and_the_variable(offline_caches, classifier_state, tmp_path,
                                                              monkeypatch, content, suffix, problem, variable):
    from m2s_nnunet.weights import BadWeightsFileError

    path = tmp_path / f"weights{suffix}"
    if content == "truncated_torch":
        data = classifier_state[1].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content == "truncated_safetensors":
        save_file({k: v.contiguous() for k, v in classifier_state[0].items()}, str(path))
        path.write_bytes(path.read_bytes()[:-100])
    else:
        path.write_bytes(content)
    monkeypatch.setenv(variable, str(path))
    resolve = resolve_encoder_weights if "ENCODER" in variable else resolve_vgg16_weights
    with pytest.raises(BadWeightsFileError) as info:
        resolve(*([ENCODER] if "ENCODER" in variable else []))
    message = str(info.value)
    assert str(path) in message and variable in message and problem in message
    assert isinstance(info.value, MissingWeightsError)  # the trainer reports it with the other missing weights


def test_reading_a_damaged_file_names_it(tmp_path):
    from m2s_nnunet.weights import BadWeightsFileError, read_state_dict

    path = tmp_path / "weights.pth"
    path.write_bytes(b"\x80\x02garbage")  # looks like a legacy torch pickle, is not one
    with pytest.raises(BadWeightsFileError, match=r"weights\.pth: cannot read the weights"):
        read_state_dict(path)


def test_offline_is_detected_before_any_download_attempt(offline_caches, monkeypatch):
    import socket
    from unittest import mock

    import huggingface_hub

    from m2s_nnunet import weights

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights, "_REACHABLE", {})
    no_network = mock.Mock(side_effect=socket.gaierror(-2, "Name or service not known"))
    hf_download, url_download = mock.Mock(), mock.Mock()
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", url_download)
    with pytest.raises(MissingWeightsError, match="no network: huggingface.co cannot be reached"):
        resolve_encoder_weights("resnet18")
    with pytest.raises(MissingWeightsError, match="no network: download.pytorch.org"):
        resolve_vgg16_weights()
    assert no_network.called  # the quick connection test, and no download function
    hf_download.assert_not_called()
    url_download.assert_not_called()


@pytest.mark.parametrize("header", [
    [1, 2, 3],  # a JSON list
    {"w": {"dtype": "F32", "shape": [2]}},  # no data_offsets
    {"w": {"dtype": "F32", "shape": [2], "data_offsets": "0-8"}},
    {"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}},
    {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, None]}},
    {"w": [0, 8]},
])
def test_safetensors_header_that_is_not_a_tensor_table(offline_caches, tmp_path, monkeypatch, header):
    import json
    import struct

    from m2s_nnunet.weights import BadWeightsFileError

    raw = json.dumps(header).encode()
    path = tmp_path / "weights.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 8)
    monkeypatch.setenv("M2S_NNUNET_ENCODER_WEIGHTS", str(path))
    with pytest.raises(BadWeightsFileError, match="not a safetensors file") as info:
        resolve_encoder_weights(ENCODER)
    assert str(path) in str(info.value)
