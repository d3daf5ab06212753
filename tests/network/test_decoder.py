"""The segmentation heads: side heads only when asked, and nnU-Net's ``seg_layers`` naming."""

from __future__ import annotations

import pytest
import torch

from m2s_nnunet import M2SNet


def test_side_heads_only_exist_when_asked():
    plain = M2SNet(3, 2, encoder="resnet18")
    with_heads = M2SNet(3, 2, encoder="resnet18", side_heads=True)
    assert len(plain.head.seg_layers) == 1 and not plain.has_side_heads
    assert len(with_heads.head.seg_layers) == 4
    extra = sum(p.numel() for p in with_heads.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 3 * (64 * 2 + 2)
    with torch.no_grad():
        assert isinstance(with_heads.eval()(torch.randn(1, 3, 64, 64)), torch.Tensor)  # DS off by default
        with_heads.deep_supervision = True
        shapes = [o.shape[2:] for o in with_heads(torch.randn(1, 3, 80, 112))]
    assert shapes == [(80, 112), (20, 28), (10, 14), (5, 7)]
    with pytest.raises(ValueError, match="side_heads"):
        M2SNet(3, 2, encoder="resnet18", deep_supervision=True)


def test_seg_layer_names_match_nnunet_pretrained_skip_rule():
    keys = M2SNet(3, 2, encoder="resnet18").state_dict().keys()
    assert [k for k in keys if ".seg_layers." in k] == ["head.seg_layers.0.weight", "head.seg_layers.0.bias"]
