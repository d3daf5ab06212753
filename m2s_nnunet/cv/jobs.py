"""What a study job runs on its node: one ``nnUNetv2_train`` fold, or the final model selection and summary.

Both are plain callables, pickled by submitit for SLURM and called directly by the local executor. A
training job resumes with ``--c`` whenever the fold has a checkpoint (after a timeout, a preemption or a
``scancel``; a checkpoint the kill cut off is set aside first), and is a no-op when the fold is already done.
On SLURM, submitit requeues it before its time limit (``checkpoint`` below), up to ``max_num_timeout`` times.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from m2s_nnunet.cv.grid import TrainingTask
from m2s_nnunet.nnunet_env import nnunet_command

FINAL_MARKER = "final.json"


def results_folder(env: dict[str, str]) -> Path:
    return Path(env["nnUNet_results"])


def _run(cmd: list[str], env: dict[str, str]) -> None:
    """Run a command with its output in this job's log; fail with the command named."""
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed with exit code {proc.returncode} (its output is above)")


@dataclass
class TrainJob(submitit.helpers.Checkpointable):
    """Train one fold with ``--npz`` (for ensembling); resume with ``--c`` if the fold has a checkpoint."""

    task: TrainingTask
    env: dict[str, str]
    device: str = "cuda"
    num_gpus: int = 1

    def command(self) -> list[str]:
        t = self.task
        cmd = [nnunet_command("nnUNetv2_train"), t.dataset, t.configuration, str(t.fold), "-tr", t.trainer,
               "-p", t.plans, "--npz", "-device", self.device]
        if self.num_gpus > 1:
            cmd += ["-num_gpus", str(self.num_gpus)]
        if self.task.can_resume(results_folder(self.env)):
            cmd.append("--c")
        return cmd

    def __call__(self) -> str:
        if self.task.is_done(results_folder(self.env)):
            print(f"{self.task.key}: already done, nothing to train", flush=True)
            return "done before"
        for note in self.task.set_aside_incomplete_checkpoints(results_folder(self.env)):
            print(note, flush=True)
        env = {**os.environ, **self.env}
        if self.device == "cuda" and "SLURM_JOB_ID" not in os.environ and "M2S_CV_GPU" in self.env:
            env["CUDA_VISIBLE_DEVICES"] = self.env["M2S_CV_GPU"]  # the local executor's GPU for this job
        _run(self.command(), env)
        if not self.task.is_done(results_folder(self.env)):
            raise RuntimeError(f"{self.task.key}: nnUNetv2_train ended without checkpoint_final.pth and "
                               "validation/summary.json")
        return "trained"


@dataclass
class FinalJob:
    """After every fold: ``nnUNetv2_find_best_configuration`` and ``m2s-nnunet summarize`` (M2SNet vs baselines)."""

    dataset: str
    configurations: list[str]
    trainers: list[str]
    plans: str
    folds: list[int]
    env: dict[str, str]
    study_folder: Path = field(default_factory=Path)

    def comparisons(self) -> list[tuple[str, str]]:
        """Each M2SNet model against each other trainer's model of the same configuration."""
        m2s = [t for t in self.trainers if t.startswith("M2SNet")]
        others = [t for t in self.trainers if not t.startswith("M2SNet")]
        return [(f"{a}__{self.plans}__{c}", f"{b}__{self.plans}__{c}")
                for c in self.configurations for a in m2s for b in others]

    def __call__(self) -> str:
        env = {**os.environ, **self.env}
        folds = [str(f) for f in self.folds]
        _run([nnunet_command("nnUNetv2_find_best_configuration"), self.dataset, "-c", *self.configurations,
              "-tr", *self.trainers, "-p", self.plans, "-f", *folds,
              "-np", env.get("nnUNet_def_n_proc", "2")], env)
        summarize = [sys.executable, "-m", "m2s_nnunet.cli", "summarize", self.dataset, "--folds", *folds]
        for a, b in self.comparisons():
            summarize += ["--compare", a, b]
        _run(summarize, env)
        marker = Path(self.study_folder) / FINAL_MARKER
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"finished": dt.datetime.now().isoformat(timespec="seconds"),
                                      "summary": str(results_folder(self.env) / self.dataset / "m2s_summary"),
                                      "best_configuration": str(results_folder(self.env) / self.dataset
                                                                / "inference_information.json")}, indent=2))
        return "done"
