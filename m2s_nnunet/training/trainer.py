"""M2SNetTrainer: nnU-Net v2's trainer with M2SNet as the network and Dice+CE + 0.1 x LossNet as the loss.

Everything else (data loading, augmentation, sliding-window validation, checkpoints, 5-fold CV) is
nnU-Net's own. Variants are small subclasses that change class attributes (see ``variants.py``).
"""

from __future__ import annotations

import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn
from torch._dynamo import OptimizedModule

from m2s_nnunet.envflags import NNUNET_TRUE, foreign_flag
from m2s_nnunet.losses import LossNet, StructureLoss
from m2s_nnunet.network.from_plans import build_m2snet
from m2s_nnunet.settings import (
    DECODER_WIDTH_2D,
    DECODER_WIDTH_3D,
    DEFAULT_ENCODER,
    SCRATCH_RECIPE,
    M2SNetSettings,
    SettingsError,
    settings_for,
)
from m2s_nnunet.training.loss import SegmentationPlusLossNet
from m2s_nnunet.training.schedule import GroupLRSchedule
from m2s_nnunet.weights import (
    PRETRAINED_ENV,
    MissingWeightsError,
    load_encoder_weights,
    pretrained_enabled,
    resolve_encoder_weights,
    resolve_vgg16_weights,
)


def unwrap(network: nn.Module) -> nn.Module:
    """The plain module under DDP and/or torch.compile wrappers."""
    if hasattr(network, "module") and isinstance(network.module, nn.Module):
        network = network.module
    if isinstance(network, OptimizedModule):
        network = network._orig_mod
    return network


class M2SNetTrainer(nnUNetTrainer):
    """M2SNet (Res2Net-50 encoder, ImageNet weights) trained with Dice+CE + 0.1 x LossNet.

    2D RGB configurations use the timm encoder with ImageNet weights, as the paper does. Where those weights
    do not apply (3D configurations, inputs that are not 3-channel), the from-scratch recipe replaces the
    network and optimiser settings it names (``m2s_nnunet/settings.py``): nnU-Net's residual encoder built
    from the plans and deep supervision; LossNet stays (on slices in 3D).

    Optimiser (the paper's recipe, Zhao et al. 2023): SGD, Nesterov, momentum 0.9, weight decay 5e-4,
    base lr 0.05 for the decoder and 10x lower for the pretrained backbone, triangular schedule (rise to
    the peak at mid-training, then decay). nnU-Net's momentum 0.99 / lr 0.01 / poly recipe was tuned for
    randomly initialised U-Nets; the lower backbone rate protects the ImageNet features early on. The
    epoch budget is nnU-Net's (1000 x 250 iterations), so comparisons with ``nnUNetTrainer`` are at an
    equal budget; ``_50epochs``/``_100epochs`` are closer to the paper's budget.
    """

    # What variants change (the paper's model here). Read by the classmethods below too, so the predictor
    # builds the same network. Where ImageNet weights do not apply, ``scratch_recipe`` replaces the keys it
    # names (see m2s_nnunet/settings.py); None keeps the class attributes everywhere.
    scratch_recipe: dict | None = SCRATCH_RECIPE
    encoder_name: str = DEFAULT_ENCODER
    decoder_width: int = DECODER_WIDTH_2D
    decoder_width_3d: int = DECODER_WIDTH_3D
    use_side_heads: bool = False
    use_pretrained_encoder: bool = True
    lossnet_weight: float = 0.1
    backbone_lr_factor: float = 0.1
    lr_schedule: str = "triangular"
    # "paper": SGD momentum 0.9, lr 0.05, wd 5e-4, ``lr_schedule``; "nnunet": nnU-Net's SGD momentum 0.99,
    # lr 0.01, wd 3e-5, poly decay (the recipe nnU-Net tuned for randomly initialised networks)
    optimizer_recipe: str = "paper"
    # "dice_ce": nnU-Net's Dice+CE (Dice+BCE with regions); "structure": the paper's weighted BCE + weighted
    # IoU (binary tasks and region-based training)
    seg_loss: str = "dice_ce"
    # full-resolution refinement path through the encoder's finer stages (M2SNet(refine=)); "auto": only where
    # the "deeper" level mapping moved the pyramid off the full-resolution stage (settings.resolve_refine)
    refine: bool | str = False
    decoder_norm: str | None = None  # None: BatchNorm with a timm encoder, InstanceNorm with the plans encoder
    encoder_norm: str | None = None  # plans encoder only; None: the plans' norm_op (InstanceNorm)
    encoder_blocks: int | tuple[int, ...] | None = None  # plans encoder only; None: the plans' own or the default
    # plans encoder only: "last4": X2..X5 are the last four stages; "deeper" (the recipe's) never puts X2 at
    # full resolution (with 4-stage plans X5 is an extra stride-1 stage; plans_encoder.level_indices)
    level_mapping: str = "last4"
    # Schedule overrides (None keeps nnU-Net's 1000 epochs x 250 training / 50 validation iterations).
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    val_iterations_per_epoch: int | None = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        channels = determine_num_input_channels(self.plans_manager, self.configuration_manager, dataset_json)
        self.settings = self.m2snet_settings(self.configuration_manager, channels)
        self.enable_deep_supervision = self.settings.side_heads
        self.num_epochs = self.epochs or self.num_epochs
        self.num_iterations_per_epoch = self.iterations_per_epoch or self.num_iterations_per_epoch
        self.num_val_iterations_per_epoch = self.val_iterations_per_epoch or self.num_val_iterations_per_epoch
        if self.settings.optimizer_recipe == "paper":
            self.initial_lr, self.weight_decay, self.momentum = 0.05, 5e-4, 0.9
        else:  # nnU-Net's own values (nnUNetTrainer.__init__ and configure_optimizers)
            self.initial_lr, self.weight_decay, self.momentum = 1e-2, 3e-5, 0.99
        self._restoring_checkpoint = False
        self.encoder_weights_source: str | None = None

    # ---- network -------------------------------------------------------------------------------------
    @classmethod
    def m2snet_settings(cls, configuration_manager: ConfigurationManager | dict,
                        num_input_channels: int) -> M2SNetSettings:
        """All settings for this configuration and channel count (``m2s_nnunet/settings.py``): the class's,
        the from-scratch recipe where ImageNet weights do not apply, then the plans' m2snet block."""
        configuration = getattr(configuration_manager, "configuration", configuration_manager)
        try:
            return settings_for(cls, configuration, num_input_channels)
        except SettingsError as err:
            raise RuntimeError(str(err)) from err

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """Build M2SNet from the plans (never loads weights: this also runs at predict time).

        2D configurations get the timm encoder (ImageNet weights are loaded later, in ``initialize``), 3D
        configurations (3d_fullres, 3d_lowres, cascades) nnU-Net's residual encoder built from the plans.
        """
        settings = cls.m2snet_settings(configuration_manager, num_input_channels)
        try:
            return build_m2snet(settings, configuration_manager.configuration, num_input_channels,
                                num_output_channels, deep_supervision=enable_deep_supervision)
        except ValueError as err:
            raise RuntimeError(f"cannot build M2SNet for this configuration: {err}") from err

    @property
    def uses_imagenet_encoder(self) -> bool:
        """Whether this run starts from ImageNet encoder weights (2D timm encoder, not opted out)."""
        return self.settings.pretrained_encoder and pretrained_enabled()

    def _check_weights_available(self) -> None:
        """Resolve every pretrained file this run needs *before* building anything, and report all that are
        missing in one error (instead of failing on VGG16 first and on the encoder on the next try)."""
        problems = []
        if self.uses_imagenet_encoder:
            try:
                resolve_encoder_weights(self.settings.encoder)
            except MissingWeightsError as err:
                problems.append(str(err))
        if self.settings.uses_lossnet:
            try:
                resolve_vgg16_weights()
            except MissingWeightsError as err:
                problems.append(str(err))
        if problems:
            raise MissingWeightsError("\n\n".join(problems))

    def initialize(self) -> None:
        if not self._restoring_checkpoint:
            self._check_weights_available()
        super().initialize()
        net = unwrap(self.network)
        settings = self.settings
        n_params = sum(p.numel() for p in net.parameters())
        if settings.recipe:
            self.print_to_log_file(f"From-scratch recipe: {settings.recipe_reason}.")
        self.print_to_log_file(
            f"M2SNet ({net.dim}D): encoder {net.encoder.name}, width {settings.width}, "
            f"{n_params / 1e6:.2f} M parameters, refinement path {net.refine}, "
            f"side heads {settings.side_heads}, segmentation loss {settings.seg_loss}, "
            f"LossNet weight {settings.lossnet_weight}, optimiser '{settings.optimizer_recipe}'"
        )
        if self._restoring_checkpoint:
            return  # the checkpoint brings every weight; ImageNet weights are not needed
        if not settings.uses_timm_encoder:
            self.print_to_log_file("Encoder built from the plans (nnU-Net residual encoder), trained from scratch.")
        elif not settings.pretrained_encoder:
            self.print_to_log_file("Encoder initialised randomly (no ImageNet weights).")
        elif not pretrained_enabled():
            self.print_to_log_file(f"WARNING: {PRETRAINED_ENV}=0: encoder initialised randomly.")
        else:
            found = load_encoder_weights(net)
            self.encoder_weights_source = f"{found.path} ({found.origin})"
            self.print_to_log_file(f"Loaded ImageNet encoder weights from {self.encoder_weights_source}")

    def on_train_start(self) -> None:
        # `--c` resumes from checkpoint_latest, written every `save_every` epochs (nnU-Net: 50): runs shorter than
        # that had none and resumed from an older checkpoint_best. Now at most 1/20 of a run is lost to a kill.
        # Set here, not in __init__, so that subclasses which change num_epochs after __init__ are covered too.
        self.save_every = max(1, min(self.save_every, self.num_epochs // 20))
        super().on_train_start()

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        self._restoring_checkpoint = True
        try:
            super().load_checkpoint(filename_or_checkpoint)
        finally:
            self._restoring_checkpoint = False

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        net = unwrap(self.network)
        if net.has_side_heads:
            net.deep_supervision = enabled

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision:
            return None
        dim = len(self.configuration_manager.patch_size)
        return [[1.0] * dim] + unwrap(self.network).side_head_scales

    def _do_i_compile(self) -> bool:
        # torch.compile is opt-in for M2SNet (nnU-Net enables it by default on CUDA): it has not been
        # validated on this network yet. Set nnUNet_compile=true to try it.
        if not foreign_flag("nnUNet_compile", NNUNET_TRUE):
            return False
        return super()._do_i_compile()

    # ---- loss ----------------------------------------------------------------------------------------
    def _build_loss(self) -> nn.Module:
        # nnU-Net's Dice+CE (or Dice+BCE with regions), or the paper's structure loss, for one output ...
        ds = self.enable_deep_supervision
        if self.settings.seg_loss == "structure":
            if not self.label_manager.has_regions and self.label_manager.num_segmentation_heads != 2:
                raise RuntimeError(
                    f"{type(self).__name__} uses the paper's structure loss, which is binary, but this dataset has "
                    f"{self.label_manager.num_segmentation_heads - 1} foreground classes; use a Dice+CE trainer "
                    "(e.g. M2SNetTrainer_scratch) for multi-class tasks")
            seg_loss = StructureLoss(self.label_manager.has_regions, self.label_manager.ignore_label)
        else:
            self.enable_deep_supervision = False
            try:
                seg_loss = super()._build_loss()
            finally:
                self.enable_deep_supervision = ds
        # ... weighted over the side heads 1, 1/2, 1/4, 1/8 (all non-zero, so every head gets a gradient).
        if ds:
            weights = np.array([1 / 2**i for i in range(len(self._get_deep_supervision_scales()))])
            seg_loss = DeepSupervisionWrapper(seg_loss, weights / weights.sum())
        # the paper's 224 as the largest side VGG16 sees (3D: of each slice); smaller maps keep their size
        settings = self.settings
        lossnet = LossNet(size=settings.lossnet_size) if settings.uses_lossnet else None
        loss = SegmentationPlusLossNet(
            seg_loss, lossnet, settings.lossnet_weight, regions=self.label_manager.has_regions,
            ignore_label=self.label_manager.ignore_label, max_slices=settings.lossnet_slices,
        )
        return loss.to(self.device)

    def train_step(self, batch: dict) -> dict:
        self._check_label_values(batch["target"])
        return super().train_step(batch)

    def _check_label_values(self, target: torch.Tensor | list[torch.Tensor]) -> None:
        """Fail with a clear message on label values the dataset does not declare (e.g. masks saved as 0/255),
        instead of nnU-Net's 'index 255 is out of bounds' deep inside the loss."""
        if self.label_manager.has_regions:
            return
        full = target[0] if isinstance(target, (list, tuple)) else target
        allowed = set(range(self.label_manager.num_segmentation_heads))
        if self.label_manager.ignore_label is not None:
            allowed.add(self.label_manager.ignore_label)
        unexpected = sorted(set(torch.unique(full).long().tolist()) - allowed)
        if unexpected:
            raise RuntimeError(
                f"training targets contain label values {unexpected}, but dataset.json "
                f"declares labels {sorted(allowed)}. Masks saved as 0/255 (or JPEG masks) cause this: convert them "
                "to consecutive values 0..K (e.g. `m2s-nnunet convert`, or (mask > 127) for binary masks), then "
                "rerun nnUNetv2_plan_and_preprocess with --verify_dataset_integrity."
            )

    # ---- optimiser -----------------------------------------------------------------------------------
    def configure_optimizers(self):
        net = unwrap(self.network)
        backbone = [p for p in net.encoder.parameters() if p.requires_grad]
        backbone_ids = {id(p) for p in backbone}
        decoder = [p for p in net.parameters() if p.requires_grad and id(p) not in backbone_ids]
        factor = self.settings.backbone_lr_factor if self.uses_imagenet_encoder else 1.0
        optimizer = torch.optim.SGD(
            [  # decoder first: nnU-Net logs param_groups[0]['lr']
                {"params": decoder, "lr": self.initial_lr},
                {"params": backbone, "lr": self.initial_lr * factor},
            ],
            lr=self.initial_lr, momentum=self.momentum, weight_decay=self.weight_decay, nesterov=True,
        )
        schedule = self.settings.lr_schedule if self.settings.optimizer_recipe == "paper" else "poly"
        return optimizer, GroupLRSchedule(optimizer, self.num_epochs, schedule)

    # ---- logging of the two loss terms ---------------------------------------------------------------
    def _log_loss_terms(self, phase: str) -> None:
        if isinstance(self.loss, SegmentationPlusLossNet):
            terms = self.loss.pop_running_means()
            if terms:
                self.print_to_log_file(f"{phase} loss terms: " + ", ".join(f"{k} {v:.4f}" for k, v in terms.items()))

    def on_train_epoch_end(self, train_outputs: list[dict]) -> None:
        super().on_train_epoch_end(train_outputs)
        self._log_loss_terms("train")

    def on_validation_epoch_end(self, val_outputs: list[dict]) -> None:
        super().on_validation_epoch_end(val_outputs)
        self._log_loss_terms("val")
