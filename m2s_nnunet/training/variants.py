"""Trainer variants, named like nnU-Net's own (``nnUNetTrainer_5epochs``): each changes one or two things.

Never rename a class once models were trained with it: nnU-Net stores the class name in every checkpoint
and looks it up again at predict time.
"""

from __future__ import annotations

from m2s_nnunet.network import LIGHT_ENCODER
from m2s_nnunet.settings import SCRATCH_RECIPE
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
    """Ablation: nnU-Net's Dice+CE alone (no VGG16 weights needed, about 2x cheaper per step on CPU)."""

    lossnet_weight = 0.0


class M2SNetTrainer_scratch(M2SNetTrainer):
    """The from-scratch recipe (``SCRATCH_RECIPE``), no LossNet: needs no weight file at all (offline users).

    The recipe is written out as this class's own attributes, so that its variants can change any of them.
    """

    use_pretrained_encoder = False
    lossnet_weight = 0.0
    scratch_recipe = None
    encoder_name = SCRATCH_RECIPE["encoder_name"]
    refine = SCRATCH_RECIPE["refine"]
    use_side_heads = SCRATCH_RECIPE["use_side_heads"]
    optimizer_recipe = SCRATCH_RECIPE["optimizer_recipe"]
    seg_loss = SCRATCH_RECIPE["seg_loss"]
    level_mapping = SCRATCH_RECIPE["level_mapping"]


class M2SNetTrainer_scratch_LossNet(M2SNetTrainer_scratch):
    """The from-scratch recipe plus 0.1 x LossNet (needs the VGG16 ImageNet weights for LossNet)."""

    lossnet_weight = 0.1


class M2SNetTrainer_DS(M2SNetTrainer):
    """Deep supervision through side heads on O2, O3, O4 (1/4, 1/8, 1/16 scale), weights 1, 1/2, 1/4, 1/8."""

    use_side_heads = True


class M2SNetTrainer_polyLR(M2SNetTrainer):
    """nnU-Net's polynomial decay instead of the paper's triangular schedule."""

    lr_schedule = "poly"


class M2SNetTrainer_resnet18(M2SNetTrainer):
    """Light encoder for CPUs and small GPUs: ResNet-18 (ImageNet), about 2.3x fewer MACs than Res2Net-50."""

    encoder_name = LIGHT_ENCODER


class M2SNetTrainer_resnet18_scratch(M2SNetTrainer_resnet18):
    """ResNet-18 from random weights, paper optimiser and LossNet (not the from-scratch recipe: it trains
    worse from scratch than nnU-Net's U-Net, see bench/RESULTS.md; kept for light CPU runs)."""

    use_pretrained_encoder = False
    scratch_recipe = None


class M2SNetTrainer_smoke(M2SNetTrainer):
    """Tiny CPU smoke run for tests and CI: ResNet-18 from scratch, no LossNet, 1 epoch of 2 iterations."""

    encoder_name = LIGHT_ENCODER
    use_pretrained_encoder = False
    scratch_recipe = None
    lossnet_weight = 0.0
    epochs = 1
    iterations_per_epoch = 2
    val_iterations_per_epoch = 1


class M2SNetTrainer_demo(M2SNetTrainer_smoke):
    """The `m2s-nnunet demo` run: long enough to learn the generated shapes on 2 CPU cores (~2 min)."""

    epochs = 20
    iterations_per_epoch = 25
    val_iterations_per_epoch = 5
