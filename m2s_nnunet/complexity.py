"""Parameter and MAC counts of M2SNet (``m2s-nnunet flops``).

MACs are counted with PyTorch's own ``FlopCounterMode`` (convolutions and matrix products; it reports
FLOPs = 2 x MACs). Pooling, normalisation, activations, resizes and the fast fixed-filter path
(a channel sum plus an average pool) are not counted: they are memory-bound and small next to the convs.
"""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    encoder = sum(p.numel() for p in model.encoder.parameters()) if hasattr(model, "encoder") else 0
    return {"total": total, "trainable": trainable, "encoder": encoder, "decoder": total - encoder}


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass at ``input_shape`` (B, C, H, W)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(input_shape))
    return counter.get_total_flops() // 2


def complexity_report(encoder: str, in_channels: int = 3, num_classes: int = 1,
                      size: tuple[int, int] = (352, 352)) -> dict:
    """Parameters and GMACs of M2SNet with the fast fixed filters and with plain all-ones convolutions."""
    from m2s_nnunet.network.from_plans import build_m2snet
    from m2s_nnunet.settings import M2SNetSettings

    settings = M2SNetSettings(dim=2, encoder=encoder)  # the paper's network with this encoder
    configuration = {"patch_size": list(size)}
    fast = build_m2snet(settings, configuration, in_channels, num_classes)
    plain = build_m2snet(settings.replace(fast_filters=False), configuration, in_channels, num_classes)
    shape = (1, in_channels, *size)
    return {
        "encoder": encoder,
        "input": list(shape),
        "params": count_parameters(fast),
        "gmacs_fast_filters": count_macs(fast, shape) / 1e9,
        "gmacs_plain_filters": count_macs(plain, shape) / 1e9,
        "gmacs_encoder": count_macs(fast.encoder, shape) / 1e9,
    }
