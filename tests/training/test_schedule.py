"""The learning-rate schedules: the paper's triangular one, nnU-Net's poly, and per-group base rates."""

from __future__ import annotations

import pytest
import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from m2s_nnunet.training.schedule import GroupLRSchedule, poly_factor, triangular_factor


def test_triangular_rises_to_mid_training_and_falls_back():
    n = 10
    factors = [triangular_factor(e, n) for e in range(n)]
    assert factors == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9, 0.9, 0.7, 0.5, 0.3, 0.1])
    assert factors == pytest.approx(factors[::-1])  # symmetric around the middle
    assert min(factors) > 0  # neither the first nor the last epoch trains at lr 0
    assert triangular_factor(0, 1) == 1.0  # a one-epoch run trains at the peak
    assert triangular_factor(n, n) == 0.0  # past the end: nothing


def test_poly_matches_nnunets_scheduler():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    reference = PolyLRScheduler(opt, 0.01, 20)
    for epoch in range(20):
        reference.step(epoch)
        assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * poly_factor(epoch, 20))


def test_group_rates_keep_their_ratio_and_the_schedule_is_a_function_of_the_epoch():
    decoder, backbone = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [decoder], "lr": 0.05}, {"params": [backbone], "lr": 0.005}], lr=0.05)
    schedule = GroupLRSchedule(opt, 8, "triangular")
    for epoch in (3, 0, 7, 3):  # any order: nnU-Net steps by epoch and resumes mid-run without scheduler state
        schedule.step(epoch)
        lrs = [g["lr"] for g in opt.param_groups]
        assert lrs[0] == pytest.approx(0.05 * triangular_factor(epoch, 8))
        assert lrs[1] == pytest.approx(lrs[0] / 10)  # the pretrained backbone stays 10x slower
    restored = GroupLRSchedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 1, "poly")
    restored.load_state_dict(schedule.state_dict())
    assert (restored.kind, restored.num_epochs, restored.base_lrs) == ("triangular", 8, [0.05, 0.005])
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        GroupLRSchedule(opt, 8, "cosine")
