"""Losses of M2SNet: LossNet (frozen VGG16 features) and the structure loss."""

from m2s_nnunet.losses.lossnet import LossNet
from m2s_nnunet.losses.structure import StructureLoss, boundary_weights, structure_loss

__all__ = ["LossNet", "StructureLoss", "boundary_weights", "structure_loss"]
