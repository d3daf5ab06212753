"""The encoder contract: ``EncoderFeatures`` refuses descriptions M2SNet cannot use, and M2SNet refuses an
encoder without one."""

from __future__ import annotations

import pytest
import torch
from fake_plans import ANISOTROPIC
from fake_plans import arch_kwargs as _arch
from torch import nn

from m2s_nnunet import M2SNet
from m2s_nnunet.network.encoder import TimmEncoder
from m2s_nnunet.network.encoder_protocol import EncoderFeatures, FeatureLevel, M2SEncoder
from m2s_nnunet.network.plans_encoder import PlansEncoder

RESNET = ((64, 4), (256, 4), (512, 8), (1024, 16), (2048, 32))  # channels and stride of X1..X5


def _levels(spec=RESNET, dim: int = 2) -> tuple[FeatureLevel, ...]:
    return tuple(FeatureLevel(c, (r,) * dim, f"layer{i}") for i, (c, r) in enumerate(spec))


def test_a_valid_description_and_its_properties():
    info = EncoderFeatures(_levels(), (FeatureLevel(64, [2, 2], "act1"),))
    assert info.dim == 2 and info.channels == (64, 256, 512, 1024, 2048) and info.fine_channels == (64,)
    assert info.reductions == ((4, 4), (4, 4), (8, 8), (16, 16), (32, 32))
    assert info.fine[0].reduction == (2, 2)  # lists become tuples, so descriptions compare equal
    thick_slices = ((1, 2, 2), (1, 2, 2), (2, 4, 4), (4, 8, 8), (4, 8, 8))  # X5 an extra stride-1 stage
    anisotropic = EncoderFeatures(tuple(FeatureLevel(8, r, "stage") for r in thick_slices),
                                  (FeatureLevel(4, (1, 1, 1), "stage0"),))
    assert anisotropic.dim == 3 and anisotropic.fine_channels == (4,)
    with pytest.raises(AttributeError):
        info.levels = ()  # frozen


@pytest.mark.parametrize("levels,fine,message", [
    (_levels()[:4], (), "exactly 5 levels"),
    (_levels() + _levels()[-1:], (), "exactly 5 levels"),
    (_levels(dim=1), (), "2 or 3 entries"),
    (_levels(dim=4), (), "2 or 3 entries"),
    (_levels()[:4] + (FeatureLevel(2048, (32, 32, 32), "layer4"),), (), "must have 2 entries like X1's"),
    (_levels(), (FeatureLevel(64, (2, 2, 2), "act1"),), "must have 2 entries like X1's"),
    (_levels(((64, 4), (0, 4), (512, 8), (1024, 16), (2048, 32))), (), "X2 must have at least 1 channel"),
    (_levels(), (FeatureLevel(0, (2, 2), "act1"),), r"fine\[0\] must have at least 1 channel"),
    (_levels(((64, 0), (256, 0), (512, 8), (1024, 16), (2048, 32))), (), "at least 1 on every axis"),
    (_levels(((64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32))), (), "X1's reduction must equal X2's"),
    (_levels(((64, 4), (256, 4), (512, 16), (1024, 8), (2048, 32))), (), "must not decrease"),
    ((*_levels()[:4], FeatureLevel(2048, (32, 8), "layer4")), (), "must not decrease"),
    (_levels(), (FeatureLevel(64, (8, 2), "x"),), "not be coarser than X2"),
    (_levels(), (FeatureLevel(64, (1, 1), "stem"), FeatureLevel(64, (2, 2), "act1")), "coarse to fine"),
    (_levels(), (FeatureLevel(64, (2, 1), "a"), FeatureLevel(64, (1, 2), "b")), "coarse to fine"),
])
def test_bad_descriptions_are_refused(levels, fine, message):
    with pytest.raises(ValueError, match=message):
        EncoderFeatures(levels, fine)


def test_the_encoders_describe_their_levels():
    timm = TimmEncoder("resnet18")
    assert isinstance(timm, M2SEncoder) and timm.feature_info.channels == (64, 64, 128, 256, 512)
    assert [f.module for f in timm.feature_info.levels] == ["body.act1", "body.layer1", "body.layer2",
                                                            "body.layer3", "body.layer4"]
    assert timm.feature_info.reductions[0] == (4, 4)  # the stride-2 stem, max-pooled to X2's stride
    assert [(f.module, f.reduction) for f in timm.feature_info.fine] == [("body.act1", (2, 2))]
    plans = PlansEncoder(1, _arch(ANISOTROPIC))
    assert isinstance(plans, M2SEncoder)
    for encoder in (timm, TimmEncoder("test_convnext"), plans):
        modules = dict(encoder.named_modules())
        info = encoder.feature_info
        assert all(f.module in modules for f in info.levels + info.fine), type(encoder).__name__
        with torch.no_grad():  # the description matches what the encoder returns
            x = torch.randn(1, encoder.in_channels, *([32] * (info.dim - 2)), 64, 64)
            levels, fine = encoder.features(x)
        assert [t.shape[1] for t in levels + fine] == [f.channels for f in info.levels + info.fine]
        for tensor, feature in zip(levels + fine, info.levels + info.fine):
            assert tuple(tensor.shape[2:]) == tuple(s // r for s, r in zip(x.shape[2:], feature.reduction))


class _Undescribed(nn.Module):
    """A module with the encoder's methods and attributes except ``feature_info``."""

    name, in_channels, requires_divisible_input, first_conv = "custom", 3, False, ""

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return [x] * 5, []


def test_an_encoder_without_feature_info_is_refused():
    with pytest.raises(TypeError, match="_Undescribed.feature_info must be an EncoderFeatures.*got none"):
        M2SNet(3, 2, encoder=_Undescribed())
    wrong = _Undescribed()
    wrong.feature_info = {"channels": (64, 256, 512, 1024, 2048)}
    with pytest.raises(TypeError, match="EncoderFeatures.*got a dict"):
        M2SNet(3, 2, encoder=wrong)
