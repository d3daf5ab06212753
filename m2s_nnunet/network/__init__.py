"""M2SNet network: blocks, encoder mapping and the full model."""

from m2s_nnunet.network.encoder import DEFAULT_ENCODER, LIGHT_ENCODER, TimmEncoder
from m2s_nnunet.network.m2snet import M2SNet

__all__ = ["DEFAULT_ENCODER", "LIGHT_ENCODER", "M2SNet", "TimmEncoder"]
