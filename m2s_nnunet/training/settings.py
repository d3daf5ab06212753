"""Which M2SNet a trainer builds and how it trains it: the paper's model, or the from-scratch recipe.

A trainer variant states its settings as class attributes: ``M2SNetTrainer`` and its variants the paper's
model, ``M2SNetTrainer_scratch`` the measured from-scratch recipe (``SCRATCH_RECIPE``, see
bench/RESULTS.md). Where ImageNet weights do not apply to a paper-model variant (3D configurations, inputs
that are not 3-channel, ``use_pretrained_encoder = False``), its ``scratch_recipe`` replaces the attributes
it names. The loss network (LossNet on or off) and the schedule length always stay what the variant says.
Last, a plans configuration's ``m2snet`` entry can set the network keys. Everything here depends only on the class,
the plans and the channel count, so training and ``nnUNetv2_predict`` build the same network.
"""

from __future__ import annotations

PLANS_SETTINGS_KEY = "m2snet"  # optional per-configuration dict in the plans, e.g. {"encoder": "resnet18"}
# Network settings a plans' ``m2snet`` entry may set (they override the trainer variant's).
NETWORK_SETTINGS = ("encoder", "width", "refine", "decoder_norm", "encoder_norm", "encoder_blocks", "level_mapping")
PLANS_RECORDS = ("memory_model",)  # written by `m2s-nnunet plan`: records, not settings
OPTIMIZER_RECIPES = ("paper", "nnunet")
SEG_LOSSES = ("dice_ce", "structure")
PLANS_ENCODER = "plans"

# The from-scratch recipe as trainer class attributes, chosen by the ablation in bench/RESULTS.md section 6
# (screened on Kvasir-SEG fold-0 validation; the best two rows confirmed on polyp, ultrasound, CT slices and
# 3D MRI against nnU-Net's U-Net). The refinement path (0.2.0's recipe) gained nothing beyond the replicate
# noise and costs 27 % more per step, so it is off (a plans' ``m2snet`` entry can turn it on).
SCRATCH_RECIPE: dict[str, object] = {
    "encoder_name": PLANS_ENCODER,  # nnU-Net's residual encoder built from the plans, InstanceNorm
    "refine": False,  # no full-resolution refinement path: no measured gain, 0.78x throughput
    "use_side_heads": True,  # deep supervision through the O2..O4 side heads
    "optimizer_recipe": "paper",  # SGD 0.9, lr 0.05 (the whole network: no pretrained part), triangular
    "seg_loss": "dice_ce",
}
# class attribute -> settings key
_ATTRIBUTES = {"encoder_name": "encoder", "refine": "refine", "decoder_norm": "decoder_norm",
               "encoder_norm": "encoder_norm", "encoder_blocks": "encoder_blocks", "level_mapping": "level_mapping",
               "use_side_heads": "side_heads",
               "optimizer_recipe": "optimizer_recipe", "seg_loss": "seg_loss"}


def recipe_applies(dim: int, num_input_channels: int, use_pretrained_encoder: bool) -> tuple[bool, str]:
    """Whether the from-scratch recipe replaces the paper's settings, and why (for the training log)."""
    if not use_pretrained_encoder:
        return True, "this variant trains from scratch"
    if dim != 2:
        return True, "3D configuration (no ImageNet weights exist for 3D encoders)"
    if num_input_channels != 3:
        return True, f"{num_input_channels}-channel input (ImageNet weights are for RGB)"
    return False, "2D RGB input: the paper's ImageNet encoder"


def resolve_settings(trainer_cls: type, configuration: dict, num_input_channels: int) -> dict:
    """Every setting of a trainer class for one plans configuration (a plain dict, see the module docstring)."""
    dim = len(configuration["patch_size"])
    attributes = {name: getattr(trainer_cls, name) for name in _ATTRIBUTES}
    recipe, applies, why = trainer_cls.scratch_recipe, False, ""
    if recipe is not None:
        unknown = sorted(set(recipe) - set(_ATTRIBUTES))
        if unknown:
            raise ValueError(f"{trainer_cls.__name__}.scratch_recipe has unknown key(s) {unknown}; "
                             f"allowed: {', '.join(_ATTRIBUTES)}")
        applies, why = recipe_applies(dim, num_input_channels, trainer_cls.use_pretrained_encoder)
        if applies:
            attributes.update(recipe)
    settings: dict[str, object] = {key: attributes[name] for name, key in _ATTRIBUTES.items()}
    settings["width"] = trainer_cls.decoder_width if dim == 2 else trainer_cls.decoder_width_3d
    settings["recipe"], settings["recipe_reason"] = applies, why
    from_plans = dict(configuration.get(PLANS_SETTINGS_KEY, {}) or {})
    for record in PLANS_RECORDS:
        from_plans.pop(record, None)
    unknown = sorted(set(from_plans) - set(NETWORK_SETTINGS))
    if unknown:
        raise ValueError(f"the plans' '{PLANS_SETTINGS_KEY}' entry has unknown key(s) {unknown}; allowed: "
                         f"{', '.join(NETWORK_SETTINGS + PLANS_RECORDS)}")
    settings.update(from_plans)
    if settings["optimizer_recipe"] not in OPTIMIZER_RECIPES:
        raise ValueError(f"optimizer_recipe must be one of {OPTIMIZER_RECIPES}, got '{settings['optimizer_recipe']}'")
    if settings["seg_loss"] not in SEG_LOSSES:
        raise ValueError(f"seg_loss must be one of {SEG_LOSSES}, got '{settings['seg_loss']}'")
    return settings
