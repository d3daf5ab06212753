"""Finding a dataset's result folders and loading what nnU-Net wrote into them, fold by fold.

A fold that is missing, unfinished or broken becomes a :class:`FoldResult` with that status and the reason,
and an unreadable side file becomes a problem of its model: the summary lists them instead of aborting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from m2s_nnunet.errors import UserError
from m2s_nnunet.inputs.nnunet_json import read_validation_summary
from m2s_nnunet.inputs.textfiles import read_json
from m2s_nnunet.nnunet_env import find_dataset_folder
from m2s_nnunet.summary.columns import CROSSVAL_PREFIX, FG, METRICS
from m2s_nnunet.summary.logs import parse_training_log


class SummaryError(UserError):
    """The results folder cannot be summarised; the message says what is missing."""


@dataclass
class FoldResult:
    """One fold of one model: its status, why, and (when ``ok``) its means, per-case rows and training log."""

    fold: str
    status: str  # "ok", "missing" (no folder), "incomplete" (no validation/summary.json) or "broken" (unreadable)
    detail: str = ""
    mean: dict[str, dict[str, float]] = field(default_factory=dict)
    per_case: pd.DataFrame | None = None
    log: pd.DataFrame | None = None


@dataclass
class ModelResult:
    """One ``Trainer__Plans__Configuration`` folder: its folds, label names and nnU-Net's cross-validation result."""

    name: str
    trainer: str
    plans: str
    config: str
    path: Path
    folds: dict[str, FoldResult]
    label_names: dict[str, str]
    crossval: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    expected: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unreadable side files (dataset.json, crossval, logs)

    @property
    def ok_folds(self) -> list[str]:
        """Finished cross-validation folds (``fold_all`` and other extra folds excluded)."""
        return [f for f in self.expected if f in self.folds and self.folds[f].status == "ok"]

    def pooled_cases(self) -> pd.DataFrame:
        """Per-case metrics of every finished expected fold (the merged cross-validation result)."""
        frames = [self.folds[f].per_case.assign(fold=f) for f in self.ok_folds]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["case", "label"])


def find_dataset_dir(dataset: str, results: Path | None = None) -> Path:
    """Resolve ``501``, ``Dataset501`` or ``Dataset501_Name`` inside ``--results`` or ``$nnUNet_results``."""
    root = Path(results) if results else Path(os.environ.get("nnUNet_results", ""))
    if results is None and not os.environ.get("nnUNet_results"):
        raise SummaryError("no results folder: pass --results DIR or set nnUNet_results")
    if not root.is_dir():
        where = "--results" if results is not None else "nnUNet_results"
        raise SummaryError(f"{where} {root} is not an existing folder", fix="pass the nnUNet_results folder "
                           "that holds DatasetXXX_Name/Trainer__Plans__Configuration")
    found = find_dataset_folder(dataset, root)
    if isinstance(found, Path):
        return found
    avail = sorted(p.name for p in root.glob("Dataset*") if p.is_dir())
    raise SummaryError(f"dataset '{dataset}' {'is ambiguous' if found else 'not found'} in {root}; available: {avail}")


def _case_name(prediction_file: str, file_ending: str) -> str:
    name = Path(prediction_file).name
    return name[: -len(file_ending)] if file_ending and name.endswith(file_ending) else name.split(".")[0]


def _read_summary(path: Path, file_ending: str, require_cases: bool = True
                  ) -> tuple[dict[str, dict[str, float]], pd.DataFrame]:
    """Per-label means (plus the fg mean) and per-case rows of a summary.json; UserError if it is malformed."""
    data = read_validation_summary(path, require_cases)
    mean = dict(data.mean)
    mean[FG] = data.foreground_mean
    rows = [{"case": _case_name(c["file"], file_ending), "label": c["label"], **{m: c[m] for m in METRICS}}
            for c in data.cases]
    return mean, pd.DataFrame(rows, columns=["case", "label", *METRICS])


def _fold_status(fold_dir: Path) -> str:
    if (fold_dir / "checkpoint_final.pth").is_file():
        return "training finished but validation/summary.json is absent (run nnUNetv2_train ... --val)"
    if any(fold_dir.glob("checkpoint_*.pth")):
        return "training unfinished (only intermediate checkpoints)"
    if any(fold_dir.glob("training_log_*.txt")):
        return "training started (log present) but no checkpoint and no validation/summary.json"
    return "no checkpoint and no validation/summary.json"


def _load_fold(fdir: Path, fold: str, ending: str, problems: list[str]) -> FoldResult:
    if not fdir.is_dir():
        return FoldResult(fold, "missing", "no fold folder")
    logs = sorted(p for p in fdir.glob("training_log_*.txt") if p.is_file())
    try:
        log = parse_training_log(logs) if logs else None
    except OSError as err:
        problems.append(f"cannot read the training log of fold {fold}: {err}")
        log = None
    summ = fdir / "validation" / "summary.json"
    if not summ.is_file():
        return FoldResult(fold, "incomplete", _fold_status(fdir), log=log)
    try:
        mean, per_case = _read_summary(summ, ending)
    except UserError as err:
        return FoldResult(fold, "broken", str(err).replace("\n", " "), log=log)
    return FoldResult(fold, "ok", f"{per_case['case'].nunique()} cases", mean, per_case, log)


def load_model(path: Path, expected_folds: list[str]) -> ModelResult:
    """Read one ``Trainer__Plans__Configuration`` folder; absent expected folds become 'missing'."""
    parts = path.name.split("__")
    trainer, plans, config = parts[0], "__".join(parts[1:-1]), parts[-1]
    problems: list[str] = []
    ds_json = path / "dataset.json"
    ds: dict = {}
    if ds_json.is_file():
        try:
            ds = read_json(ds_json, dict, "dataset.json")
        except UserError as err:
            problems.append(f"{err} (label names and case names may be incomplete)")
    ending = ds.get("file_ending", "") if isinstance(ds.get("file_ending", ""), str) else ""
    labels = ds.get("labels", {}) if isinstance(ds.get("labels", {}), dict) else {}
    names = {str(v): str(k) for k, v in labels.items() if not isinstance(v, list | dict)}
    present = sorted(p.name[5:] for p in path.glob("fold_*") if p.is_dir())
    folds = {fold: _load_fold(path / f"fold_{fold}", fold, ending, problems)
             for fold in expected_folds + [f for f in present if f not in expected_folds]}
    model = ModelResult(path.name, trainer, plans, config, path, folds, names, expected=list(expected_folds),
                        problems=problems)
    for cv in sorted(path.glob(f"{CROSSVAL_PREFIX}_folds_*")):
        if (cv / "summary.json").is_file():
            try:
                model.crossval[cv.name] = _read_summary(cv / "summary.json", ending, require_cases=False)[0]
            except UserError as err:
                problems.append(f"{err} (nnU-Net's cross-validation result is left out)".replace("\n", " "))
    return model


def load_models(dataset_dir: Path, expected_folds: list[str]) -> list[ModelResult]:
    """Every ``Trainer__Plans__Configuration`` folder of a dataset, loaded; SummaryError when there is none."""
    models = [
        load_model(p, expected_folds) for p in sorted(dataset_dir.iterdir()) if p.is_dir() and p.name.count("__") >= 2
    ]
    if not models:
        raise SummaryError(f"no Trainer__Plans__Configuration folders in {dataset_dir}")
    return models
