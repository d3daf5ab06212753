"""``m2s_nnunet.summary.logs``: nnU-Net's training log, parsed epoch by epoch."""

from __future__ import annotations

import pytest
from fake_results import write_log

from m2s_nnunet import summary


def test_parse_training_log(tmp_path):
    write_log(tmp_path / "log.txt", offset=0.0)
    log = summary.parse_training_log([tmp_path / "log.txt"])
    assert log["epoch"].tolist() == [0, 1, 2]
    assert log["train_loss"].tolist() == pytest.approx([0.0, -0.1, -0.2])
    assert log["val_loss"].tolist() == pytest.approx([0.0, -0.05, -0.1])
    assert log["lr"].tolist() == pytest.approx([0.09, 0.08, 0.07])
    assert log["pseudo_dice"].tolist() == pytest.approx([0.0, 0.2, 0.4])
    assert log["pseudo_dice_ema"].tolist() == pytest.approx([0.0, 0.02, 0.058])
    assert log["epoch_time"].tolist() == pytest.approx([12.30, 12.31, 12.32])
