"""M2SNetSettings: every choice that decides which M2SNet is built and how it trains, in one frozen object.

One name per setting: a trainer variant's class attribute, the settings field, the key of the plans' ``m2snet``
block and the docs all use the field names of ``M2SNetSettings`` (``encoder``, ``width``, ``side_heads``, ...).

One precedence rule (``settings_for``), highest first:

1. the settings recorded with a trained model (``trained_with`` in the plans' m2snet block: the trainer writes it
   into the model folder's plans.json and the checkpoint, so every later version builds the network that was
   trained);
2. the trainer variant's own class attributes (``M2SNetTrainer_resnet18.encoder = "resnet18"``);
3. the plans' m2snet block (``m2s-nnunet plan`` and the presets write it; network keys only, ``PLANS_OVERRIDES``);
4. the from-scratch recipe (``SCRATCH_RECIPE``), where ImageNet weights do not apply: 3D configurations, inputs
   that are not 3-channel, a variant with ``pretrained_encoder = False``, or ``recipe = True``;
5. the paper's defaults (the field defaults below).

A variant's explicit choice that cannot apply (an ImageNet encoder on grey input, a timm encoder in 3D) is
refused with a message that names the trainer and what to use instead; it is never swapped silently. This
module is the only place that spells these rules and the 2D/3D defaults; it imports neither torch nor nnU-Net,
so the CLI and the planner stay light. Adding a setting or a recipe key touches this module and its test only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from m2s_nnunet.errors import UserError

# 2: the plans' m2snet block may hold the record of a trained model (``trained_with``), one name per setting.
# Version 1 blocks (m2s-nnunet <= 0.6, or none at all) read as they are.
SCHEMA_VERSION = 2
PLANS_KEY = "m2snet"
RECORD_KEY = "trained_with"

DEFAULT_ENCODER = "res2net50d"  # deep-stem Res2Net-50 v1b 26w x 4s, the paper's backbone (timm name)
LIGHT_ENCODER = "resnet18"  # about half the MACs of Res2Net-50: the CPU-friendly choice
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

# Keys a plans' m2snet block may set (level 3 of the precedence rule), and what else it may hold.
PLANS_OVERRIDES = ("encoder", "width", "refine", "decoder_norm", "encoder_norm", "encoder_blocks", "level_mapping")
PLANS_RECORDS = ("memory_model", "preset", RECORD_KEY)

# The from-scratch recipe (level 4), chosen by the measurements in bench/RESULTS.md section 6: nnU-Net's residual
# encoder built from the plans, deep supervision through the side heads, the paper's optimiser, Dice+CE; the
# refinement path only where the "deeper" mapping moved the pyramid off the full-resolution stage (4-stage plans).
SCRATCH_RECIPE: dict[str, object] = {
    "encoder": PLANS_ENCODER,
    "pretrained_encoder": False,
    "refine": REFINE_AUTO,
    "side_heads": True,
    "optimizer_recipe": "paper",
    "seg_loss": "dice_ce",
    "level_mapping": "deeper",
}
# Class attribute names of m2s-nnunet <= 0.6, refused with their new name (a renamed attribute would otherwise
# be ignored without a word).
RENAMED_ATTRIBUTES = {
    "encoder_name": "encoder", "use_side_heads": "side_heads", "decoder_width": "width",
    "decoder_width_3d": "width (one value; unset: 64 in 2D, 32 in 3D)",
    "use_pretrained_encoder": "pretrained_encoder",
    "scratch_recipe": "recipe (True: the from-scratch recipe everywhere; False: never)",
}


class SettingsError(UserError, ValueError):
    """Settings that cannot be built: an unknown key or value in a trainer class or in the plans."""


@dataclass(frozen=True)
class M2SNetSettings:
    """Which M2SNet to build for one configuration and how to train it (see the module docstring).

    Every field but ``dim`` and ``recipe_reason`` is also a class attribute a trainer variant may set.
    ``encoder``: a timm name (2D only) or ``"plans"``. ``decoder_norm`` is resolved ("batch" with a timm
    encoder as in the paper, "instance" with the plans encoder: 3D batches hold 2 samples). ``encoder_norm``,
    ``encoder_blocks`` and ``level_mapping`` apply to the plans encoder only. ``pretrained_encoder``: load
    ImageNet weights into the timm encoder (the paper's setting; never with the recipe). ``recipe``: whether the
    from-scratch recipe filled the settings the variant did not choose (a variant sets it to force it either way).

    A field added later must default to what earlier versions built: records written before it lack it.
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
    # the network under bfloat16 autocast on CPUs that compute bf16 natively (fp32 elsewhere; GPUs keep nnU-Net's
    # fp16). Opt-in: the plans encoder's gradients lose precision in bf16 (tests/network/test_cpu_bf16.py)
    cpu_bf16: bool = False
    pretrained_encoder: bool = True
    lossnet_weight: float = 0.1
    lossnet_size: int = LOSSNET_SIZE
    lossnet_slices: int | None = None  # None: 1 in 2D, LOSSNET_SLICES_3D in 3D
    optimizer_recipe: str = "paper"
    lr_schedule: str = "triangular"
    backbone_lr_factor: float = 0.1
    seg_loss: str = "dice_ce"
    recipe: bool = False  # whether the from-scratch recipe filled the settings the variant did not choose
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
        for name in ("refine", "side_heads", "fast_filters", "cpu_bf16", "pretrained_encoder", "recipe"):
            if not isinstance(getattr(self, name), bool):
                raise SettingsError(f"{name} must be true or false, got {getattr(self, name)!r}")
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
    _check_version(entry.pop("schema_version", 1), f"the plans' '{PLANS_KEY}' block")
    unknown = sorted(set(entry) - set(PLANS_OVERRIDES) - set(PLANS_RECORDS))
    if unknown:
        raise SettingsError(f"the plans' '{PLANS_KEY}' block has unknown key(s) {unknown}; allowed: "
                            f"{', '.join(PLANS_OVERRIDES + PLANS_RECORDS)}")
    return entry


def plans_overrides(configuration: dict) -> dict[str, Any]:
    """The network keys a configuration's m2snet block sets (records such as the memory model left out)."""
    return {k: v for k, v in plans_entry(configuration).items() if k in PLANS_OVERRIDES}


def plans_record(configuration: dict, name: str) -> Any:
    """A record the planner or the trainer wrote (``memory_model``, ``preset``, ``trained_with``), or None."""
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


# ---- the record of a trained model (precedence level 1) -----------------------------------------------
def make_record(settings: M2SNetSettings, trainer_name: str) -> dict[str, Any]:
    """What a training run writes with its model: the trainer, this package's version and every resolved field."""
    from m2s_nnunet import __version__

    return {"trainer": trainer_name, "m2s_nnunet": __version__, "settings": settings.to_dict()}


def record_settings(record: dict, what: str = "the record") -> M2SNetSettings:
    """The settings a record holds (``make_record``), checked: a record from a newer version is refused."""
    try:
        return M2SNetSettings.from_dict(record["settings"])
    except (KeyError, TypeError) as err:
        raise SettingsError(f"{what} is not an m2s-nnunet settings record ({err!r})") from err
    except SettingsError as err:
        version = record.get("m2s_nnunet", "an unknown version")
        raise SettingsError(f"{what} was written by m2s-nnunet {version}: {err}. Upgrade m2s-nnunet "
                            "(pip install -U m2s-nnunet) to use this model") from err


def recorded_settings(configuration: dict, trainer_name: str) -> M2SNetSettings | None:
    """The settings recorded in a configuration's m2snet block for this trainer, or None.

    A record of another trainer (plans copied from another model folder) does not apply: that trainer's network
    is not this one's.
    """
    record = plans_record(configuration, RECORD_KEY)
    if not record or record.get("trainer") != trainer_name:
        return None
    settings = record_settings(record, f"the settings recorded for {trainer_name}")
    dim = len(configuration["patch_size"])
    if settings.dim != dim:
        raise SettingsError(f"the settings recorded for {trainer_name} are for {settings.dim}D, but this "
                            f"configuration is {dim}D: the plans.json of this model folder was edited by hand")
    return settings


def with_record(configuration: dict, settings: M2SNetSettings, trainer_name: str) -> dict:
    """A copy of ``configuration`` whose m2snet block records ``settings`` as what ``trainer_name`` trained.

    The block is the configuration's resolved one (``inherits_from`` merges blocks whole), so a configuration
    that inherited its block keeps its keys when it gets its own.
    """
    return with_plans_entry(configuration, **{RECORD_KEY: make_record(settings, trainer_name)})


# ---- deriving the settings (precedence levels 2 to 5) ---------------------------------------------------
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


def recipe_applies(dim: int, num_input_channels: int, pretrained_encoder: bool) -> tuple[bool, str]:
    """Whether the from-scratch recipe fills the settings a variant did not choose, and why (for the log)."""
    if not pretrained_encoder:
        return True, "this variant trains from scratch"
    if dim != 2:
        return True, "3D configuration (no ImageNet weights exist for 3D encoders)"
    if num_input_channels != 3:
        return True, f"{num_input_channels}-channel input (ImageNet weights are for RGB)"
    return False, "2D RGB input: the paper's ImageNet encoder"


VARIANT_FIELDS = tuple(f.name for f in dataclasses.fields(M2SNetSettings) if f.name not in ("dim", "recipe_reason"))


def variant_choices(trainer_cls: type) -> dict[str, Any]:
    """The settings a trainer class chooses: its class attributes named like a settings field (level 2).

    ``M2SNetTrainer`` sets none, so everything it builds comes from the plans, the recipe and the paper.
    """
    name = getattr(trainer_cls, "__name__", str(trainer_cls))
    for old, new in RENAMED_ATTRIBUTES.items():
        if hasattr(trainer_cls, old):
            raise SettingsError(f"{name}.{old}: this class attribute is now called {new} (m2s-nnunet 0.7 uses one "
                                "name per setting); rename it in the trainer class")
    return {field: getattr(trainer_cls, field) for field in VARIANT_FIELDS if hasattr(trainer_cls, field)}


_SCRATCH_ALTERNATIVES = ("M2SNetTrainer_scratch (the from-scratch recipe, deep supervision included) or M2SNetTrainer, "
                         "which trains that recipe where ImageNet weights do not apply")


def _refuse_what_cannot_apply(name: str, values: dict[str, Any], choices: dict[str, Any], block: dict[str, Any],
                              dim: int, channels: int) -> None:
    """Refuse a chosen encoder or ImageNet start that this configuration cannot have (never swap it silently)."""
    encoder = values["encoder"]
    timm = encoder != PLANS_ENCODER
    shape = f"{dim}D with {channels} input channel(s)"
    if values["pretrained_encoder"] and timm and (dim != 2 or channels != 3):
        why = ("its class attribute pretrained_encoder = True" if choices.get("pretrained_encoder") is True
               else "recipe = False keeps the paper's ImageNet start")
        extra = (", or M2SNetTrainer_resnet18_scratch for ResNet-18 from random weights"
                 if dim == 2 and encoder == LIGHT_ENCODER else "")
        raise SettingsError(f"{name} starts the '{encoder}' encoder from ImageNet weights ({why}), which need 2D "
                            f"3-channel (RGB) input, but this configuration is {shape}. Use {_SCRATCH_ALTERNATIVES}"
                            f"{extra}")
    if choices.get("pretrained_encoder") is True and not timm:
        raise SettingsError(f"{name} sets pretrained_encoder = True, but its encoder is '{PLANS_ENCODER}' (nnU-Net's "
                            "residual encoder has no ImageNet weights): choose a timm encoder or drop the attribute")
    if dim == 3 and timm:
        where = ("its class attribute encoder" if "encoder" in choices
                 else f"the plans' '{PLANS_KEY}' block" if "encoder" in block else "the paper's model (recipe = False)")
        fix = (f"remove \"encoder\" from the '{PLANS_KEY}' block of this 3D configuration" if "encoder" in block
               and "encoder" not in choices else f"use {_SCRATCH_ALTERNATIVES}")
        raise SettingsError(f"{name}: {where} gives the 2D timm encoder '{encoder}', but this is a 3D configuration, "
                            f"which needs the plans encoder: {fix}")


def derive_settings(trainer_name: str, choices: dict[str, Any], configuration: dict,
                    num_input_channels: int) -> M2SNetSettings:
    """Precedence levels 2 to 5 for one configuration: the variant's ``choices``, the plans' m2snet block, the
    recipe where it applies, the paper's defaults; then the rules every level shares (a timm encoder has the
    paper's level mapping, ``refine`` "auto" resolved, no ImageNet start for the plans encoder)."""
    try:
        dim = len(configuration["patch_size"])
        block = plans_overrides(configuration)
        if "recipe" in choices:
            if not isinstance(choices["recipe"], bool):
                raise SettingsError(f"recipe must be True or False, got {choices['recipe']!r}")
            applies = choices["recipe"]
            why = "this variant trains the from-scratch recipe on every configuration" if applies else ""
        else:
            applies, why = recipe_applies(dim, num_input_channels, bool(choices.get("pretrained_encoder", True)))
        explicit = {**block, **{k: v for k, v in choices.items() if k != "recipe"}}
        values: dict[str, Any] = {**(SCRATCH_RECIPE if applies else {}), **explicit}
        values.setdefault("encoder", DEFAULT_ENCODER)
        timm = values["encoder"] != PLANS_ENCODER
        if timm and "level_mapping" not in explicit:
            values["level_mapping"] = "last4"  # the recipe's mapping is for the plans encoder
        if not timm and "pretrained_encoder" not in choices:
            values["pretrained_encoder"] = False  # nothing to load into nnU-Net's encoder
        values.setdefault("pretrained_encoder", True)
        _refuse_what_cannot_apply(trainer_name, values, choices, block, dim, num_input_channels)
        values["refine"] = resolve_refine(values.get("refine", False), values["encoder"],
                                          values.get("level_mapping", "last4"), configuration)
        return M2SNetSettings(dim=dim, **values, recipe=applies, recipe_reason=why)
    except (SettingsError, TypeError) as err:
        if isinstance(err, TypeError):  # a class attribute of the wrong kind, e.g. width = "64"
            err = SettingsError(str(err))
        message = str(err)
        raise SettingsError(message if message.startswith(trainer_name) else f"{trainer_name}: {message}") from err


def settings_for(trainer_cls: type, configuration: dict, num_input_channels: int) -> M2SNetSettings:
    """The settings a trainer class builds for one plans configuration: the recorded ones if the configuration
    holds a record of this trainer, otherwise derived (``derive_settings``)."""
    name = getattr(trainer_cls, "__name__", str(trainer_cls))
    choices = variant_choices(trainer_cls)
    recorded = recorded_settings(configuration, name)
    if recorded is not None:
        return recorded
    return derive_settings(name, choices, configuration, num_input_channels)


def settings_for_planning(configuration: dict, num_input_channels: int, encoder: str | None = None,
                          lossnet: bool = True) -> M2SNetSettings:
    """What ``M2SNetTrainer`` builds for this configuration, as the planner sizes it.

    ``encoder``: an explicit ``--encoder``, pinned in the plans for 2D (3D always builds the plans encoder).
    """
    if encoder is not None and len(configuration["patch_size"]) == 2:
        configuration = with_plans_entry(configuration, encoder=encoder)
    return derive_settings("M2SNetTrainer", {} if lossnet else {"lossnet_weight": 0.0}, configuration,
                           num_input_channels)
