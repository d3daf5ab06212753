"""Test-only trainer variants, found by nnU-Net through ``nnUNet_extTrainer`` (the tests add this folder)."""

import os
import sys

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from m2s_nnunet.training import M2SNetTrainer_scratch, M2SNetTrainer_smoke


class M2SNetTrainer_smokeLossNet(M2SNetTrainer_smoke):
    """The smoke run with LossNet on (VGG16 weights come from M2S_NNUNET_VGG16_WEIGHTS, written by the test)."""

    lossnet_weight = 0.1


class M2SNetTrainer_smokeResume(M2SNetTrainer_smoke):
    """Two epochs with a checkpoint after each; M2S_TEST_CRASH=1 kills the process after the first epoch."""

    epochs = 2

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.save_every = 1

    def on_epoch_end(self):
        super().on_epoch_end()
        if os.environ.get("M2S_TEST_CRASH") == "1" and self.current_epoch == 1:
            sys.exit(3)  # a crashed job: training stops here, checkpoint_latest.pth stays


class M2SNetTrainer_smokeDS(M2SNetTrainer_smoke):
    """What M2SNetTrainer_DS adds to the paper's model (side heads on a timm encoder), from random weights: the
    smoke schedule with ResNet-18 instead of the recipe, no ImageNet weights (offline tests)."""

    recipe = False
    encoder = "resnet18"
    pretrained_encoder = False
    side_heads = True


class M2SNetTrainer_smokeNoMirroring(M2SNetTrainer_smoke):
    """The smoke run without mirroring (training and test-time): 3D sliding-window validation with 8 mirror
    passes per tile would take minutes per case on a CPU."""

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, patch, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, patch, None


class M2SNetTrainer_smokeKill(M2SNetTrainer_smoke):
    """Six short epochs and nothing else changed: the kill -9 / ``--c`` test relies on the production
    ``save_every`` rule writing checkpoint_latest.pth often enough for a short schedule."""

    epochs = 6


class nnUNetTrainer_smoke(nnUNetTrainer):
    """nnU-Net's own trainer on the smoke schedule (1 epoch of 2 iterations): the baseline of CV-study tests."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1, 2, 1


class M2SNetTrainer_scratch_60its(M2SNetTrainer_scratch):
    """The recipe for 3 x 20 iterations: long enough to learn something on real 3D data, short enough for a test.
    Measured on fold 0 (floor 0.16): 100 iterations, 6 min, Dice 0.80; 60, 4 min, 0.76; 40, 3 min, 0.23."""

    epochs = 3
    iterations_per_epoch = 20
    val_iterations_per_epoch = 2


class M2SNetTrainer_demoShort(M2SNetTrainer_scratch):
    """The demo's recipe for 3 x 15 iterations: enough for partial, non-trivial predictions (the demo test checks
    the reported Dice against the written predictions, which an all-empty output could not tell apart)."""

    lossnet_weight = 0.0
    epochs = 3
    iterations_per_epoch = 15
    val_iterations_per_epoch = 2


class M2SNetTrainer_scratch_300its(M2SNetTrainer_scratch):
    """The recipe for 12 x 25 iterations: the 2D real-data test's network (the trainer the README recommends).
    Measured at 200 iterations: Dice 0.41, 0.41, 0.35 against a floor of 0.31, too close; at 300: 0.40, 0.48."""

    epochs = 12
    iterations_per_epoch = 25
    val_iterations_per_epoch = 5
