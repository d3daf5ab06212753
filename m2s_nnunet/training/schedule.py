"""Epoch-indexed learning-rate schedules with per-group base rates.

nnU-Net calls ``lr_scheduler.step(current_epoch)`` once per epoch and does not checkpoint the scheduler,
so a schedule must be a pure function of the epoch. Unlike nnU-Net's ``PolyLRScheduler`` these keep each
parameter group's own base rate (M2SNet trains the pretrained backbone 10x slower than the decoder).
"""

from __future__ import annotations

from torch.optim import Optimizer


def triangular_factor(epoch: int, num_epochs: int) -> float:
    """The paper's triangular schedule: linear rise to the peak at mid-training, then linear decay.

    Evaluated at the middle of each epoch so that the first and last epochs are not at exactly zero.
    """
    t = (epoch + 0.5) / max(num_epochs, 1)
    return max(0.0, 1.0 - abs(2.0 * t - 1.0))


def poly_factor(epoch: int, num_epochs: int, exponent: float = 0.9) -> float:
    """nnU-Net's polynomial decay."""
    return (1 - min(epoch, num_epochs) / max(num_epochs, 1)) ** exponent


class GroupLRSchedule:
    """Sets ``lr = base_lr(group) * factor(epoch)`` for every parameter group on ``step(epoch)``."""

    def __init__(self, optimizer: Optimizer, num_epochs: int, kind: str = "triangular") -> None:
        if kind not in ("triangular", "poly"):
            raise ValueError(f"unknown schedule '{kind}', use 'triangular' or 'poly'")
        self.optimizer = optimizer
        self.num_epochs = num_epochs
        self.kind = kind
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.step(0)

    def factor(self, epoch: int) -> float:
        if self.kind == "triangular":
            return triangular_factor(epoch, self.num_epochs)
        return poly_factor(epoch, self.num_epochs)

    def step(self, epoch: int | None = None) -> None:
        epoch = 0 if epoch is None else epoch
        f = self.factor(epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * f

    def state_dict(self) -> dict:
        return {"num_epochs": self.num_epochs, "kind": self.kind, "base_lrs": self.base_lrs}

    def load_state_dict(self, state: dict) -> None:
        self.num_epochs, self.kind, self.base_lrs = state["num_epochs"], state["kind"], state["base_lrs"]
