"""``m2s-nnunet cv``: option defaults and ``--sbatch`` parsing (the study itself: ``tests/test_cv.py``)."""

from __future__ import annotations

import argparse

import pytest

from m2s_nnunet.cli.cv import add_parser, extra_sbatch
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
    assert args.trainers == ["M2SNetTrainer", "nnUNetTrainer"] and args.folds == [0, 1, 2, 3, 4]
