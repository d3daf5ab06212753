"""``m2s-nnunet cv``: the study grid, resuming, status, the local executor, and a real single-node SLURM.

The SLURM tests start munge + slurmctld + slurmd (``tests/slurm_cluster.py``, root) and skip with the reason
where SLURM is not installed; CI installs it (``.ci/run``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from nnunet_runner import make_env, run, write_two_fold_split
from slurm_cluster import SlurmCluster, slurm_installed

from m2s_nnunet.checkpoint_files import partial_name
from m2s_nnunet.cv.grid import StudyError, TrainingTask, default_configurations, study_grid
from m2s_nnunet.cv.jobs import FinalJob, TrainJob
from m2s_nnunet.cv.study import ACTIVE, Study, format_status, queue_states, status

SMOKE = ["M2SNetTrainer_smoke", "nnUNetTrainer_smoke"]


def _fake_done(results: Path, task: TrainingTask) -> None:
    folder = task.folder(results)
    (folder / "validation").mkdir(parents=True, exist_ok=True)
    (folder / "checkpoint_final.pth").write_bytes(b"x")
    (folder / "validation" / "summary.json").write_text("{}")


def test_grid_defaults_and_refusals():
    assert default_configurations(["2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres"]) == ["2d", "3d_fullres"]
    assert default_configurations(["2d"]) == ["2d"]
    tasks = study_grid("Dataset501_X", ["2d", "3d_fullres"], ["M2SNetTrainer", "nnUNetTrainer"], [0, 1, 2, 3, 4],
                       "nnUNetPlans", ["2d", "3d_fullres"])
    assert len(tasks) == 20 and tasks[0].key == "M2SNetTrainer__nnUNetPlans__2d/fold_0"
    with pytest.raises(StudyError, match=r"\['3d_fullres'\] are not in the nnUNetPlans plans"):
        study_grid("Dataset501_X", ["3d_fullres"], ["M2SNetTrainer"], [0], "nnUNetPlans", ["2d"])
    with pytest.raises(StudyError, match="distinct"):
        study_grid("Dataset501_X", ["2d"], ["M2SNetTrainer"], [0, 0], "nnUNetPlans", ["2d"])


def test_train_job_resumes_with_c_and_skips_finished_folds(tmp_path):
    env = {"nnUNet_results": str(tmp_path)}
    task = TrainingTask("Dataset501_X", "2d", "M2SNetTrainer", "nnUNetPlans", 3)
    job = TrainJob(task, env, "cuda", num_gpus=2)
    cmd = job.command()
    assert cmd[1:] == ["Dataset501_X", "2d", "3", "-tr", "M2SNetTrainer", "-p", "nnUNetPlans", "--npz", "-device",
                       "cuda", "-num_gpus", "2"]
    task.folder(tmp_path).mkdir(parents=True)
    (task.folder(tmp_path) / "checkpoint_latest.pth").write_bytes(b"x")
    assert job.command()[-1] == "--c"
    _fake_done(tmp_path, task)
    assert job() == "done before"  # no nnUNetv2_train started
    final = FinalJob("Dataset501_X", ["2d", "3d_fullres"], ["M2SNetTrainer", "M2SNetTrainer_scratch",
                                                             "nnUNetTrainer"], "nnUNetPlans", [0, 1], env)
    assert final.comparisons() == [
        ("M2SNetTrainer__nnUNetPlans__2d", "nnUNetTrainer__nnUNetPlans__2d"),
        ("M2SNetTrainer_scratch__nnUNetPlans__2d", "nnUNetTrainer__nnUNetPlans__2d"),
        ("M2SNetTrainer__nnUNetPlans__3d_fullres", "nnUNetTrainer__nnUNetPlans__3d_fullres"),
        ("M2SNetTrainer_scratch__nnUNetPlans__3d_fullres", "nnUNetTrainer__nnUNetPlans__3d_fullres")]


def test_train_job_sets_a_cut_off_checkpoint_aside_and_resumes_from_the_next(tmp_path, monkeypatch, capsys):
    """nnU-Net's own trainer writes checkpoints in place: a job killed while saving leaves a truncated
    checkpoint_latest.pth that `--c` would fail on at every rerun. The job keeps it under another name."""
    env = {"nnUNet_results": str(tmp_path)}
    task = TrainingTask("Dataset501_X", "2d", "nnUNetTrainer", "nnUNetPlans", 0)
    folder = task.folder(tmp_path)
    folder.mkdir(parents=True)
    torch.save({"current_epoch": 2}, folder / "checkpoint_best.pth")
    (folder / "checkpoint_latest.pth").write_bytes((folder / "checkpoint_best.pth").read_bytes()[:200])
    commands = []
    monkeypatch.setattr("m2s_nnunet.cv.jobs._run", lambda cmd, env: commands.append(cmd))
    with pytest.raises(RuntimeError, match="ended without checkpoint_final.pth"):  # nothing trained here
        TrainJob(task, env, "cpu")()
    assert commands[0][-1] == "--c"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint_best.pth", "checkpoint_latest.pth.incomplete"]
    assert "checkpoint_latest.pth was cut off while it was written; kept as checkpoint_latest.pth.incomplete" \
        in capsys.readouterr().out


def test_status_reads_outputs_and_the_state_file(tmp_path, monkeypatch):
    monkeypatch.setattr("m2s_nnunet.cv.study.slurm_available", lambda: False)
    tasks = study_grid("Dataset501_X", ["2d"], ["M2SNetTrainer", "nnUNetTrainer"], [0, 1], "nnUNetPlans", ["2d"])
    study = Study("Dataset501_X", tasks, ["2d"], ["M2SNetTrainer", "nnUNetTrainer"], [0, 1], "nnUNetPlans",
                  {"nnUNet_results": str(tmp_path)}, "cpu")
    _fake_done(tmp_path, tasks[0])
    tasks[1].folder(tmp_path).mkdir(parents=True)
    (tasks[1].folder(tmp_path) / "checkpoint_latest.pth").write_bytes(b"x")
    study.save_state({"jobs": {tasks[2].key: {"job_id": "41"}}, "final": None})
    rows, counts, warnings = status(study)
    assert not warnings
    assert [r[1] for r in rows] == ["done", "interrupted (rerun resumes it)", "failed", "not submitted",
                                    "not submitted"]
    assert rows[2][3].endswith("m2s_cv/logs/41/41_0_log.out")
    text = format_status(study)
    assert "progress: 1/4 trainings done, 1 failed, 1 interrupted (rerun resumes it), 1 not submitted" in text
    def controller_down(ids):
        raise StudyError("squeue failed: Unable to contact slurm controller")

    monkeypatch.setattr("m2s_nnunet.cv.study.slurm_available", lambda: True)
    monkeypatch.setattr("m2s_nnunet.cv.study.queue_states", controller_down)
    assert "warning: squeue failed: Unable to contact slurm controller" in format_status(study)
    assert "progress: 1/4 trainings done" in format_status(study)  # what is done is still known
    (study.folder / "study.json").write_text("{broken")
    with pytest.raises(StudyError, match="corrupt"):
        study.load_state()


def _cli(env: dict, *argv: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "m2s_nnunet.cli", "cv", *argv], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A generated 2D RGB dataset, planned and preprocessed, with a 2-fold split."""
    from m2s_nnunet.synthetic import make_rgb_dataset

    work = tmp_path_factory.mktemp("cv")
    env = make_env(work)
    folder = make_rgb_dataset(env["nnUNet_raw"], 936, "CV", num_train=6, num_test=1, size=(64, 64))
    run("nnUNetv2_plan_and_preprocess", ["-d", "936", "-c", "2d", "-np", "1", "-npfp", "1"], env)
    pre = Path(env["nnUNet_preprocessed"]) / folder.name
    write_two_fold_split(pre, sorted(p.name.removesuffix(".png") for p in (folder / "labelsTr").iterdir()))
    return {"env": env, "name": folder.name, "results": Path(env["nnUNet_results"]) / folder.name}


@pytest.mark.slow
def test_local_executor_runs_the_grid_then_find_best_and_summarize(tiny, tmp_path):
    env = {**tiny["env"], "nnUNet_results": str(tmp_path / "results")}
    (tmp_path / "results").mkdir()
    args = ["936", "-tr", *SMOKE, "-f", "0", "1", "--device", "cpu", "--executor", "local"]
    out = _cli(env, *args).stdout
    assert "4 trainings, executor local" in out and "final job: done" in out
    results = tmp_path / "results" / tiny["name"]
    assert json.loads((results / "m2s_cv" / "final.json").read_text())["finished"]
    assert (results / "inference_information.json").is_file()  # find_best_configuration ran
    assert (results / "m2s_summary").is_dir()  # summarize ran
    again = _cli(env, *args).stdout
    assert "4/4 trainings done before" in again and "nothing to run" in again
    status_out = _cli(env, "936", "-tr", *SMOKE, "-f", "0", "1", "--status").stdout
    assert "progress: 4/4 trainings done; final job done" in status_out


def _wait(predicate, timeout: float, what: str, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _wait_for_final_job(study_folder: Path, timeout: float, what: str) -> None:
    """Wait for the final job; fail at once, with its log, when a training job ended without its fold done
    (the final job, which depends on it, would then wait until the timeout)."""
    jobs = json.loads((study_folder / "study.json").read_text())["jobs"]

    def final_done_or_a_training_failed() -> bool:
        if (study_folder / "final.json").is_file():
            return True
        states = queue_states([job["job_id"] for job in jobs.values()])
        for key, job in jobs.items():
            fold_done = (study_folder.parent / key / "validation" / "summary.json").is_file()
            if states.get(job["job_id"]) not in ACTIVE and not fold_done:
                log = study_folder / "logs" / job["job_id"] / f"{job['job_id']}_0_log"
                tails = [path.read_text()[-3000:] for path in (log.with_suffix(".out"), log.with_suffix(".err"))
                         if path.is_file()]
                raise AssertionError(f"training job {job['job_id']} ({key}) ended without finishing its fold:\n"
                                     + "\n".join(tails))
        return False

    _wait(final_done_or_a_training_failed, timeout, what)


@pytest.fixture(scope="module")
def slurm():
    if not slurm_installed():
        pytest.skip("SLURM is not installed (apt-get install slurm-wlm munge; CI installs it)")
    cluster = SlurmCluster().start()
    yield cluster
    cluster.stop()


@pytest.mark.slow
def test_slurm_study_runs_jobs_then_final_and_a_rerun_submits_nothing(tiny, slurm, tmp_path):
    env = {**tiny["env"], "nnUNet_results": str(tmp_path / "results")}
    (tmp_path / "results").mkdir()
    args = ["936", "-tr", *SMOKE, "-f", "0", "1", "--device", "cpu", "--cpus", "1", "--time", "20"]
    out = _cli(env, *args, "--executor", "slurm").stdout
    assert out.count("submitted ") == 5, out  # 4 trainings + the final job
    folder = tmp_path / "results" / tiny["name"] / "m2s_cv"
    state = json.loads((folder / "study.json").read_text())
    train_ids = [v["job_id"] for v in state["jobs"].values()]
    assert state["final"]["after"] == train_ids  # the final job depends on every training
    _wait_for_final_job(folder, 900, "the final job")
    for job_id in train_ids:  # each training ran as a SLURM job: its log holds SLURM's job id and nnU-Net's output
        log = (folder / "logs" / job_id / f"{job_id}_0_log.out").read_text()
        assert "nnUNetv2_train" in log and "Training done." in log
    final_log = (folder / "logs" / state["final"]["job_id"] / f"{state['final']['job_id']}_0_log.out").read_text()
    assert "nnUNetv2_find_best_configuration" in final_log and "m2s_nnunet.cli summarize" in final_log
    assert (tmp_path / "results" / tiny["name"] / "inference_information.json").is_file()
    rerun = _cli(env, *args, "--executor", "slurm").stdout
    assert "submitted" not in rerun and "nothing to submit" in rerun
    assert "progress: 4/4 trainings done; final job done" in _cli(env, *args[:7], "--status").stdout


@pytest.mark.slow
def test_scancel_mid_run_then_rerun_resumes_the_fold(tiny, slurm, tmp_path):
    env = {**tiny["env"], "nnUNet_results": str(tmp_path / "results")}
    (tmp_path / "results").mkdir()
    args = ["936", "-tr", "M2SNetTrainer_smokeKill", "-f", "0", "--device", "cpu", "--cpus", "1", "--time", "20",
            "--executor", "slurm"]
    _cli(env, *args)
    folder = tmp_path / "results" / tiny["name"] / "m2s_cv"
    job_id = json.loads((folder / "study.json").read_text())["jobs"][
        "M2SNetTrainer_smokeKill__nnUNetPlans__2d/fold_0"]["job_id"]
    log = folder / "logs" / job_id / f"{job_id}_0_log.out"
    _wait(lambda: log.is_file() and "Epoch 2" in log.read_text(), 600, "epoch 2 of the job")
    # cancel while checkpoint_latest.pth is written (a CI run once hit that window by chance: nnU-Net's in-place
    # write left a cut-off file, and every resume failed on it)
    fold = tmp_path / "results" / tiny["name"] / "M2SNetTrainer_smokeKill__nnUNetPlans__2d" / "fold_0"
    writing = partial_name(fold / "checkpoint_latest.pth")
    _wait(writing.is_file, 300, "the job to write checkpoint_latest.pth", poll=0.005)
    subprocess.run(["scancel", job_id], check=True)
    _wait(lambda: queue_states([job_id]).get(job_id) not in ACTIVE, 60, "the cancelled job to end")
    cut_mid_write = writing.is_file()
    latest = torch.load(fold / "checkpoint_latest.pth", weights_only=False)["current_epoch"]
    assert latest >= 2
    assert "failed" in _cli(env, *args[:5], "--status").stdout  # cancelled, not done: its log is named
    rerun = _cli(env, *args).stdout
    assert "(resumes with --c)" in rerun
    _wait_for_final_job(folder, 900, "the resubmitted fold and the final job")
    new_id = json.loads((folder / "study.json").read_text())["jobs"][
        "M2SNetTrainer_smokeKill__nnUNetPlans__2d/fold_0"]["job_id"]
    resumed = (folder / "logs" / new_id / f"{new_id}_0_log.out").read_text()
    assert new_id != job_id and " --c" in resumed and "Epoch 0\n" not in resumed and f"Epoch {latest}\n" in resumed
    if cut_mid_write:  # SIGTERM reached the job before its write ended: the resumed run removes what it left
        assert f"Removed {writing.name}" in resumed
    assert not writing.exists()
