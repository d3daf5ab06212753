"""Which M2SNet a trainer builds and how it trains it: the paper's model, or the from-scratch recipe.

A trainer variant states the paper-faithful settings as class attributes. Where ImageNet weights do not
apply (3D configurations, inputs that are not 3-channel, or variants that train from scratch), the
measured from-scratch recipe (``SCRATCH_RECIPE``, see bench/RESULTS.md) replaces the settings it names.
The loss network (LossNet on or off) and the schedule length always stay what the variant says. Last, a
plans configuration's ``m2snet`` entry can set the network keys. Everything here depends only on the class,
the plans and the channel count, so training and ``nnUNetv2_predict`` build the same network.
"""

from __future__ import annotations

PLANS_SETTINGS_KEY = "m2snet"  # optional per-configuration dict in the plans, e.g. {"encoder": "resnet18"}
# Network settings a plans' ``m2snet`` entry may set (they override the trainer variant's).
NETWORK_SETTINGS = ("encoder", "width", "refine", "decoder_norm", "encoder_norm", "encoder_blocks")
PLANS_RECORDS = ("memory_model",)  # written by `m2s-nnunet plan`: records, not settings
OPTIMIZER_RECIPES = ("paper", "nnunet")
SEG_LOSSES = ("dice_ce", "structure")
PLANS_ENCODER = "plans"

# The from-scratch recipe, chosen by the ablation in bench/RESULTS.md (screened on Kvasir-SEG fold-0
# validation, confirmed on polyp, ultrasound, CT slices and 3D MRI against nnU-Net's U-Net).
SCRATCH_RECIPE: dict[str, object] = {
    "encoder": PLANS_ENCODER,  # nnU-Net's residual encoder built from the plans, InstanceNorm
    "refine": True,  # full-resolution refinement path
    "side_heads": True,  # deep supervision through the O2..O4 side heads
    "optimizer_recipe": "nnunet",  # SGD 0.99 Nesterov, lr 0.01, poly
    "seg_loss": "dice_ce",
}


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
    settings: dict[str, object] = {
        "encoder": trainer_cls.encoder_name,
        "width": trainer_cls.decoder_width if dim == 2 else trainer_cls.decoder_width_3d,
        "refine": trainer_cls.refine,
        "decoder_norm": trainer_cls.decoder_norm,
        "encoder_norm": trainer_cls.encoder_norm,
        "encoder_blocks": trainer_cls.encoder_blocks,
        "side_heads": trainer_cls.use_side_heads,
        "optimizer_recipe": trainer_cls.optimizer_recipe,
        "seg_loss": trainer_cls.seg_loss,
        "recipe": False,
        "recipe_reason": "",
    }
    recipe = trainer_cls.scratch_recipe
    if recipe is not None:
        applies, why = recipe_applies(dim, num_input_channels, trainer_cls.use_pretrained_encoder)
        if applies:
            unknown = sorted(set(recipe) - set(settings))
            if unknown:
                raise ValueError(f"{trainer_cls.__name__}.scratch_recipe has unknown key(s) {unknown}")
            settings.update(recipe)
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
