"""The training loss: segmentation loss plus LossNet, on 2D slices of 3D patches."""

from __future__ import annotations

import torch


def test_lossnet_term_uses_slices_of_3d_patches():
    from m2s_nnunet.losses import LossNet
    from m2s_nnunet.training.loss import SegmentationPlusLossNet

    seen = []

    class Recorder(LossNet):
        def forward(self, pred, target):
            seen.append(pred.shape)
            return super().forward(pred, target)

    loss = SegmentationPlusLossNet(lambda o, t: o.mean() * 0, Recorder(pretrained=False, size=32), 0.1)
    logits = torch.randn(2, 3, 10, 32, 32, requires_grad=True)
    target = torch.randint(0, 3, (2, 1, 10, 32, 32))
    loss(logits, target).backward()
    assert seen == [torch.Size([8, 2, 32, 32])]  # 2 volumes x 4 slices, 2 foreground classes
    assert logits.grad.abs().sum() > 0
