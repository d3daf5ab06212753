"""``m2s-nnunet cv``: option defaults and ``--sbatch`` parsing (the study itself: ``tests/test_cv.py``)."""

from __future__ import annotations

import argparse
import json

import pytest

from m2s_nnunet.cli.cv import add_parser, build_study, extra_sbatch
from m2s_nnunet.cv.grid import StudyError


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["cv", *argv])


def test_defaults_and_sbatch_items():
    assert extra_sbatch(["account=lab", "--qos=high"]) == {"account": "lab", "qos": "high"}
    with pytest.raises(StudyError, match="expected KEY=VALUE"):
        extra_sbatch(["exclusive"])
    args = _parse("501")
    assert args.trainers == ["M2SNetTrainer", "nnUNetTrainer"] and args.folds is None  # from the split


@pytest.fixture
def two_fold_dataset(tmp_path, monkeypatch):
    """A planned dataset (plans file only) whose splits_final.json has two folds."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    folder = tmp_path / "nnUNet_preprocessed" / "Dataset951_Two"
    folder.mkdir()
    (folder / "nnUNetPlans.json").write_text(json.dumps({"configurations": {"2d": {}}}))
    (folder / "splits_final.json").write_text(json.dumps([{"train": ["a"], "val": ["b"]},
                                                          {"train": ["b"], "val": ["a"]}]))
    return folder


def test_folds_come_from_the_split_and_a_fold_it_lacks_is_refused(two_fold_dataset):
    study = build_study(_parse("951", "--executor", "local", "-tr", "M2SNetTrainer_smoke", "nnUNetTrainer"))
    assert study.folds == [0, 1] and len(study.tasks) == 4
    with pytest.raises(StudyError, match=r"fold\(s\) \[2\] are not in the split: .* has 2 fold\(s\).*80:20"):
        build_study(_parse("951", "-f", "0", "1", "2", "-tr", "nnUNetTrainer"))
    (two_fold_dataset / "splits_final.json").unlink()  # nnU-Net writes its 5-fold split at the first training
    assert build_study(_parse("951", "-tr", "nnUNetTrainer")).folds == [0, 1, 2, 3, 4]


def test_a_misspelt_trainer_is_refused_before_anything_is_submitted(two_fold_dataset):
    with pytest.raises(StudyError, match=r"trainer\(s\) \['M2SNetTrainer_scrach'\] not found.*M2SNetTrainer_scratch"):
        build_study(_parse("951", "-tr", "M2SNetTrainer_scrach", "nnUNetTrainer"))
