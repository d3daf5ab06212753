"""The study an nnU-Net comparison needs: every configuration x trainer x fold, and what is already done.

Whether a training is done is read from nnU-Net's own outputs (``checkpoint_final.pth`` and the fold's
``validation/summary.json``), never from a scheduler, so a rerun after any crash, timeout or ``scancel``
knows exactly what is left, on any executor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from m2s_nnunet.checkpoint_files import is_incomplete, set_aside
from m2s_nnunet.errors import UserError

CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")  # what `--c` resumes from
DEFAULT_TRAINERS = ("M2SNetTrainer", "nnUNetTrainer")
DEFAULT_FOLDS = (0, 1, 2, 3, 4)


class StudyError(UserError):
    """The study cannot be set up as asked (dataset not planned, configuration missing, ...)."""


@dataclass(frozen=True)
class TrainingTask:
    """One ``nnUNetv2_train`` run: a fold of one trainer on one configuration."""

    dataset: str  # DatasetXXX_Name
    configuration: str
    trainer: str
    plans: str
    fold: int

    @property
    def model(self) -> str:
        return f"{self.trainer}__{self.plans}__{self.configuration}"

    @property
    def key(self) -> str:
        return f"{self.model}/fold_{self.fold}"

    def folder(self, results: Path) -> Path:
        return results / self.dataset / self.model / f"fold_{self.fold}"

    def is_done(self, results: Path) -> bool:
        folder = self.folder(results)
        return (folder / "checkpoint_final.pth").is_file() and (folder / "validation" / "summary.json").is_file()

    def can_resume(self, results: Path) -> bool:
        return any((self.folder(results) / name).is_file() for name in CHECKPOINTS)

    def set_aside_incomplete_checkpoints(self, results: Path) -> list[str]:
        """Rename checkpoints cut off while they were written, so that ``--c`` resumes from the next one.

        Our trainers never leave one (they write and rename); nnU-Net's own trainer writes in place, and a job
        killed while it saves leaves a truncated file that ``--c`` would fail on at every rerun.
        """
        notes = []
        for name in CHECKPOINTS:
            path = self.folder(results) / name
            if path.is_file() and is_incomplete(path):
                kept = set_aside(path)
                notes.append(f"{path} was cut off while it was written; kept as {kept.name}, not resumed from")
        return notes


def plans_file(preprocessed: Path, dataset: str, plans: str) -> Path:
    path = preprocessed / dataset / f"{plans}.json"
    if not path.is_file():
        raise StudyError(f"{path} not found: run `nnUNetv2_plan_and_preprocess -d {dataset.split('_')[0][7:]}` "
                         f"(or plan '{plans}') before the study")
    return path


def available_configurations(preprocessed: Path, dataset: str, plans: str) -> list[str]:
    """The configurations the plans define (read from ``<plans>.json``)."""
    try:
        return list(json.loads(plans_file(preprocessed, dataset, plans).read_text())["configurations"])
    except (json.JSONDecodeError, KeyError) as err:
        raise StudyError(f"{plans_file(preprocessed, dataset, plans)} is not an nnU-Net plans file ({err})") from err


def check_folds_in_split(folds: list[int], split_folds: int | None, dataset: str) -> None:
    """Refuse a fold the split does not have: nnU-Net would train it on a random 80:20 split instead (a silent
    wrong result in a cross-validation study)."""
    count = split_folds if split_folds is not None else len(DEFAULT_FOLDS)
    outside = [f for f in folds if f >= count]
    if outside:
        where = (f"{dataset}'s splits_final.json has {count} fold(s)" if split_folds is not None
                 else f"nnU-Net will write a {count}-fold split for {dataset}")
        raise StudyError(f"fold(s) {outside} are not in the split: {where} (0 to {count - 1}); nnU-Net would "
                         f"train such a fold on a random 80:20 split instead. Use -f with folds 0 to {count - 1}, "
                         "or write a split with more folds (m2s-nnunet convert --folds K)")


def default_configurations(available: list[str]) -> list[str]:
    """``2d``, plus ``3d_fullres`` where the plans have it (nnU-Net plans no 3D for 2D datasets)."""
    return [c for c in ("2d", "3d_fullres") if c in available]


def study_grid(dataset: str, configurations: list[str], trainers: list[str], folds: list[int], plans: str,
               available: list[str]) -> list[TrainingTask]:
    """Every configuration x trainer x fold, configurations first (nnU-Net trains folds of one model together)."""
    missing = [c for c in configurations if c not in available]
    if missing:
        raise StudyError(f"configuration(s) {missing} are not in the {plans} plans of {dataset} "
                         f"(it has {', '.join(available)})")
    if not configurations or not trainers or not folds:
        raise StudyError("the study needs at least one configuration, one trainer and one fold")
    if len(set(folds)) != len(folds) or min(folds) < 0:
        raise StudyError(f"folds must be distinct non-negative numbers, got {folds}")
    return [TrainingTask(dataset, c, t, plans, f) for c in configurations for t in trainers for f in folds]
