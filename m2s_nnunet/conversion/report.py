"""What ``convert`` found and wrote, and what to run next, as data and as the text the CLI prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from m2s_nnunet.conversion.kind import KINDS
from m2s_nnunet.conversion.labels import LabelPlan
from m2s_nnunet.conversion.splits import preprocessed_dir


@dataclass
class ConversionReport:
    """The result of a conversion: counts, sizes, labels, warnings and the next commands to run."""

    dataset_dir: Path
    kind: str
    n_train: int
    n_test: int
    channels: int
    size_range: str
    values_found: list[int]
    plan: LabelPlan
    warnings: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def size_range(sizes: list[tuple[int, ...]] | tuple[tuple[int, ...], ...]) -> str:
    """Per-axis min..max, e.g. '332..1072 x 487..1920' (HxW or ZxYxX)."""
    if not sizes:
        return "-"
    arr = np.asarray(sizes)
    return " x ".join(f"{lo}..{hi}" if lo != hi else f"{lo}" for lo, hi in zip(arr.min(0), arr.max(0), strict=True))


def next_steps(final: Path, dataset_id: int, has_splits: bool, installed: str | None = None) -> list[str]:
    """What to run next; ``installed`` is what ``--install-splits`` did (see ``splits.install_splits``)."""
    src = final / "splits_final.json"
    pre = preprocessed_dir(final.name)
    steps = [installed] if installed else []
    steps.append(f"nnUNetv2_plan_and_preprocess -d {dataset_id} --verify_dataset_integrity")
    if not has_splits or installed:
        return steps
    if pre is None:
        steps.append(
            f"{src} is copied into $nnUNet_preprocessed/{final.name}/ by nnU-Net's planner; if you plan "
            f"elsewhere, copy it there yourself before training"
        )
    elif not (pre / "splits_final.json").exists():
        steps.append(
            f"{pre} already exists: nnU-Net's planner copies the new splits there when you run the step above; "
            f"if you skip it, re-run with --install-splits, or: cp {src} {pre}/splits_final.json"
        )
    return steps


def format_report(report: ConversionReport) -> str:
    """Human-readable summary of what was found and written."""
    kind = KINDS[report.kind]
    lines = [
        f"Wrote {report.dataset_dir}",
        f"  {kind.title}: {report.n_train} training + {report.n_test} test cases, {report.channels} channel(s)",
        f"  sizes ({kind.axes}): {report.size_range}",
        f"  raw label values found: {report.values_found[:20]}",
        f"  label mapping: {report.plan.description}; labels: {report.plan.names}",
    ]
    lines += [f"warning: {w}" for w in report.warnings]
    lines += ["next:"] + [f"  {s}" for s in report.next_steps]
    return "\n".join(lines)

