"""Trainer variants, named like nnU-Net's own (``nnUNetTrainer_5epochs``): each changes one or two things.

A variant sets settings by their field names (``m2s_nnunet/settings.py``); what it sets wins over the plans and
the recipe, and a choice a configuration cannot have is refused, never swapped. Never rename a class once
models were trained with it: nnU-Net stores the class name in every checkpoint and looks it up at predict time.
"""

from __future__ import annotations

from m2s_nnunet.settings import LIGHT_ENCODER
from m2s_nnunet.training.trainer import M2SNetTrainer


class M2SNetTrainer_5epochs(M2SNetTrainer):
    epochs = 5


class M2SNetTrainer_50epochs(M2SNetTrainer):
    """About the paper's budget on polyps (50 epochs of 1450 images at batch 16 ~ 4.5k iterations)."""

    epochs = 50


class M2SNetTrainer_100epochs(M2SNetTrainer):
    epochs = 100


class M2SNetTrainer_250epochs(M2SNetTrainer):
    epochs = 250


class M2SNetTrainer_noLossNet(M2SNetTrainer):
    """Ablation: nnU-Net's Dice+CE alone (no VGG16 weights needed; 1.4x faster per step on CPU, bench/RESULTS.md)."""

    lossnet_weight = 0.0


class M2SNetTrainer_scratch(M2SNetTrainer):
    """The from-scratch recipe (``settings.SCRATCH_RECIPE``) on every configuration, no LossNet: needs no weight
    file at all (offline users)."""

    recipe = True
    lossnet_weight = 0.0


class M2SNetTrainer_scratch_LossNet(M2SNetTrainer_scratch):
    """The from-scratch recipe plus 0.1 x LossNet (needs the VGG16 ImageNet weights for LossNet)."""

    lossnet_weight = 0.1


class M2SNetTrainer_DS(M2SNetTrainer):
    """The paper's ImageNet model with deep supervision through side heads on O2, O3, O4 (1/4, 1/8, 1/16 scale),
    weights 1, 1/2, 1/4, 1/8. 2D RGB only: elsewhere M2SNetTrainer trains the recipe, which has these heads."""

    recipe = False
    side_heads = True


class M2SNetTrainer_polyLR(M2SNetTrainer):
    """nnU-Net's polynomial decay instead of the paper's triangular schedule."""

    lr_schedule = "poly"


class M2SNetTrainer_resnet18(M2SNetTrainer):
    """Light encoder for CPUs and small GPUs: ResNet-18 (ImageNet), about half the MACs of Res2Net-50 (8.5 vs
    16.8 GMACs at 352x352). 2D RGB only."""

    encoder = LIGHT_ENCODER
    pretrained_encoder = True


class M2SNetTrainer_resnet18_scratch(M2SNetTrainer):
    """ResNet-18 from random weights, paper optimiser and LossNet (not the from-scratch recipe: it trains
    worse from scratch than nnU-Net's U-Net, see bench/RESULTS.md; kept for light CPU runs). 2D only."""

    encoder = LIGHT_ENCODER
    pretrained_encoder = False
    recipe = False


class M2SNetTrainer_smoke(M2SNetTrainer_scratch):
    """Tiny smoke run for tests and CI on any configuration: the from-scratch recipe, 1 epoch of 2 iterations."""

    epochs = 1
    iterations_per_epoch = 2
    val_iterations_per_epoch = 1


class M2SNetTrainer_demo(M2SNetTrainer_scratch):
    """The `m2s-nnunet demo` run: the recommended trainer (the from-scratch recipe, no LossNet) on a schedule long
    enough to learn the generated shapes on 2 CPU cores (20 x 25 iterations)."""

    epochs = 20
    iterations_per_epoch = 25
    val_iterations_per_epoch = 5
