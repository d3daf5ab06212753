"""Trainer variants that stop after a wall-clock budget, for ``bench/equal_budget.py``.

nnU-Net finds them through ``nnUNet_extTrainer`` (equal_budget.py appends this folder). This folder holds
nothing else on purpose: nnU-Net imports every top-level ``.py`` file of such a folder.

How the budget works (read by every variant from environment variables, so nnUNetv2_train needs no new flags):

* ``M2S_BENCH_BUDGET_S`` (default 900): seconds of training. The clock starts when ``on_train_start`` has
  finished (network built, data loaders running, dataset unpacked) and covers the training *and* the per-epoch
  pseudo-validation iterations, checkpointing and plotting; the final sliding-window validation of nnU-Net and
  prediction are outside it.
* ``M2S_BENCH_ITERS`` / ``M2S_BENCH_VAL_ITERS`` (default 25 / 5): iterations per epoch. Short epochs give the
  stop rule a fine granularity. After every epoch the trainer measures the median epoch time and stops as soon
  as one more epoch would end past the budget, so a run never exceeds its budget by design (the first epoch
  always runs).
* ``M2S_BENCH_SCHEDULE`` (default ``fit``): with ``fit`` the learning-rate schedule's horizon (nnU-Net's poly
  ``max_steps``, M2SNet's triangular ``num_epochs``) is re-estimated after every epoch as the number of epochs
  that fit the budget, so both schedules run their whole course inside the budget (approximately: the horizon
  is an estimate and moves a little). With ``fixed`` the trainers keep their own 1000-epoch horizon, i.e. the
  schedule is *not* compressed and a short budget only sees its first few percent (poly: almost the initial
  rate; triangular: almost zero), which handicaps M2SNet's triangular schedule.

``nnUNet_results/.../fold_X/budget.json`` records what was actually run (epochs, iterations, seconds).
Stopping uses an exception caught in ``run_training``; nnU-Net's own loop and ``on_train_end`` (final
checkpoint, data-loader shutdown) are used unchanged.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from m2s_nnunet.training import (
    M2SNetTrainer,
    M2SNetTrainer_resnet18,
    M2SNetTrainer_resnet18_scratch,
    M2SNetTrainer_scratch,
)

BUDGET_ENV = "M2S_BENCH_BUDGET_S"
ITERS_ENV = "M2S_BENCH_ITERS"
VAL_ITERS_ENV = "M2S_BENCH_VAL_ITERS"
SCHEDULE_ENV = "M2S_BENCH_SCHEDULE"
MAX_EPOCHS = 1000  # upper bound of nnU-Net's epoch loop; the budget stops training long before on any real run


class BudgetSpent(Exception):
    """Raised at the end of an epoch when the next one would not fit the budget."""


class BudgetMixin:
    """Wall-clock budget for any nnU-Net trainer; put it first in the bases: ``class X(BudgetMixin, Trainer)``."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.budget_s = float(os.environ.get(BUDGET_ENV, "900"))
        self.num_iterations_per_epoch = int(os.environ.get(ITERS_ENV, "25"))
        self.num_val_iterations_per_epoch = int(os.environ.get(VAL_ITERS_ENV, "5"))
        self.schedule_mode = os.environ.get(SCHEDULE_ENV, "fit").strip().lower()
        if self.schedule_mode not in ("fit", "fixed"):
            raise ValueError(f"{SCHEDULE_ENV} must be 'fit' or 'fixed', got '{self.schedule_mode}'")
        self.num_epochs = MAX_EPOCHS
        self._budget_start: float | None = None
        self._budget_first_epoch = 0
        self._epoch_seconds: list[float] = []
        self._last_epoch_end: float | None = None
        self.schedule_horizon = MAX_EPOCHS
        self.stopped_by_budget = False

    def on_train_start(self) -> None:
        super().on_train_start()
        self._budget_start = self._last_epoch_end = time.perf_counter()
        self._budget_first_epoch = self.current_epoch
        self.print_to_log_file(
            f"Budget: {self.budget_s:.0f} s of training, {self.num_iterations_per_epoch} + "
            f"{self.num_val_iterations_per_epoch} iterations per epoch, schedule horizon mode '{self.schedule_mode}'"
        )

    def _set_schedule_horizon(self, epochs: int) -> None:
        scheduler = self.lr_scheduler
        if hasattr(scheduler, "max_steps"):  # nnU-Net's PolyLRScheduler
            scheduler.max_steps = epochs
        elif hasattr(scheduler, "num_epochs"):  # m2s_nnunet's GroupLRSchedule
            scheduler.num_epochs = epochs
        else:
            raise RuntimeError(f"cannot set the horizon of {type(scheduler).__name__}; use {SCHEDULE_ENV}=fixed")
        self.schedule_horizon = epochs

    def on_epoch_end(self) -> None:
        super().on_epoch_end()  # logs, checkpoints, current_epoch += 1
        now = time.perf_counter()
        self._epoch_seconds.append(now - self._last_epoch_end)
        self._last_epoch_end = now
        elapsed = now - self._budget_start
        per_epoch = statistics.median(self._epoch_seconds)
        more = int((self.budget_s - elapsed) // per_epoch)  # further epochs that would still end within budget
        if more <= 0:
            self.stopped_by_budget = True
            self.print_to_log_file(f"Budget spent: {elapsed:.0f} s of {self.budget_s:.0f} s; stopping after "
                                   f"{self.current_epoch - self._budget_first_epoch} epochs")
            raise BudgetSpent
        if self.schedule_mode == "fit":
            self._set_schedule_horizon(self.current_epoch + more)

    def run_training(self) -> None:
        try:
            super().run_training()
        except BudgetSpent:
            self.on_train_end()
        self._write_budget_report()

    def _write_budget_report(self) -> None:
        epochs = self.current_epoch - self._budget_first_epoch
        # up to the end of the last epoch: the final checkpoint and data-loader shutdown are not training
        seconds = self._last_epoch_end - self._budget_start if self._budget_start is not None else float("nan")
        report = {
            "trainer": self.__class__.__name__,
            "budget_s": self.budget_s,
            "train_seconds": round(seconds, 1),
            "epochs": epochs,
            "iterations_per_epoch": self.num_iterations_per_epoch,
            "val_iterations_per_epoch": self.num_val_iterations_per_epoch,
            "iterations": epochs * self.num_iterations_per_epoch,
            "batch_size": self.batch_size,
            "images_seen": epochs * self.num_iterations_per_epoch * self.batch_size,
            "median_epoch_s": round(statistics.median(self._epoch_seconds), 2) if self._epoch_seconds else None,
            "schedule_mode": self.schedule_mode,
            "final_schedule_horizon": self.schedule_horizon,
            "stopped_by_budget": self.stopped_by_budget,
            "device": str(self.device),
        }
        if self.local_rank == 0:
            (Path(self.output_folder) / "budget.json").write_text(json.dumps(report, indent=2) + "\n")


class nnUNetTrainer_budget(BudgetMixin, nnUNetTrainer):
    """nnU-Net's default trainer (PlainConvUNet, Dice+CE with deep supervision, poly LR) under a time budget."""


class M2SNetTrainer_budget(BudgetMixin, M2SNetTrainer):
    """Res2Net-50 M2SNet with ImageNet weights and LossNet (needs both weight files)."""


class M2SNetTrainer_resnet18_budget(BudgetMixin, M2SNetTrainer_resnet18):
    """ResNet-18 M2SNet with ImageNet weights and LossNet (needs both weight files)."""


class M2SNetTrainer_scratch_budget(BudgetMixin, M2SNetTrainer_scratch):
    """The from-scratch recipe, no LossNet: needs no weight file (Res2Net-50 from scratch with LossNet up to 0.1)."""


class M2SNetTrainer_resnet18_scratch_budget(BudgetMixin, M2SNetTrainer_resnet18_scratch):
    """ResNet-18 M2SNet from scratch with LossNet (needs the VGG16 weights only)."""


class M2SNetTrainer_scratch_noLossNet_budget(BudgetMixin, M2SNetTrainer_scratch):
    """The from-scratch recipe, Dice+CE only: needs no weight file at all (fully offline)."""

    lossnet_weight = 0.0


class M2SNetTrainer_resnet18_scratch_noLossNet_budget(BudgetMixin, M2SNetTrainer_resnet18_scratch):
    """ResNet-18 M2SNet from scratch, Dice+CE only: needs no weight file at all (fully offline)."""

    lossnet_weight = 0.0


BUDGET_TRAINERS = {
    cls.__name__: cls
    for cls in (
        nnUNetTrainer_budget, M2SNetTrainer_budget, M2SNetTrainer_resnet18_budget, M2SNetTrainer_scratch_budget,
        M2SNetTrainer_resnet18_scratch_budget, M2SNetTrainer_scratch_noLossNet_budget,
        M2SNetTrainer_resnet18_scratch_noLossNet_budget,
    )
}
