"""The timm encoder: other timm CNNs, and mapping their ``feature_info`` onto M2SNet's levels."""

from __future__ import annotations

import pytest
import torch

from m2s_nnunet import M2SNet
from m2s_nnunet.network.encoder import map_levels


@pytest.mark.parametrize("encoder", ["resnet18", "test_efficientnet", "test_convnext"])
def test_other_timm_encoders(encoder):
    net = M2SNet(2, 3, encoder=encoder).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 2, 64, 96)).shape == (2, 3, 64, 96)


def test_level_mapping_from_feature_info():
    resnet = map_levels([2, 4, 8, 16, 32], [64, 256, 512, 1024, 2048])
    assert resnet.indices == (0, 1, 2, 3, 4) and resnet.pool_x1 and resnet.channels[0] == 64
    convnext = map_levels([4, 8, 16, 32], [96, 192, 384, 768])
    assert convnext.indices == (0, 0, 1, 2, 3) and not convnext.pool_x1
    with pytest.raises(ValueError, match="strides 4, 8, 16 and 32"):
        map_levels([2, 4, 8, 16], [1, 2, 3, 4], "shallow")
