"""M2SNetSettings: every choice that decides which M2SNet is built and how it trains, in one frozen object.

One function derives the settings (``settings_for``) from three sources, in this order:

1. the trainer variant's class attributes (``M2SNetTrainer``: the paper's model; see training/variants.py);
2. the from-scratch recipe (``SCRATCH_RECIPE``), where ImageNet weights do not apply to a paper-model
   variant: 3D configurations, inputs that are not 3-channel, ``use_pretrained_encoder = False``;
3. the plans configuration's ``m2snet`` block (``PLANS_KEY``), which may set the network keys
   (``PLANS_OVERRIDES``) and holds the planner's records.

Everything depends only on the class, the plans and the channel count, so training, ``nnUNetv2_predict``,
the planner, ``flops`` and the benchmarks build the same network from the same object. This module is the
only place that spells the plans key and the 2D/3D rules (encoder kind, decoder width and norm, LossNet
size and slices); it imports neither torch nor nnU-Net, so the CLI and the planner stay light.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from m2s_nnunet.errors import UserError

SCHEMA_VERSION = 1  # of the plans' m2snet block and of M2SNetSettings.to_dict()
PLANS_KEY = "m2snet"

DEFAULT_ENCODER = "res2net50d"  # deep-stem Res2Net-50 v1b 26w x 4s, the paper's backbone (timm name)
LIGHT_ENCODER = "resnet18"  # ~2x fewer MACs at 352x352: the CPU-friendly choice
PLANS_ENCODER = "plans"  # nnU-Net's residual encoder built from the plans' kernel sizes and strides
DECODER_WIDTH_2D = 64  # the paper's
# 3D: half the paper's width. The decoder runs at X2's resolution, which in nnU-Net's 3D topologies is often
# a quarter of the voxels (stride 1x2x2), so a 64-channel decoder alone would need ~37 kB per input voxel.
DECODER_WIDTH_3D = 32
LOSSNET_SIZE = 224  # the largest side VGG16 sees (the paper's input size); smaller maps keep their size
LOSSNET_SLICES_3D = 4  # VGG16 is 2D: evenly spaced slices of a 3D patch it sees

OPTIMIZER_RECIPES = ("paper", "nnunet")
SEG_LOSSES = ("dice_ce", "structure")
LR_SCHEDULES = ("triangular", "poly")
NORMS = ("batch", "instance")
LEVEL_MAPPINGS = ("last4", "deeper")
# refine = "auto": the refinement path exactly where "deeper" moved the pyramid off the full-resolution stage
REFINE_AUTO = "auto"

# Keys a plans' m2snet block may set (they override the trainer variant's), and what the planner records.
PLANS_OVERRIDES = ("encoder", "width", "refine", "decoder_norm", "encoder_norm", "encoder_blocks", "level_mapping")
PLANS_RECORDS = ("memory_model", "preset")

# The from-scratch recipe as trainer class attributes, chosen by the ablation in bench/RESULTS.md section 6
# (screened on Kvasir-SEG fold-0 validation; the best two rows confirmed on polyp, ultrasound, CT slices and
# 3D MRI against nnU-Net's U-Net). The refinement path gained nothing beyond the replicate noise on the
# rule's validation data and costs 27 % more per step, so it is off (a plans' m2snet block can turn it on).
# With 4-stage plans (rule 4 of RESULTS 6.7) the pyramid goes one stage down ("deeper") and one refinement
# step brings the decoder back to the full-resolution stage: in the same training minutes this beat the
# full-resolution pyramid, which is 2.2x slower per training iteration there. Other plans: no change.
SCRATCH_RECIPE: dict[str, object] = {
    "encoder_name": PLANS_ENCODER,  # nnU-Net's residual encoder built from the plans, InstanceNorm
    "refine": REFINE_AUTO,  # only where "deeper" moved the pyramid (4-stage plans); elsewhere off: no gain
    "use_side_heads": True,  # deep supervision through the O2..O4 side heads
    "optimizer_recipe": "paper",  # SGD 0.9, lr 0.05 (the whole network: no pretrained part), triangular
    "seg_loss": "dice_ce",
    "level_mapping": "deeper",  # plans encoder, 4-stage plans only: X2 below the full resolution
}
# trainer class attribute -> settings field, for the attributes the recipe and the plans may replace
_CLASS_ATTRIBUTES = {"encoder_name": "encoder", "refine": "refine", "decoder_norm": "decoder_norm",
                     "encoder_norm": "encoder_norm", "encoder_blocks": "encoder_blocks",
                     "level_mapping": "level_mapping", "use_side_heads": "side_heads",
                     "optimizer_recipe": "optimizer_recipe", "seg_loss": "seg_loss"}


class SettingsError(UserError, ValueError):
    """Settings that cannot be built: an unknown key or value in a trainer class or in the plans."""


@dataclass(frozen=True)
class M2SNetSettings:
    """Which M2SNet to build for one configuration and how to train it (see the module docstring).

    ``encoder``: a timm name (2D only) or ``"plans"``. ``decoder_norm`` is resolved ("batch" with a timm
    encoder as in the paper, "instance" with the plans encoder: 3D batches hold 2 samples). ``encoder_norm``,
    ``encoder_blocks`` and ``level_mapping`` apply to the plans encoder only. ``pretrained_encoder``: load
    ImageNet weights into the timm encoder (the paper's setting; never with the recipe).
    """

    dim: int
    encoder: str = DEFAULT_ENCODER
    width: int | None = None  # None: 64 in 2D (the paper's), 32 in 3D
    decoder_norm: str | None = None  # None: "batch" with a timm encoder, "instance" with the plans encoder
    encoder_norm: str | None = None
    encoder_blocks: int | tuple[int, ...] | None = None
    level_mapping: str = "last4"
    refine: bool = False
    side_heads: bool = False
    fast_filters: bool = True  # the fixed filters as channel-sum box filters (same result as the plain convs)
    pretrained_encoder: bool = True
    lossnet_weight: float = 0.1
    lossnet_size: int = LOSSNET_SIZE
    lossnet_slices: int | None = None  # None: 1 in 2D, LOSSNET_SLICES_3D in 3D
    optimizer_recipe: str = "paper"
    lr_schedule: str = "triangular"
    backbone_lr_factor: float = 0.1
    seg_loss: str = "dice_ce"
    recipe: bool = False  # whether the from-scratch recipe replaced the variant's settings
    recipe_reason: str = ""

    def __post_init__(self) -> None:
        # the 2D/3D rules: resolved here, so every consumer reads final values
        defaults = {"width": DECODER_WIDTH_2D if self.dim == 2 else DECODER_WIDTH_3D,
                    "decoder_norm": "batch" if self.encoder != PLANS_ENCODER else "instance",
                    "lossnet_slices": 1 if self.dim == 2 else LOSSNET_SLICES_3D}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        checks = [("dim", self.dim, (2, 3)), ("decoder_norm", self.decoder_norm, NORMS),
                  ("level_mapping", self.level_mapping, LEVEL_MAPPINGS),
                  ("optimizer_recipe", self.optimizer_recipe, OPTIMIZER_RECIPES),
                  ("lr_schedule", self.lr_schedule, LR_SCHEDULES), ("seg_loss", self.seg_loss, SEG_LOSSES)]
        if self.encoder_norm is not None:
            checks.append(("encoder_norm", self.encoder_norm, NORMS))
        for name, value, allowed in checks:
            if value not in allowed:
                raise SettingsError(f"{name} must be one of {allowed}, got '{value}'")
        if self.width < 1 or self.lossnet_weight < 0:
            raise SettingsError(f"width must be >= 1 and lossnet_weight >= 0, got {self.width}, {self.lossnet_weight}")
        if self.dim == 3 and self.encoder != PLANS_ENCODER:
            raise SettingsError(f"3D configurations use the plans encoder, not '{self.encoder}' (no 3D timm encoders)")
        if self.uses_timm_encoder and (self.encoder_norm is not None or self.encoder_blocks is not None
                                       or self.level_mapping != "last4"):
            raise SettingsError("encoder_norm, encoder_blocks and level_mapping apply to the plans encoder only, "
                                f"not to '{self.encoder}'")
        if isinstance(self.encoder_blocks, list):  # JSON gives lists; keep the object hashable
            object.__setattr__(self, "encoder_blocks", tuple(self.encoder_blocks))

    @property
    def uses_timm_encoder(self) -> bool:
        return self.encoder != PLANS_ENCODER

    @property
    def uses_lossnet(self) -> bool:
        return self.lossnet_weight > 0

    def replace(self, **changes: Any) -> M2SNetSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the schema version (``from_dict`` reads it back to an equal object)."""
        data = dataclasses.asdict(self)
        if isinstance(self.encoder_blocks, tuple):
            data["encoder_blocks"] = list(self.encoder_blocks)
        return {"schema_version": SCHEMA_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> M2SNetSettings:
        data = dict(data)
        _check_version(data.pop("schema_version", SCHEMA_VERSION), "M2SNet settings")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise SettingsError(f"unknown M2SNet setting(s) {unknown}")
        return cls(**data)

    def plans_overrides(self) -> dict[str, Any]:
        """The network keys as a plans' m2snet block holds them (``with_plans_entry`` writes them)."""
        data = self.to_dict()
        return {key: data[key] for key in PLANS_OVERRIDES}


def _check_version(version: object, what: str) -> None:
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise SettingsError(f"{what}: schema_version {version!r}, but this m2s-nnunet reads versions up to "
                            f"{SCHEMA_VERSION}: upgrade m2s-nnunet (pip install -U m2s-nnunet)")


# ---- the plans' m2snet block ------------------------------------------------------------------------
def plans_entry(configuration: dict) -> dict[str, Any]:
    """A configuration's m2snet block (empty if absent), checked: known keys and a readable schema version.

    Blocks written before the schema version existed (m2s-nnunet <= 0.4) have none and read as version 1.
    """
    entry = dict(configuration.get(PLANS_KEY) or {})
    _check_version(entry.pop("schema_version", SCHEMA_VERSION), f"the plans' '{PLANS_KEY}' block")
    unknown = sorted(set(entry) - set(PLANS_OVERRIDES) - set(PLANS_RECORDS))
    if unknown:
        raise SettingsError(f"the plans' '{PLANS_KEY}' block has unknown key(s) {unknown}; allowed: "
                            f"{', '.join(PLANS_OVERRIDES + PLANS_RECORDS)}")
    return entry


def plans_overrides(configuration: dict) -> dict[str, Any]:
    """The network keys a configuration's m2snet block sets (records such as the memory model left out)."""
    return {k: v for k, v in plans_entry(configuration).items() if k in PLANS_OVERRIDES}


def plans_record(configuration: dict, name: str) -> Any:
    """A record the planner wrote (``memory_model``, ``preset``), or None."""
    return plans_entry(configuration).get(name)


def has_plans_entry(configuration: dict) -> bool:
    return bool(configuration.get(PLANS_KEY))


def with_plans_entry(configuration: dict, **entries: Any) -> dict:
    """A copy of ``configuration`` whose m2snet block also holds ``entries`` (None values remove a key)."""
    entry = plans_entry(configuration)
    for key, value in entries.items():
        if key not in PLANS_OVERRIDES + PLANS_RECORDS:
            raise SettingsError(f"'{key}' is not a key of the plans' '{PLANS_KEY}' block")
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = list(value) if isinstance(value, tuple) else value
    return {**configuration, PLANS_KEY: {"schema_version": SCHEMA_VERSION, **entry}}


# ---- deriving the settings ----------------------------------------------------------------------------
def deeper_moves_pyramid(n_stages: int) -> bool:
    """Whether ``level_mapping`` "deeper" differs from "last4": only 4-stage plans put X2 on the
    full-resolution stage (``plans_encoder.level_indices``)."""
    return n_stages == 4


def resolve_refine(refine: object, encoder: str, level_mapping: str, configuration: dict) -> bool:
    """``refine`` as a bool: ``REFINE_AUTO`` is on where the "deeper" mapping moved the pyramid off the
    full-resolution stage of the plans encoder, off elsewhere."""
    if isinstance(refine, bool):
        return refine
    if refine != REFINE_AUTO:
        raise SettingsError(f"refine must be true, false or \"{REFINE_AUTO}\", got {refine!r}")
    n_stages = ((configuration.get("architecture") or {}).get("arch_kwargs") or {}).get("n_stages")
    return bool(encoder == PLANS_ENCODER and level_mapping == "deeper" and n_stages is not None
                and deeper_moves_pyramid(int(n_stages)))


def _with_plans_rules(values: dict[str, Any], configuration: dict, dim: int) -> dict[str, Any]:
    """``values`` with the plans' m2snet block applied, then the rules the trainer and the planner share: 3D
    always builds the plans encoder, a timm encoder has no level mapping but the paper's, ``refine`` resolved."""
    overrides = plans_overrides(configuration)
    values = {**values, **overrides}
    if dim == 3:
        values["encoder"] = PLANS_ENCODER  # a variant's timm name is 2D-only
    if values["encoder"] != PLANS_ENCODER and "level_mapping" not in overrides:
        values["level_mapping"] = "last4"  # the recipe's mapping is for the plans encoder
    values["refine"] = resolve_refine(values.get("refine", False), values["encoder"],
                                      values.get("level_mapping", "last4"), configuration)
    return values


def recipe_applies(dim: int, num_input_channels: int, use_pretrained_encoder: bool) -> tuple[bool, str]:
    """Whether the from-scratch recipe replaces the paper's settings, and why (for the training log)."""
    if not use_pretrained_encoder:
        return True, "this variant trains from scratch"
    if dim != 2:
        return True, "3D configuration (no ImageNet weights exist for 3D encoders)"
    if num_input_channels != 3:
        return True, f"{num_input_channels}-channel input (ImageNet weights are for RGB)"
    return False, "2D RGB input: the paper's ImageNet encoder"


def settings_for(trainer_cls: type, configuration: dict, num_input_channels: int) -> M2SNetSettings:
    """The settings of a trainer class (its attributes, see ``M2SNetTrainer``) for one plans configuration."""
    name = getattr(trainer_cls, "__name__", str(trainer_cls))
    dim = len(configuration["patch_size"])
    values = {field: getattr(trainer_cls, attribute) for attribute, field in _CLASS_ATTRIBUTES.items()}
    recipe, applies, why = trainer_cls.scratch_recipe, False, ""
    if recipe is not None:
        unknown = sorted(set(recipe) - set(_CLASS_ATTRIBUTES))
        if unknown:
            raise SettingsError(f"{name}.scratch_recipe has unknown key(s) {unknown}; "
                                f"allowed: {', '.join(_CLASS_ATTRIBUTES)}")
        applies, why = recipe_applies(dim, num_input_channels, trainer_cls.use_pretrained_encoder)
        if applies:
            values.update({_CLASS_ATTRIBUTES[k]: v for k, v in recipe.items()})
    values["width"] = trainer_cls.decoder_width if dim == 2 else trainer_cls.decoder_width_3d
    try:
        values = _with_plans_rules(values, configuration, dim)
        timm = values["encoder"] != PLANS_ENCODER
        return M2SNetSettings(
            dim=dim, **values,
            pretrained_encoder=bool(trainer_cls.use_pretrained_encoder and not applies and timm),
            lossnet_weight=float(trainer_cls.lossnet_weight),
            lr_schedule=trainer_cls.lr_schedule, backbone_lr_factor=float(trainer_cls.backbone_lr_factor),
            recipe=applies, recipe_reason=why,
        )
    except SettingsError as err:
        raise SettingsError(f"{name}: {err}") from err


def settings_for_planning(configuration: dict, num_input_channels: int, encoder: str | None = None,
                          lossnet: bool = True) -> M2SNetSettings:
    """What ``M2SNetTrainer`` builds for this configuration, as the planner sizes it.

    ``encoder``: an explicit ``--encoder`` (pinned in the plans for 2D); otherwise the paper's encoder for
    2D RGB and the recipe's plans encoder elsewhere, as ``settings_for(M2SNetTrainer, ...)`` decides.
    """
    dim = len(configuration["patch_size"])
    if encoder is not None and dim == 2:
        chosen = encoder
    else:  # the paper's encoder where ImageNet weights apply, the recipe's elsewhere (one rule: recipe_applies)
        chosen = PLANS_ENCODER if recipe_applies(dim, num_input_channels, True)[0] else DEFAULT_ENCODER
    values: dict[str, Any] = {"encoder": chosen}
    if chosen == PLANS_ENCODER:  # the recipe's network keys, as settings_for applies them
        values.update({_CLASS_ATTRIBUTES[k]: v for k, v in SCRATCH_RECIPE.items()
                       if _CLASS_ATTRIBUTES[k] in PLANS_OVERRIDES})
    values = _with_plans_rules(values, configuration, dim)
    return M2SNetSettings(dim=dim, **values, pretrained_encoder=values["encoder"] != PLANS_ENCODER,
                          lossnet_weight=0.1 if lossnet else 0.0)
