"""Trainers of the accuracy harness (``bench/accuracy.py``): a fixed schedule and a seed from the environment.

nnU-Net finds them through ``nnUNet_extTrainer`` (accuracy.py appends this folder). Every class here is an
existing trainer plus ``ScheduleMixin``, so two rows of a table differ only in what their base class changes.

* ``M2S_BENCH_EPOCHS`` / ``M2S_BENCH_ITERS`` / ``M2S_BENCH_VAL_ITERS``: the schedule (epochs x training
  iterations, pseudo-validation iterations per epoch); the learning-rate schedule runs its whole course in it.
* ``M2S_BENCH_SEED``: seeds Python, NumPy and torch before the network is built (the replicate id).
* ``M2S_BENCH_VAL_TTA``: ``0`` runs nnU-Net's final fold validation without mirroring (about 2x faster on
  CPU; the same for every row). The checkpoint keeps its mirror axes, so predictions still use TTA.
* ``M2S_BENCH_SCORE_AT``: iteration counts (comma-separated multiples of the iterations per epoch) at which
  the run also saves ``checkpoint_it<N>.pth`` through nnU-Net's ``save_checkpoint``, so that ``accuracy.py
  --score-at`` can score a learning curve from one run (its learning-rate schedule: the whole run's).

``fold_X/bench.json`` records what ran: epochs, iterations, batch size, seed, the score points and the training
seconds (the epochs themselves: start-up, the final sliding-window validation, prediction and the score points'
checkpoints are not included).

The ablation rows (``ABLATIONS``) each change one factor of the screening base, M2SNet on nnU-Net's residual
encoder built from the plans (``encoder = "plans"``), and are generated below as ``M2SAbl_<tag>_bench``.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from m2s_nnunet.training import M2SNetTrainer, M2SNetTrainer_scratch, M2SNetTrainer_scratch_LossNet

EPOCHS_ENV = "M2S_BENCH_EPOCHS"
ITERS_ENV = "M2S_BENCH_ITERS"
VAL_ITERS_ENV = "M2S_BENCH_VAL_ITERS"
SEED_ENV = "M2S_BENCH_SEED"
VAL_TTA_ENV = "M2S_BENCH_VAL_TTA"
SCORE_AT_ENV = "M2S_BENCH_SCORE_AT"


def checkpoint_name(iterations: int) -> str:
    """The file a score point's checkpoint is saved as (``accuracy.py`` predicts from it with ``-chk``)."""
    return f"checkpoint_it{iterations}.pth"


def score_points_from_env(iterations_per_epoch: int, epochs: int) -> list[int]:
    """The iteration counts of ``M2S_BENCH_SCORE_AT``; one the schedule never reaches is an error, since a
    silently missing checkpoint would only show up hours later, when the prediction fails."""
    text = os.environ.get(SCORE_AT_ENV, "").replace(",", " ")
    points = sorted({int(v) for v in text.split()})
    bad = [n for n in points if n < 1 or n % iterations_per_epoch or n > epochs * iterations_per_epoch]
    if bad:
        raise ValueError(f"{SCORE_AT_ENV}: {bad} not reached by this schedule ({epochs} epochs x "
                         f"{iterations_per_epoch} iterations): use multiples of {iterations_per_epoch} up to "
                         f"{epochs * iterations_per_epoch}")
    return points


class ScheduleMixin:
    """Fixed schedule and seed from the environment; put it first in the bases: ``class X(ScheduleMixin, T)``."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ.get(EPOCHS_ENV, "2"))
        self.num_iterations_per_epoch = int(os.environ.get(ITERS_ENV, "50"))
        self.num_val_iterations_per_epoch = int(os.environ.get(VAL_ITERS_ENV, "5"))
        self.bench_seed = int(os.environ.get(SEED_ENV, "0"))
        self.bench_score_at = score_points_from_env(self.num_iterations_per_epoch, self.num_epochs)
        random.seed(self.bench_seed)
        np.random.seed(self.bench_seed)
        torch.manual_seed(self.bench_seed)
        self._epoch_start = 0.0
        self.bench_train_seconds = 0.0
        self.bench_epochs_run = 0

    def on_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        super().on_epoch_start()

    def on_epoch_end(self) -> None:
        # current_epoch counts from the start of the run (a resumed one too) and is still this epoch's index
        # here: saved now, the checkpoint resumes like nnU-Net's own. Its writing time is not training time.
        if self.bench_score_at:
            done = (self.current_epoch + 1) * self.num_iterations_per_epoch
            if done in self.bench_score_at:
                saving = time.perf_counter()
                self.save_checkpoint(str(Path(self.output_folder) / checkpoint_name(done)))
                self._epoch_start += time.perf_counter() - saving
        super().on_epoch_end()
        self.bench_train_seconds += time.perf_counter() - self._epoch_start
        self.bench_epochs_run += 1

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        if os.environ.get(VAL_TTA_ENV, "1") != "0":
            return super().perform_actual_validation(save_probabilities)
        axes, self.inference_allowed_mirroring_axes = self.inference_allowed_mirroring_axes, None
        try:
            return super().perform_actual_validation(save_probabilities)
        finally:
            self.inference_allowed_mirroring_axes = axes

    def on_train_end(self) -> None:
        super().on_train_end()
        if self.local_rank == 0:
            report = {
                "trainer": type(self).__name__,
                "seed": self.bench_seed,
                "epochs": self.num_epochs,
                "epochs_run_this_process": self.bench_epochs_run,
                "iterations_per_epoch": self.num_iterations_per_epoch,
                "val_iterations_per_epoch": self.num_val_iterations_per_epoch,
                "iterations": self.num_epochs * self.num_iterations_per_epoch,
                "batch_size": self.batch_size,
                "train_seconds": round(self.bench_train_seconds, 1),
                "seconds_per_iteration": round(self.bench_train_seconds / max(
                    1, self.bench_epochs_run * self.num_iterations_per_epoch), 3),
                "device": str(self.device),
                "score_at": self.bench_score_at,
            }
            (Path(self.output_folder) / "bench.json").write_text(json.dumps(report, indent=2) + "\n")


class nnUNetTrainer_bench(ScheduleMixin, nnUNetTrainer):
    """nnU-Net's default trainer (its U-Net, or ResEnc-M with ``-p nnUNetResEncUNetMPlans``)."""


class M2SNetTrainer_scratch_bench(ScheduleMixin, M2SNetTrainer_scratch):
    """The from-scratch recipe (what ``M2SNetTrainer_scratch`` trains)."""


class M2SNetTrainer_scratch_LossNet_bench(ScheduleMixin, M2SNetTrainer_scratch_LossNet):
    """The from-scratch recipe plus LossNet (needs VGG16 ImageNet weights)."""


# One factor per row. "base" is M2SNet on the plans encoder with the defaults of M2SNetTrainer otherwise
# (paper optimiser, Dice+CE, decoder at stride 4, no side heads), LossNet off (its VGG16 weights need a
# download; offline runs cannot measure it), no ImageNet weights.
_SCRATCH = {"pretrained_encoder": False, "lossnet_weight": 0.0, "recipe": False}
_BASE = {**_SCRATCH, "encoder": "plans"}
ABLATIONS: dict[str, tuple[str, dict]] = {
    "res2net": ("Res2Net-50 encoder (timm), BatchNorm decoder: the 0.1 M2SNetTrainer_scratch without LossNet",
                {**_SCRATCH, "encoder": "res2net50d"}),
    "resnet18": ("ResNet-18 encoder (timm), BatchNorm decoder", {**_SCRATCH, "encoder": "resnet18"}),
    "base": ("nnU-Net residual encoder from the plans, InstanceNorm decoder", dict(_BASE)),
    "refine": ("base + full-resolution refinement path", {**_BASE, "refine": True}),
    "DS": ("base + deep supervision through side heads", {**_BASE, "side_heads": True}),
    "nnunetopt": ("base + nnU-Net's optimiser (SGD 0.99, lr 0.01, poly)", {**_BASE, "optimizer_recipe": "nnunet"}),
    "structure": ("base + the paper's structure loss instead of Dice+CE", {**_BASE, "seg_loss": "structure"}),
    "batchnorm": ("base + BatchNorm in encoder and decoder",
                  {**_BASE, "encoder_norm": "batch", "decoder_norm": "batch"}),
    "blocks1": ("base + one residual block per encoder stage (U-Net encoder depth)", {**_BASE, "encoder_blocks": 1}),
    # combinations of the rows above, screened after them
    "DS_refine": ("base + deep supervision + refinement path",
                  {**_BASE, "side_heads": True, "refine": True}),
    "DS_structure": ("base + deep supervision + structure loss",
                     {**_BASE, "side_heads": True, "seg_loss": "structure"}),
    # 4-stage plans (Hippocampus): the pyramid one stage deeper, X2 never at full resolution (speed issue)
    "DS_deeper": ("DS with level_mapping 'deeper' (X2 below full resolution, extra bottleneck stage for X5)",
                  {**_BASE, "side_heads": True, "level_mapping": "deeper"}),
    "DS_refine_deeper": ("DS_refine with level_mapping 'deeper'",
                         {**_BASE, "side_heads": True, "refine": True, "level_mapping": "deeper"}),
}


def _make_ablation(tag: str, doc: str, attrs: dict) -> type:
    name = f"M2SAbl_{tag}_bench"
    return type(name, (ScheduleMixin, M2SNetTrainer), {**attrs, "__doc__": doc, "__module__": __name__})


ABLATION_TRAINERS = {f"M2SAbl_{tag}_bench": _make_ablation(tag, doc, attrs) for tag, (doc, attrs) in ABLATIONS.items()}
globals().update(ABLATION_TRAINERS)  # nnU-Net looks trainers up as module attributes

BENCH_TRAINERS = {
    cls.__name__: cls
    for cls in (nnUNetTrainer_bench, M2SNetTrainer_scratch_bench, M2SNetTrainer_scratch_LossNet_bench,
                *ABLATION_TRAINERS.values())
}
