"""Run or inspect a cross-validation study: SLURM jobs through submitit, or the same grid on this machine.

State lives next to the results, in ``$nnUNet_results/DatasetXXX/m2s_cv/``: ``study.json`` (the job id of every
submitted training and of the final job) and ``logs/<job id>/`` (submitit's logs). What is *done* is always
read from nnU-Net's outputs (``grid.TrainingTask.is_done``); what is *queued or running* from ``squeue``.
So rerunning the command submits exactly the folds that are neither done nor in the queue, resumes the
interrupted ones with ``--c``, and submits nothing when all is done.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue

from m2s_nnunet.cv.grid import StudyError, TrainingTask
from m2s_nnunet.cv.jobs import FINAL_MARKER, FinalJob, TrainJob

STUDY_FILE = "study.json"
ACTIVE = {"PENDING": "queued", "CONFIGURING": "queued", "REQUEUED": "queued", "REQUEUE_HOLD": "queued",
          "REQUEUE_FED": "queued", "RESIZING": "queued", "SUSPENDED": "queued", "RUNNING": "running",
          "COMPLETING": "running", "STAGE_OUT": "running", "SIGNALING": "running"}


@dataclass
class SlurmOptions:
    """What every training job asks SLURM for (the final job needs no GPU)."""

    partition: str | None = None
    gpus: int = 1
    cpus: int | None = None
    mem: str | None = None
    time_min: int = 24 * 60
    extra: dict[str, str] = field(default_factory=dict)  # more #SBATCH --key=value lines
    max_requeues: int = 3


@dataclass
class Study:
    dataset: str
    tasks: list[TrainingTask]
    configurations: list[str]
    trainers: list[str]
    folds: list[int]
    plans: str
    env: dict[str, str]
    device: str = "cuda"
    num_gpus: int = 1

    @property
    def results(self) -> Path:
        return Path(self.env["nnUNet_results"])

    @property
    def folder(self) -> Path:
        return self.results / self.dataset / "m2s_cv"

    def train_job(self, task: TrainingTask) -> TrainJob:
        return TrainJob(task, self.env, self.device, self.num_gpus)

    def final_job(self) -> FinalJob:
        return FinalJob(self.dataset, self.configurations, self.trainers, self.plans, self.folds, self.env,
                        self.folder)

    def final_done(self) -> bool:
        return (self.folder / FINAL_MARKER).is_file()

    # ---- state file
    def load_state(self) -> dict:
        path = self.folder / STUDY_FILE
        if not path.is_file():
            return {"jobs": {}, "final": None}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise StudyError(f"{path} is corrupt ({err}); delete it (results are not affected) and rerun") from err

    def save_state(self, state: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / (STUDY_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.folder / STUDY_FILE)


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------- SLURM
def slurm_available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("squeue") is not None


def queue_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM state of each job still known to the controller (``squeue``); finished jobs are absent."""
    if not job_ids:
        return {}
    proc = subprocess.run(["squeue", "-h", "-o", "%i|%T", "-j", ",".join(job_ids)], capture_output=True, text=True)
    if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
        raise StudyError(f"squeue failed: {proc.stderr.strip()}")
    states = {}
    for line in proc.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        states[job_id] = state
    if proc.returncode != 0:  # one id was purged already: ask for each id on its own
        for job_id in job_ids:
            single = subprocess.run(["squeue", "-h", "-o", "%i|%T", "-j", job_id], capture_output=True, text=True)
            for line in single.stdout.splitlines():
                jid, _, state = line.strip().partition("|")
                states[jid] = state
    return states


def _executor(study: Study, options: SlurmOptions, name: str, final: bool = False):
    import submitit

    executor = submitit.SlurmExecutor(folder=study.folder / "logs" / "%j", max_num_timeout=options.max_requeues)
    # through srun (submitit's default): SLURM's USR2 before the time limit reaches the job's Python, which
    # requeues it (TrainJob is checkpointable)
    params: dict = {"job_name": name, "time": options.time_min, "signal_delay_s": 120,
                    "additional_parameters": dict(options.extra)}
    if options.partition:
        params["partition"] = options.partition
    if not final and study.device == "cuda" and options.gpus:
        params["gpus_per_node"] = max(options.gpus, study.num_gpus)
    if options.cpus:
        params["cpus_per_task"] = options.cpus
    if options.mem:
        params["mem"] = options.mem
    executor.update_parameters(**params)
    return executor


def submit(study: Study, options: SlurmOptions, dry_run: bool = False) -> list[str]:
    """Submit every training that is neither done nor queued, then the final job after all of them."""
    state = study.load_state()
    known = {k: v["job_id"] for k, v in state["jobs"].items()}
    final = state.get("final") or {}
    active = queue_states([*known.values(), *([final["job_id"]] if final.get("job_id") else [])])
    lines, waiting_for = [], []
    for task in study.tasks:
        job_id = known.get(task.key)
        if task.is_done(study.results):
            continue
        if job_id and active.get(job_id) in ACTIVE:
            waiting_for.append(job_id)
            continue
        resume = " (resumes with --c)" if task.can_resume(study.results) else ""
        if dry_run:
            lines.append(f"would submit {task.key}{resume}")
            continue
        job = _executor(study, options, f"m2s_cv_{task.trainer}_{task.configuration}_f{task.fold}").submit(
            study.train_job(task))
        state["jobs"][task.key] = {"job_id": job.job_id, "submitted": _now(), "resumed": bool(resume)}
        study.save_state(state)
        waiting_for.append(job.job_id)
        lines.append(f"submitted {task.key}: job {job.job_id}{resume}")
    final_active = final.get("job_id") and active.get(final["job_id"]) in ACTIVE
    if study.final_done() and not lines:
        return lines or ["nothing to submit: every fold is done and the final job ran"]
    if final_active and not [x for x in lines if x.startswith("submitted")]:
        return lines or [f"nothing to submit: the final job {final['job_id']} waits for the queued folds"]
    if dry_run:
        return lines + ["would submit the final job (find_best_configuration + summarize) after them"]
    if final_active:  # new trainings were submitted: the old final job would run before them
        subprocess.run(["scancel", final["job_id"]], capture_output=True)
    (study.folder / FINAL_MARKER).unlink(missing_ok=True)
    executor = _executor(study, options, "m2s_cv_final", final=True)
    if waiting_for:
        executor.update_parameters(dependency="afterok:" + ":".join(waiting_for))
    job = executor.submit(study.final_job())
    state["final"] = {"job_id": job.job_id, "submitted": _now(), "after": waiting_for}
    study.save_state(state)
    return lines + [f"submitted the final job {job.job_id} (find_best_configuration + summarize)"
                    + (f" after {len(waiting_for)} training job(s)" if waiting_for else "")]


# ---------------------------------------------------------------------------------------------- status
def _log_path(study: Study, job_id: str) -> Path:
    return study.folder / "logs" / job_id / f"{job_id}_0_log.out"


def status(study: Study) -> tuple[list[list[str]], dict[str, int], list[str]]:
    """One row per training (and the final job): state, job id, log; the counts per state; warnings."""
    state = study.load_state()
    final = state.get("final") or {}
    ids = [v["job_id"] for v in state["jobs"].values()] + ([final["job_id"]] if final.get("job_id") else [])
    warnings = []
    try:
        active = queue_states(ids) if ids and slurm_available() else {}
    except StudyError as err:  # the controller is down: what is done is still known from the outputs
        active = {}
        warnings.append(f"{err}; jobs that are not done are shown as failed, they may still be queued")
    rows, counts = [], {}

    def describe(done: bool, job_id: str | None) -> tuple[str, str]:
        if done:
            return "done", ""
        if job_id and active.get(job_id) in ACTIVE:
            return ACTIVE[active[job_id]], ""
        if job_id:
            return "failed", str(_log_path(study, job_id))
        return "not submitted", ""

    for task in study.tasks:
        job_id = (state["jobs"].get(task.key) or {}).get("job_id")
        what, log = describe(task.is_done(study.results), job_id)
        if what == "not submitted" and task.can_resume(study.results):
            what = "interrupted (rerun resumes it)"
        counts[what] = counts.get(what, 0) + 1
        rows.append([task.key, what, job_id or "-", log])
    what, log = describe(study.final_done(), final.get("job_id"))
    rows.append(["final: find_best_configuration + summarize", what, final.get("job_id") or "-", log])
    return rows, counts, warnings


def format_status(study: Study) -> str:
    rows, counts, warnings = status(study)
    width = max(len(r[0]) for r in rows)
    out = [f"{'job':<{width}}  {'state':<14}  {'job id':>8}  log"]
    out += [f"{r[0]:<{width}}  {r[1]:<14}  {r[2]:>8}  {r[3]}" for r in rows]
    done = counts.get("done", 0)
    out.append(f"progress: {done}/{len(study.tasks)} trainings done"
               + "".join(f", {n} {k}" for k, n in sorted(counts.items()) if k != "done")
               + ("; final job done" if study.final_done() else ""))
    out += [f"warning: {w}" for w in warnings]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- local
def run_local(study: Study, parallel: int = 1, gpus: list[str] | None = None) -> list[str]:
    """The same grid on this machine: ``parallel`` trainings at a time (each on its own GPU when given)."""
    todo = [t for t in study.tasks if not t.is_done(study.results)]
    lines = [f"{len(study.tasks) - len(todo)}/{len(study.tasks)} trainings done before"]
    slots: Queue[str | None] = Queue()
    for i in range(max(1, parallel)):
        slots.put(gpus[i % len(gpus)] if gpus else None)

    def train(index_task: tuple[int, TrainingTask]) -> str:
        index, task = index_task
        slot = slots.get()
        try:
            job = study.train_job(task)
            if slot is not None:
                job.env = {**job.env, "M2S_CV_GPU": slot}
            print(f"[{index}/{len(todo)}] {task.key}" + (" (resuming with --c)" if task.can_resume(study.results)
                                                          else ""), flush=True)
            return f"{task.key}: {job()}"
        finally:
            slots.put(slot)

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        lines += list(pool.map(train, enumerate(todo, start=1)))
    if todo or not study.final_done():
        print("[final] find_best_configuration + summarize", flush=True)
        study.final_job()()
        lines.append("final job: done")
    else:
        lines.append("nothing to run: every fold is done and the final job ran")
    return lines
