"""nnU-Net v2 integration: M2SNetTrainer and its variants (imported lazily by nnU-Net via ``trainers/``)."""

from m2s_nnunet.training.trainer import M2SNetTrainer
from m2s_nnunet.training.variants import (
    M2SNetTrainer_5epochs,
    M2SNetTrainer_50epochs,
    M2SNetTrainer_100epochs,
    M2SNetTrainer_250epochs,
    M2SNetTrainer_demo,
    M2SNetTrainer_DS,
    M2SNetTrainer_noLossNet,
    M2SNetTrainer_polyLR,
    M2SNetTrainer_resnet18,
    M2SNetTrainer_resnet18_scratch,
    M2SNetTrainer_scratch,
    M2SNetTrainer_scratch_LossNet,
    M2SNetTrainer_smoke,
)

TRAINERS = [
    M2SNetTrainer, M2SNetTrainer_5epochs, M2SNetTrainer_50epochs, M2SNetTrainer_100epochs,
    M2SNetTrainer_250epochs, M2SNetTrainer_noLossNet, M2SNetTrainer_scratch, M2SNetTrainer_scratch_LossNet,
    M2SNetTrainer_DS, M2SNetTrainer_polyLR, M2SNetTrainer_resnet18, M2SNetTrainer_resnet18_scratch, M2SNetTrainer_smoke,
    M2SNetTrainer_demo,
]

__all__ = [cls.__name__ for cls in TRAINERS] + ["TRAINERS"]
