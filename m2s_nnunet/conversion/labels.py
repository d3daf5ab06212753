"""Raw mask values -> nnU-Net's consecutive labels 0..K, decided once from the values of every mask.

Masks come as 0/1, 0/255, 0/65535, 0..K, anti-aliased or JPEG-damaged; nnU-Net needs 0..K. The mapping is chosen
from all masks together, so one stray value is reported with the mask it is in instead of becoming a class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from m2s_nnunet.conversion.options import ConversionError, ConvertOptions


@dataclass
class LabelPlan:
    """How raw mask values become nnU-Net labels: a lookup table or a threshold at 127."""

    names: dict[str, int]
    lut: dict[int, int] | None = None
    threshold: int | None = None
    description: str = ""

    def apply(self, arr: np.ndarray) -> np.ndarray:
        """Raw mask values -> uint8 labels (values absent from the table become 0; the scan refuses those)."""
        if self.threshold is not None:
            return (arr > self.threshold).astype(np.uint8)
        if arr.dtype == np.uint8:
            table = np.zeros(256, dtype=np.uint8)
            for src, dst in (self.lut or {}).items():
                if 0 <= src < 256:
                    table[src] = dst
            return table[arr]
        out = np.zeros(arr.shape, dtype=np.uint8)
        for src, dst in (self.lut or {}).items():
            out[arr == src] = dst
        return out


def parse_label_args(items: Sequence[str] | None) -> list[tuple[str, int]]:
    """``name=value`` pairs; the raw value ``value`` becomes label 1, 2, ... in the given order."""
    out = []
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConversionError(f"--mask-values expects NAME=VALUE items, got '{item}'")
        try:
            out.append((name, int(value)))
        except ValueError as exc:
            raise ConversionError(f"--mask-values: value of '{item}' is not an integer") from exc
    out = [(n, v) for n, v in out if not (n == "background" and v == 0)]
    names = [n for n, _ in out]
    if len(set(names)) != len(names) or "background" in names:
        raise ConversionError("--mask-values: names must be unique and 'background' is reserved for value 0")
    if any(v == 0 for _, v in out) or len({v for _, v in out}) != len(out):
        raise ConversionError("--mask-values: values must be unique and non-zero (0 is background)")
    return out


def decide_label_plan(values: dict[str, set[int]], jpeg_masks: list[str], opts: ConvertOptions) -> LabelPlan:
    """Choose how raw mask values (mask name -> values) map to 0..K, or refuse naming the masks that do not fit."""
    given = parse_label_args(opts.labels)
    union = set().union(*values.values()) if values else set()
    if (opts.binarize_masks or (jpeg_masks and len(given) <= 1)) and max(union, default=0) > 1:
        name = given[0][0] if given else opts.label_name
        why = "--binarize-masks" if opts.binarize_masks else "JPEG masks"
        return LabelPlan({"background": 0, name: 1}, threshold=127, description=f"value > 127 -> 1 ({why})")
    if given:
        allowed = {0} | {v for _, v in given}
        bad = {c: sorted(v - allowed) for c, v in values.items() if v - allowed}
        if bad:
            raise ConversionError(_bad_values_message(bad, f"--mask-values allows only {sorted(allowed)}"))
        names = {"background": 0} | {n: i + 1 for i, (n, _) in enumerate(given)}
        lut = {0: 0} | {v: i + 1 for i, (_, v) in enumerate(given)}
        return LabelPlan(names, lut=lut, description=", ".join(f"{s} -> {d}" for s, d in lut.items()))
    if union <= {0, 1}:
        return LabelPlan({"background": 0, opts.label_name: 1}, lut={0: 0, 1: 1}, description="0/1 kept")
    for top in (255, 65535):
        if union <= {0, top}:
            return LabelPlan({"background": 0, opts.label_name: 1}, lut={0: 0, top: 1},
                             description=f"0/{top} -> 0/1")
    if union == set(range(max(union) + 1)):
        names = {"background": 0} | {f"class_{i}": i for i in range(1, max(union) + 1)}
        return LabelPlan(names, lut={i: i for i in union}, description="consecutive labels kept")
    scheme, bad = _closest_scheme(values)
    raise ConversionError(_bad_values_message(
        bad, f"values found {sorted(union)[:12]} are neither 0/1, 0/255 nor 0..K; most masks are {scheme}, these "
        "are not"))


def _closest_scheme(values: dict[str, set[int]]) -> tuple[str, dict[str, list[int]]]:
    """The label scheme most masks follow, and the masks that break it with their stray values.

    One stray value in 1 of 150 masks must name that mask, not the 20 first masks in alphabetical order.
    """
    schemes = {"0/1": {0, 1}, "0/255": {0, 255}, "0/65535": {0, 65535}}
    maxima = Counter(max(v, default=0) for v in values.values())
    k = maxima.most_common(1)[0][0] if maxima else 0
    if 1 < k < 255:  # the multi-class scheme most masks follow (0..255 would accept any 8-bit mask)
        schemes[f"0..{k}"] = set(range(k + 1))
    ranked = []
    for name, allowed in schemes.items():
        ranked.append(({c: sorted(v - allowed) for c, v in values.items() if v - allowed}, name))
    bad, name = min(ranked, key=lambda t: len(t[0]))
    return name, bad


def _bad_values_message(bad: dict[str, list[int]], why: str) -> str:
    lines = [f"{c}: {v[:10]}" for c, v in sorted(bad.items())]
    return (
        f"unexpected label values in {len(bad)} mask(s) ({why}):\n  "
        + "\n  ".join(lines[:20])
        + ("\n  ..." if len(lines) > 20 else "")
        + "\nFix: pass --mask-values NAME=VALUE for each foreground value (e.g. --mask-values polyp=255), or "
        "--binarize-masks to threshold at 127 (anti-aliased or JPEG masks)."
    )


def rare_labels(values: dict[str, set[int]], plan: LabelPlan) -> list[str]:
    """A label found in a single mask of ten or more is more often a stray value than a class: say so."""
    if len(values) < 10 or plan.threshold is not None:
        return []
    notes = []
    for raw, label in sorted((plan.lut or {}).items()):
        holders = [c for c, v in values.items() if raw in v]
        if label and len(holders) == 1:
            notes.append(f"label {label} (raw value {raw}) occurs in only 1 of {len(values)} masks ({holders[0]}): "
                         "a stray value? Check that mask, or choose the labels with --mask-values")
    return notes


def empty_masks(values: dict[str, set[int]], plan: LabelPlan) -> list[str]:
    """Masks (by name) that hold no foreground once mapped: worth a warning, they teach only background."""
    return sorted(c for c, v in values.items() if not set(plan.apply(np.array(sorted(v)))) - {0})
