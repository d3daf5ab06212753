"""Which settings a checkpoint was trained with, read from its state-dict layout.

Models trained by m2s-nnunet 0.6 or older record nothing about their network; their checkpoints only hold
weights. Every setting that changes the network also changes the set of state-dict keys or their shapes (the
encoder, the width, the norms, the refinement path, the side heads, the extra stage of the "deeper" mapping,
the blocks per stage), so the layout identifies the network those versions built. ``infer_settings`` reads
it; ``LegacyLayout`` lets a network built for loading such a model become the one its checkpoint needs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from m2s_nnunet.errors import UserError
from m2s_nnunet.network.plans_encoder import blocks_per_stage
from m2s_nnunet.settings import (
    DEFAULT_ENCODER,
    LIGHT_ENCODER,
    PLANS_ENCODER,
    PLANS_KEY,
    M2SNetSettings,
    deeper_moves_pyramid,
    plans_overrides,
)

# the settings a layout decides (and the only ones a mismatch message names)
LAYOUT_FIELDS = ("encoder", "width", "decoder_norm", "encoder_norm", "encoder_blocks", "level_mapping", "refine",
                 "side_heads")
_BLOCK_KEY = re.compile(r"^encoder\.body\.stages\.(\d+)\.blocks\.(\d+)\.")
_HEAD_KEY = re.compile(r"^head\.seg_layers\.(\d+)\.weight$")


class LayoutError(UserError, RuntimeError):
    """A checkpoint whose layout no M2SNet built from these settings and plans has."""


Layout = dict[str, tuple[int, ...]]


def layout_of(weights: nn.Module | Mapping[str, torch.Tensor]) -> Layout:
    """Every state-dict key with its shape."""
    state = weights.state_dict() if isinstance(weights, nn.Module) else weights
    return {key: tuple(value.shape) for key, value in state.items()}


def describe_difference(expected: Layout, found: Layout, limit: int = 3) -> str:
    """'' when equal, else a short account: missing keys, unexpected keys, shapes that differ."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)):
        if keys:
            shown = ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
            parts.append(f"{len(keys)} key(s) {what} ({shown})")
    return "; ".join(parts)


def settings_difference(trained: M2SNetSettings, built: M2SNetSettings) -> str:
    """The layout settings that differ, as 'name: trained (this network: built)'."""
    return ", ".join(f"{name} {getattr(trained, name)!r} (this network: {getattr(built, name)!r})"
                     for name in LAYOUT_FIELDS if getattr(trained, name) != getattr(built, name))


def _has(keys: set[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def _timm_encoder(found: Layout, candidates: list[str], in_channels: int) -> str:
    """The one candidate timm encoder whose weights have exactly the checkpoint's encoder layout."""
    from m2s_nnunet.network.encoder import TimmEncoder

    wanted = {k[len("encoder."):]: v for k, v in found.items() if k.startswith("encoder.")}
    matches = [name for name in candidates if layout_of(TimmEncoder(name, in_channels)) == wanted]
    if len(matches) == 1:
        return matches[0]
    fix = (f"set \"{PLANS_KEY}\": {{\"encoder\": \"<timm name>\"}} for this configuration in the plans.json of the "
           "model folder")
    if not matches:
        raise LayoutError(f"the checkpoint's encoder is a timm model other than {', '.join(candidates)}, so its "
                          "setting 'encoder' cannot be read from its layout", fix=fix)
    raise LayoutError(f"the checkpoint's encoder layout fits several timm encoders ({', '.join(matches)}): its setting "
                      "'encoder' is ambiguous", fix=fix)


def _plans_encoder_changes(keys: set[str], found: Layout, start: M2SNetSettings, configuration: dict) -> dict:
    """level_mapping, encoder_blocks and encoder_norm of a plans-encoder checkpoint."""
    arch = configuration["architecture"]["arch_kwargs"]
    n_stages = int(arch["n_stages"])
    start_plans = start.encoder == PLANS_ENCODER
    if _has(keys, "encoder.extra_stage."):
        mapping = "deeper"
    elif deeper_moves_pyramid(n_stages):
        mapping = "last4"
    else:  # both mappings build the same network here: keep what the start says
        mapping = start.level_mapping if start_plans else "last4"
    counts: dict[int, int] = {}
    for key in keys:
        match = _BLOCK_KEY.match(key)
        if match:
            stage, block = int(match[1]), int(match[2])
            counts[stage] = max(counts.get(stage, 0), block + 1)
    blocks = tuple(counts.get(s, 0) for s in range(n_stages))
    start_blocks = start.encoder_blocks if start_plans else None
    expected = tuple(blocks_per_stage(arch, start_blocks))
    encoder_blocks = start_blocks if blocks == expected else blocks
    trained_batch = "encoder.body.stem.convs.0.norm.running_mean" in found
    plans_batch = "BatchNorm" in str(arch.get("norm_op", ""))
    start_norm = start.encoder_norm if start_plans else None
    effective = start_norm or ("batch" if plans_batch else "instance")
    trained = "batch" if trained_batch else "instance"
    return {"level_mapping": mapping, "encoder_blocks": encoder_blocks,
            "encoder_norm": start_norm if trained == effective else trained}


def infer_network(state_dict: Mapping[str, torch.Tensor], start: M2SNetSettings, configuration: dict,
                  in_channels: int, num_classes: int) -> nn.Module:
    """The M2SNet with exactly this state-dict layout on these plans (its settings: ``net.built_with``).

    ``start``: what would be built today (its training settings are kept; only the layout settings are read
    from the checkpoint). Raises ``LayoutError`` naming the setting when the layout cannot decide it.
    """
    from m2s_nnunet.network.from_plans import build_m2snet

    found = layout_of(state_dict)
    keys = set(found)
    if "pyramid.d54.conv.0.weight" not in found:
        raise LayoutError("this checkpoint holds no M2SNet (no subtraction pyramid among its weights)")
    changes: dict[str, Any] = {
        "width": found["pyramid.d54.conv.0.weight"][0],
        "decoder_norm": "batch" if "pyramid.d54.conv.1.running_mean" in keys else "instance",
        "refine": _has(keys, "refine_stages."),
        "side_heads": sum(1 for k in keys if _HEAD_KEY.match(k)) > 1,
    }
    if _has(keys, "encoder.body.stages."):
        changes.update(encoder=PLANS_ENCODER, pretrained_encoder=False,
                       **_plans_encoder_changes(keys, found, start, configuration))
    else:
        if start.dim != 2:
            raise LayoutError("this checkpoint has a timm (2D) encoder, but the configuration is 3D")
        candidates = [start.encoder if start.uses_timm_encoder else None, plans_overrides(configuration).get("encoder"),
                      DEFAULT_ENCODER, LIGHT_ENCODER]
        candidates = list(dict.fromkeys(c for c in candidates if c and c != PLANS_ENCODER))
        changes.update(encoder=_timm_encoder(found, candidates, in_channels), level_mapping="last4",
                       encoder_norm=None, encoder_blocks=None,
                       pretrained_encoder=start.pretrained_encoder if start.uses_timm_encoder else False)
    settings = start.replace(**changes)
    built = build_m2snet(settings, configuration, in_channels, num_classes)
    difference = describe_difference(layout_of(built), found)
    if difference:
        raise LayoutError(f"no M2SNet built from these plans has this checkpoint's layout (closest: "
                          f"{settings_difference(settings, start) or 'the settings of today'}; {difference})",
                          fix="predict with the plans.json the model was trained with (the copy in its model folder)")
    return built


def infer_settings(state_dict: Mapping[str, torch.Tensor], start: M2SNetSettings, configuration: dict,
                   in_channels: int, num_classes: int) -> M2SNetSettings:
    """The settings of ``infer_network``'s network."""
    return infer_network(state_dict, start, configuration, in_channels, num_classes).built_with


class LegacyLayout:
    """Set on a network built for a model that records no settings (m2s-nnunet <= 0.6): ``M2SNet.load_state_dict``
    calls it with a checkpoint that does not fit, and becomes the network it returns (``infer_settings``)."""

    def __init__(self, start: M2SNetSettings, configuration: dict, in_channels: int, num_classes: int,
                 deep_supervision: bool) -> None:
        self.start, self.configuration = start, configuration
        self.in_channels, self.num_classes, self.deep_supervision = in_channels, num_classes, deep_supervision

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
        net = infer_network(state_dict, self.start, self.configuration, self.in_channels, self.num_classes)
        net.deep_supervision = self.deep_supervision and net.built_with.side_heads
        return net
