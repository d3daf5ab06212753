"""M2SNetTrainer: nnU-Net v2's trainer with M2SNet as the network and Dice+CE + 0.1 x LossNet as the loss.

Everything else (data loading, augmentation, sliding-window validation, checkpoints, 5-fold CV) is
nnU-Net's own. Variants are small subclasses that set settings by name (see ``variants.py`` and
``m2s_nnunet/settings.py``). A trained model records its settings; every later version builds that network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn
from torch._dynamo import OptimizedModule

from m2s_nnunet import __version__
from m2s_nnunet.checkpoint_files import remove_partial_files, save_then_rename
from m2s_nnunet.losses import LossNet, StructureLoss
from m2s_nnunet.network.from_plans import build_m2snet
from m2s_nnunet.network.layout import LAYOUT_FIELDS, LegacyLayout, settings_difference
from m2s_nnunet.settings import (
    PLANS_KEY,
    RECORD_KEY,
    M2SNetSettings,
    SettingsError,
    derive_settings,
    recorded_settings,
    settings_for,
    variant_choices,
    with_plans_entry,
    with_record,
)
from m2s_nnunet.training.loss import SegmentationPlusLossNet
from m2s_nnunet.training.model_record import (
    model_folder_settings,
    network_weights,
    read_checkpoint,
    settings_of_checkpoint,
)
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
    do not apply (3D configurations, inputs that are not 3-channel), the from-scratch recipe fills the settings
    (``m2s_nnunet/settings.py``): nnU-Net's residual encoder built from the plans and deep supervision; LossNet
    stays (on slices in 3D).

    Variants set any field of ``M2SNetSettings`` as a class attribute of the same name (``encoder = "resnet18"``,
    ``side_heads = True``, ``recipe = False``, ...); this class sets none, so the plans, the recipe and the paper
    decide. Precedence, highest first: the settings recorded with a trained model, the variant's attributes, the
    plans' m2snet block, the recipe, the paper's defaults.

    Optimiser (the paper's recipe, Zhao et al. 2023): SGD, Nesterov, momentum 0.9, weight decay 5e-4,
    base lr 0.05 for the decoder and 10x lower for the pretrained backbone, triangular schedule (rise to
    the peak at mid-training, then decay). nnU-Net's momentum 0.99 / lr 0.01 / poly recipe was tuned for
    randomly initialised U-Nets; the lower backbone rate protects the ImageNet features early on. The
    epoch budget is nnU-Net's (1000 x 250 iterations), so comparisons with ``nnUNetTrainer`` are at an
    equal budget; ``_50epochs``/``_100epochs`` are closer to the paper's budget.
    """

    # Schedule overrides (None keeps nnU-Net's 1000 epochs x 250 training / 50 validation iterations).
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    val_iterations_per_epoch: int | None = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_input_channels = determine_num_input_channels(self.plans_manager, self.configuration_manager,
                                                               dataset_json)
        self.num_epochs = self.epochs or self.num_epochs
        self.num_iterations_per_epoch = self.iterations_per_epoch or self.num_iterations_per_epoch
        self.num_val_iterations_per_epoch = self.val_iterations_per_epoch or self.num_val_iterations_per_epoch
        self._restoring_checkpoint = False
        self._initial_weights: str | None = None  # -pretrained_weights: the file every weight comes from
        self.encoder_weights_source: str | None = None
        # A refusal (a variant's choice this configuration cannot have) waits for initialize(): --c and --val of a
        # model trained before the refusal existed take the network its checkpoint records instead.
        self._refusal: SettingsError | None = None
        try:
            derived = self.m2snet_settings(self.configuration_manager, self.num_input_channels)
        except SettingsError as err:
            self._refusal = err
            derived = derive_settings(type(self).__name__, {}, self.configuration_manager.configuration,
                                      self.num_input_channels)
        found = model_folder_settings(Path(self.output_folder_base), configuration, type(self).__name__, fold,
                                      derived, self.num_input_channels, self.label_manager.num_segmentation_heads)
        if found is not None:
            self._refusal = None
        self._use_settings(*(found or (derived, "derived from the trainer, the plans and the recipe")))

    # ---- settings --------------------------------------------------------------------------------------
    @classmethod
    def m2snet_settings(cls, configuration_manager: ConfigurationManager | dict,
                        num_input_channels: int) -> M2SNetSettings:
        """This class's settings for one configuration and channel count (``m2s_nnunet/settings.py``): the
        recorded ones where the configuration holds a record of this trainer, otherwise derived."""
        configuration = getattr(configuration_manager, "configuration", configuration_manager)
        return settings_for(cls, configuration, num_input_channels)

    def _use_settings(self, settings: M2SNetSettings, source: str) -> None:
        """Train ``settings`` and record them: in the plans this trainer holds, which nnU-Net saves as the model
        folder's plans.json and in every checkpoint."""
        self.settings, self.settings_source = settings, source
        self.enable_deep_supervision = settings.side_heads
        if settings.optimizer_recipe == "paper":
            self.initial_lr, self.weight_decay, self.momentum = 0.05, 5e-4, 0.9
        else:  # nnU-Net's own values (nnUNetTrainer.__init__ and configure_optimizers)
            self.initial_lr, self.weight_decay, self.momentum = 1e-2, 3e-5, 0.99
        raw = self.plans_manager.plans["configurations"][self.configuration_name]
        resolved = self.configuration_manager.configuration
        block = with_record(resolved, settings, type(self).__name__)[PLANS_KEY]
        raw[PLANS_KEY] = block  # its own block: an inherited one is replaced whole by nnU-Net's inheritance
        resolved[PLANS_KEY] = block

    def _adopt_checkpoint_settings(self, checkpoint: dict, where: str) -> None:
        """Build the network a checkpoint was trained with (``--c``, ``--val``), whatever today's rules say."""
        trained, source = settings_of_checkpoint(checkpoint, where, self.settings,
                                                 self.configuration_manager.configuration, self.num_input_channels,
                                                 self.label_manager.num_segmentation_heads)
        self._refusal = None  # the checkpoint decides what this run builds
        if trained == self.settings:
            return
        if self.was_initialized:
            raise RuntimeError(f"{where} was trained with other settings than the network this trainer has already "
                               f"built ({settings_difference(trained, self.settings) or 'training settings'}): "
                               "load the checkpoint before initialize()")
        self._use_settings(trained, source)

    def use_pretrained_network(self, filename: str) -> None:
        """``-pretrained_weights``: build the network those weights were trained with (the layout settings; the
        heads, the schedule and the loss stay this trainer's), and take no ImageNet weights."""
        if self.was_initialized:
            raise RuntimeError("use_pretrained_network must run before initialize()")
        checkpoint = read_checkpoint(filename)
        trained, source = settings_of_checkpoint(checkpoint, filename, self.settings,
                                                 self.configuration_manager.configuration, self.num_input_channels,
                                                 self.label_manager.num_segmentation_heads)
        if trained.dim != self.settings.dim:
            raise SettingsError(f"{filename} holds a {trained.dim}D M2SNet, but this configuration is "
                                f"{self.settings.dim}D: fine-tune from a model of the same configuration")
        layout = {name: getattr(trained, name) for name in LAYOUT_FIELDS if name != "side_heads"}
        self._use_settings(self.settings.replace(**layout, pretrained_encoder=trained.pretrained_encoder),
                           f"the network of {filename} ({source})")
        self._initial_weights = filename

    def _log_settings_source(self) -> None:
        """Where the settings came from and, for recorded ones, how today's rules would differ."""
        self.print_to_log_file(f"M2SNet settings {self.settings_source}.")
        if self.settings_source.startswith("derived"):
            return
        unrecorded = with_plans_entry(self.configuration_manager.configuration, **{RECORD_KEY: None})
        try:
            today = derive_settings(type(self).__name__, variant_choices(type(self)), unrecorded,
                                    self.num_input_channels)
        except SettingsError as err:
            self.print_to_log_file(f"(m2s-nnunet {__version__} would refuse this trainer here: {err})")
            return
        if today != self.settings:
            difference = settings_difference(today, self.settings) or "other training settings"
            self.print_to_log_file(f"(m2s-nnunet {__version__} would build, for a new model: {difference}.)")

    # ---- network -------------------------------------------------------------------------------------
    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """Build M2SNet from the plans (never loads weights: this also runs at predict time).

        A configuration that records this trainer's settings (every model trained since m2s-nnunet 0.7, and the
        trainer itself while it trains) builds exactly those. One without a record belongs to a model of 0.6 or
        older: the network is built by today's rules and, when nnU-Net loads that model's weights, becomes the
        network their layout says (``network.layout``), even where today's rules refuse this trainer.
        """
        configuration = configuration_manager.configuration
        settings = recorded_settings(configuration, cls.__name__)
        recorded = settings is not None
        if not recorded:
            try:
                settings = derive_settings(cls.__name__, variant_choices(cls), configuration, num_input_channels)
            except SettingsError:  # today's rules refuse this trainer here; the weights loaded next decide
                settings = derive_settings(cls.__name__, {}, configuration, num_input_channels)
            settings = settings.replace(cpu_bf16=False)  # an old model predicts in the fp32 it was trained in
        try:
            net = build_m2snet(settings, configuration, num_input_channels, num_output_channels,
                               deep_supervision=enable_deep_supervision)
        except ValueError as err:
            raise RuntimeError(f"cannot build M2SNet for this configuration: {err}") from err
        if not recorded:
            net.layout_resolver = LegacyLayout(settings, configuration, num_input_channels, num_output_channels,
                                               enable_deep_supervision)
        return net

    @property
    def uses_imagenet_encoder(self) -> bool:
        """Whether this run starts from ImageNet encoder weights (2D timm encoder, not opted out)."""
        return self.settings.pretrained_encoder and pretrained_enabled()

    def _check_weights_available(self) -> None:
        """Resolve every pretrained file this run needs *before* building anything, and report all that are
        missing in one error (instead of failing on VGG16 first and on the encoder on the next try)."""
        problems = []
        if self.uses_imagenet_encoder and self._initial_weights is None:
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
        if self._refusal is not None:
            raise self._refusal
        if not self._restoring_checkpoint:
            self._check_weights_available()
        super().initialize()
        net = unwrap(self.network)
        if hasattr(net, "layout_resolver"):
            del net.layout_resolver  # the trainer's network is the recorded one; it never swaps itself
        # M2S_NNUNET_PREDICT_BF16 is for nnUNetv2_predict: validation while training (pseudo Dice, the best
        # checkpoint, the final validation) stays in the precision the model trains in
        net.cpu_bf16_eval = net.cpu_bf16
        settings = self.settings
        n_params = sum(p.numel() for p in net.parameters())
        self._log_settings_source()
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
        if self._initial_weights is not None:
            self.print_to_log_file(f"Every weight but the heads comes from {self._initial_weights}.")
        elif not settings.uses_timm_encoder:
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
        for stale in remove_partial_files(self.output_folder):
            self.print_to_log_file(f"Removed {stale.name}: a checkpoint a killed run had not finished writing.")
        super().on_train_start()

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's, written to a hidden file and renamed over ``filename``: a run killed while saving leaves
        the previous checkpoint whole, so ``--c`` resumes from it (nnU-Net writes in place and leaves it cut off)."""
        save_then_rename(super().save_checkpoint, filename)

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        """nnU-Net's, after making sure the network built is the one the checkpoint was trained with."""
        if isinstance(filename_or_checkpoint, str):
            checkpoint, where = read_checkpoint(filename_or_checkpoint), filename_or_checkpoint
        else:
            checkpoint, where = filename_or_checkpoint, "the checkpoint"
        self._adopt_checkpoint_settings({**checkpoint, "network_weights": network_weights(checkpoint)}, where)
        self._restoring_checkpoint = True
        try:
            super().load_checkpoint(filename_or_checkpoint)
        finally:
            self._restoring_checkpoint = False
        # nnU-Net takes init_args from the checkpoint; the plans in them must keep recording what this run trains
        self.my_init_kwargs = {**self.my_init_kwargs, "plans": self.plans_manager.plans}

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        net = unwrap(self.network)
        if net.has_side_heads:
            net.deep_supervision = enabled

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision:
            return None
        dim = len(self.configuration_manager.patch_size)
        return [[1.0] * dim] + unwrap(self.network).side_head_scales

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
