"""Smoke tests of the benchmark scripts in bench/: each entry point runs on tiny inputs and prints its table.

No timing is asserted (the numbers depend on the machine). The accuracy harness trains for minutes, so only its
input checks (``--dry-run``), its table and its equal-time rule are tested here, on made-up results.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
# One thread: on a shared, busy CPU several OpenMP threads per process slow tiny runs down many times over.
TINY_NET = ["--device", "cpu", "--warmup", "0", "--repeats", "1", "--threads", "1"]


def run_script(name: str, *args: str, timeout: int = 180) -> str:
    proc = subprocess.run([sys.executable, str(BENCH / name), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{name} {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_bench_network_tiny(tmp_path):
    out = run_script("bench_network.py", *TINY_NET, "--encoders", "resnet18", "--sizes", "64", "--batch", "1",
                     "--filter-base", "64", "--lossnet", "--out", str(tmp_path / "n.md"), "--json",
                     str(tmp_path / "n.json"))
    assert "| resnet18 | 64x64 | 1 |" in out
    assert "MultiScaleFilters (f3 + f5) | 1x64x16x16" in out
    assert "## LossNet" in out and "Random VGG16 weights" in out
    assert (tmp_path / "n.md").read_text().startswith("# M2SNet network benchmark")
    data = json.loads((tmp_path / "n.json").read_text())
    assert {"forward", "train_fast", "train_plain"} <= set(data["networks"][0]["ms_per_image"])


def test_bench_vs_unet_tiny(tmp_path):
    plans_dir = tmp_path / "plans"
    out = run_script("bench_vs_unet.py", *TINY_NET, "--image-size", "64", "64", "--num-images", "20",
                     "--encoders", "resnet18", "--batch", "1", "--memory", "none", "--matmul-n", "256",
                     "--trainers", "M2SNetTrainer_scratch", "M2SAbl_DS_bench",
                     "--save-plans", str(plans_dir), "--json", str(tmp_path / "v.json"))
    assert "| nnU-Net U-Net | Dice+CE, deep supervision |" in out
    assert "| M2SNet resnet18 | Dice+CE + 0.1 LossNet |" in out
    assert "| M2SNetTrainer_scratch | as the trainer |" in out and "| M2SAbl_DS_bench | as the trainer |" in out
    assert "## Ratios M2SNet / U-Net" in out
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["patch"] == [64, 64]
    assert set(data["train"]) == {"unet", "m2s_resnet18_lossnet", "m2s_resnet18", "tr_M2SNetTrainer_scratch",
                                  "tr_M2SAbl_DS_bench"}
    # one memory probe (what --memory subprocess runs per model), on the plans kept above
    probe = run_script("bench_vs_unet.py", "--device", "cpu", "--probe", "m2s_resnet18", "--probe-mode", "train",
                       "--plans", str(plans_dir / "nnUNetPlans.json"), "--batch", "1", "--memory-steps", "1",
                       "--encoders", "resnet18", "--threads", "1")
    memory = json.loads(probe.strip().splitlines()[-1])
    assert memory["peak_rss_mib"] >= memory["baseline_rss_mib"] > 0


def test_speed_table_hippocampus_and_predictor_rows(tmp_path):
    """The 3D rows on nnU-Net's own plans for a Hippocampus-like fingerprint (the smallest case of the table),
    and the inference rows inside nnU-Net's predictor."""
    out = run_script("speed_table.py", "--device", "cpu", "--quick", "--cases", "3d_hippo", "predictor",
                     "--json", str(tmp_path / "s.json"), timeout=600)
    assert "3D 40x56x40, batch 2: M2SNetTrainer (recipe + LossNet) / U-Net" in out
    assert "3D 40x56x40, batch 2: M2SNetTrainer with level_mapping 'last4' / U-Net" in out
    data = json.loads((tmp_path / "s.json").read_text())
    steps = data["3d_hippo"]["steps"]
    assert set(steps) == {"unet", "tr_M2SNetTrainer", "tr_SpeedTable_M2SNet_last4"}
    # the recipe's deeper mapping keeps the pyramid off the full resolution: far fewer saved activations
    assert steps["tr_M2SNetTrainer"]["activation_mib"] < 0.5 * steps["tr_SpeedTable_M2SNet_last4"]["activation_mib"]
    assert all(m["step_s"] > 0 and m["flops_per_step"] > 0 for m in steps.values())
    # inside nnU-Net's predictor (random BatchNorm statistics calibrated, or fp16 logits overflow)
    assert set(data["predictor_128"]) == {"U-Net", "Res2Net-50 M2SNet", "M2SNet on the plans encoder"}
    assert "inference 128x128 with TTA in nnU-Net's predictor: Res2Net-50 M2SNet / U-Net" in out


def test_gpu_check_skips_cleanly_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the skip path does not apply")
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), str(tmp_path / "g.md")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Skipped: no CUDA device" in (tmp_path / "g.md").read_text()


def test_gpu_check_code_paths_on_cpu(tmp_path):
    """Every check of the GPU script at toy sizes on the CPU, so the GPU day does not start with a crash."""
    out = run_script("gpu_check.py", "--cpu-smoke", "--out", str(tmp_path / "g.md"),
                     "--only", "fixed filters: fast path vs plain convolution", "LossNet under autocast",
                     "training steps under autocast", "memory model vs max_memory_allocated", "DDP", timeout=600)
    report = (tmp_path / "g.md").read_text()
    assert "Traceback" not in report, report
    assert "all finite: **True**" in report
    assert "2-process DDP step (gloo): max gradient difference between ranks 0" in report
    assert "parameters without a gradient: 0" in report
    assert out


def test_profile_step_tiny():
    out = run_script("profile_step.py", "--device", "cpu", "--encoder", "resnet18", "--size", "64", "--batch", "1",
                     "--warmup", "0", "--steps", "1", "--top", "5", "--threads", "1")
    for phase in ("network forward", "segmentation loss", "LossNet forward", "LossNet backward", "network backward",
                  "clip + optimizer step"):
        assert f"| {phase} |" in out
    assert "## Top 5 ops by self CPU time" in out


def test_make_bench_runs_the_script_with_its_arguments():
    """``make bench BENCH=NAME ARGS=...`` runs bench/NAME.py with this interpreter's environment; without a
    known NAME it lists the scripts and exits 2."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = Path(sys.executable).parent.parent
    make = ["make", "-s", "-C", str(REPO), f"VENV={venv}", "-o", f"{venv}/bin/m2s-nnunet", "bench"]
    proc = subprocess.run([*make, "BENCH=profile_step", "ARGS=--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "usage: profile_step.py" in proc.stdout
    for bench in ([], ["BENCH=nosuch"], ["BENCH=benchlib"]):
        proc = subprocess.run([*make, *bench], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "usage: make bench BENCH=NAME" in proc.stderr
        assert "accuracy bench_network bench_vs_unet gpu_check profile_step speed_table" in proc.stderr


def test_accuracy_harness_dry_run_and_unknown_trainer():
    from conftest import SHARED_DATA

    out = run_script("accuracy.py", "kvasir", "--dry-run", "--models", "nnUNetTrainer_bench",
                     "M2SNetTrainer_scratch_bench", "nnUNetTrainer_bench@resencm")
    if not SHARED_DATA.is_dir():
        assert "SKIPPED" in out
        return
    assert "models ['nnUNetTrainer_bench', 'M2SNetTrainer_scratch_bench', 'nnUNetTrainer_bench@resencm']" in out
    proc = subprocess.run([sys.executable, str(BENCH / "accuracy.py"), "covid", "--dry-run", "--models", "NoSuch"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown trainer(s) ['NoSuch']" in proc.stderr


def test_accuracy_table_pairs_cases_and_shows_replicates(monkeypatch):
    """render() on made-up results: seeds averaged per case, paired against the first model."""
    monkeypatch.syspath_prepend(str(BENCH))
    import accuracy

    args = accuracy.parse_args(["busi", "--models", "nnUNetTrainer_bench", "M2SAbl_refine_bench", "--seeds", "0", "1"])
    cases = [f"c{i}" for i in range(12)]

    def run(model, seed, offset):
        scores = {c: min(1.0, 0.5 + 0.02 * i + offset + 0.01 * seed) for i, c in enumerate(cases)}
        bench = {"iterations": 150, "batch_size": 12, "seconds_per_iteration": 4.0, "train_seconds": 600.0}
        return {"model": model, "seed": seed, "bench": bench, "val_dice": 0.6 + offset,
                "tests": {"busi": {"per_case": scores, "nnunet_dice": 0.6, "predict_s": 10.0}}}

    results = {"nnUNetTrainer_bench": [run("nnUNetTrainer_bench", s, 0.0) for s in (0, 1)],
               "M2SAbl_refine_bench": [run("M2SAbl_refine_bench", s, 0.05) for s in (0, 1)]}
    md = accuracy.render(args, results, ["busi"])
    row = next(line for line in md.splitlines() if line.startswith("| M2SAbl_refine_bench"))
    assert "| 150 x 12 |" in row and "+0.050 [" in row  # every case 0.05 better
    assert "0.660 / 0.670" in row  # each seed's mean: the replicate noise
    assert "0.000488" in row  # Wilcoxon p of 12 positive differences (two-sided, exact)


def test_accuracy_equal_time_gives_every_model_the_baselines_minutes(monkeypatch):
    """--equal-time: iterations per epoch = the first model's training seconds / the model's seconds per iteration
    / epochs, each model's fastest run counting (the least disturbed by other load)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import accuracy

    def runs(*timings):
        return [{"bench": {"train_seconds": seconds, "seconds_per_iteration": per_iteration}}
                for seconds, per_iteration in timings]

    labels = ("nnUNetTrainer_bench", "M2SAbl_DS_bench", "M2SAbl_blocks1_bench@resencm")
    models = [accuracy.parse_model(label) for label in labels]
    results = dict(zip(labels, (runs((720.0, 4.8), (600.0, 4.0)),  # fastest baseline run: 600 s
                                runs((900.0, 6.0), (300.0, 2.0)),  # fastest: 2 s per iteration
                                runs((30.0, 0.2)))))
    matched = accuracy.equal_time_iterations(results, models, epochs=6)
    assert matched == {models[1]: 50, models[2]: 500}  # 600 / 2.0 / 6 and 600 / 0.2 / 6


def test_accuracy_report_records_paths_by_name_only(monkeypatch, tmp_path):
    """The --json report is committed to bench/results/: no local folder may leak into it."""
    monkeypatch.syspath_prepend(str(BENCH))
    import accuracy

    args = accuracy.parse_args(["covid", "--work-dir", str(tmp_path / "private" / "work"),
                                "--json", str(tmp_path / "private" / "covid.json")])
    recorded = accuracy.recorded_arguments(args)
    assert recorded["work_dir"] == "work" and recorded["json"] == "covid.json"
    assert recorded["out"] == "None" and recorded["epochs"] == "3"
    assert str(tmp_path) not in json.dumps(recorded)


def test_schedule_mixin_reads_the_schedule_and_seed(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH / "trainers"))
    import accuracy_trainers as at

    monkeypatch.setenv(at.EPOCHS_ENV, "3")
    monkeypatch.setenv(at.ITERS_ENV, "7")
    monkeypatch.setenv(at.SEED_ENV, "5")

    class FakeTrainer:  # the parts of nnUNetTrainer the mixin touches
        def __init__(self, plans, configuration, fold, dataset_json, device):
            self.output_folder, self.local_rank, self.batch_size, self.device = str(tmp_path), 0, 4, "cpu"

        def on_epoch_start(self):
            pass

        def on_epoch_end(self):
            pass

        def on_train_end(self):
            pass

    class Scheduled(at.ScheduleMixin, FakeTrainer):
        pass

    trainer = Scheduled({}, "2d", 0, {}, None)
    first = torch_rand()
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.bench_seed) == (3, 7, 5)
    Scheduled({}, "2d", 0, {}, None)
    assert torch_rand() == first  # the same seed gives the same initialisation
    for _ in range(3):
        trainer.on_epoch_start()
        trainer.on_epoch_end()
    trainer.on_train_end()
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["iterations"] == 21 and report["seed"] == 5 and report["epochs_run_this_process"] == 3
    names = set(at.BENCH_TRAINERS)
    assert {"nnUNetTrainer_bench", "M2SNetTrainer_scratch_bench", "M2SAbl_refine_bench"} <= names
    assert all(cls.recipe is False for cls in at.ABLATION_TRAINERS.values())  # one factor per row


def torch_rand() -> float:
    import torch

    return float(torch.rand(1))
