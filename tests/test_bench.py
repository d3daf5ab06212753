"""Smoke tests of the benchmark scripts in bench/: each entry point runs on tiny inputs and prints its table.

No timing is asserted (the numbers depend on the machine). The accuracy harness trains for minutes, so only its
input checks (``--dry-run``), its table and its equal-time rule are tested here, on made-up results.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from m2s_nnunet.cpu_bf16 import cpu_computes_bf16

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


def test_speed_table_on_given_plans(tmp_path):
    """--plans: the U-Net against trainer classes of the package and of bench/trainers on a dataset's own plans."""
    plans = REPO / "tests" / "data" / "tiny_plans" / "nnUNetPlans.json"
    out = run_script("speed_table.py", "--device", "cpu", "--quick", "--plans", str(plans), "--batch", "1",
                     "--trainers", "M2SNetTrainer_scratch", "M2SAbl_DS_bench", "--json", str(tmp_path / "s.json"))
    assert "2d 64x64 of the given plans, batch 1: M2SNetTrainer_scratch / U-Net" in out
    assert "2d 64x64 of the given plans, batch 1: M2SAbl_DS_bench / U-Net" in out
    data = json.loads((tmp_path / "s.json").read_text())
    assert set(data) >= {"plans", "rows", "matmul_peak_gflops"} and "3d_hippo" not in data  # only the given plans
    steps = data["plans"]["steps"]
    assert set(steps) == {"unet", "tr_M2SNetTrainer_scratch", "tr_M2SAbl_DS_bench"}
    assert all(m["step_s"] > 0 and m["params_m"] > 0 and m["activation_mib"] > 0 for m in steps.values())
    assert data["args"]["plans"] == str(plans)
    proc = subprocess.run([sys.executable, str(BENCH / "speed_table.py"), "--plans", str(tmp_path / "none.json")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "no such file" in proc.stderr


@pytest.mark.slow
def test_speed_table_2d_128_rows(tmp_path):
    """The 2D 128x128 training rows: the paper model with and without LossNet, and the from-scratch recipe (also
    in bf16 where the CPU computes it natively), each against nnU-Net's U-Net on the same plans."""
    out = run_script("speed_table.py", "--device", "cpu", "--quick", "--cases", "2d_128", "--json",
                     str(tmp_path / "s.json"), timeout=600)
    steps = json.loads((tmp_path / "s.json").read_text())["2d_128"]["steps"]
    bf16 = {"tr_SpeedTable_M2SNet_scratch_cpu_bf16"} if cpu_computes_bf16() else set()
    assert {"unet", "tr_SpeedTable_M2SNet_paper", "tr_SpeedTable_M2SNet_paper_noLossNet",
            "tr_M2SNetTrainer_scratch"} | bf16 <= set(steps)
    assert "2D 128x128, batch 8: the recipe (M2SNetTrainer_scratch) / U-Net" in out
    if bf16:
        assert "2D 128x128, batch 8: the recipe in bf16 (cpu_bf16) / U-Net in fp32" in out
        # the network really ran in bf16: it saved fewer bytes than the same recipe in fp32
        assert steps[bf16.pop()]["activation_mib"] < 0.9 * steps["tr_M2SNetTrainer_scratch"]["activation_mib"]
    assert all(m["step_s"] > 0 and m["activation_mib"] > 0 for m in steps.values())


def test_speed_table_hippocampus_and_predictor_rows(tmp_path):
    """The 3D rows on nnU-Net's own plans for a Hippocampus-like fingerprint (the smallest case of the table),
    and the inference rows inside nnU-Net's predictor."""
    out = run_script("speed_table.py", "--device", "cpu", "--quick", "--cases", "3d_hippo", "predictor",
                     "predictor_3d", "--profile", "--json", str(tmp_path / "s.json"), timeout=600)
    assert "3D 40x56x40, batch 2: M2SNetTrainer (recipe + LossNet) / U-Net" in out
    assert "3D 40x56x40, batch 2: M2SNetTrainer with level_mapping 'last4' / U-Net" in out
    data = json.loads((tmp_path / "s.json").read_text())
    steps = data["3d_hippo"]["steps"]
    bf16 = {"tr_SpeedTable_M2SNet_cpu_bf16"} if cpu_computes_bf16() else set()  # cpu_bf16 where the CPU has it
    # the recipe (and in bf16) also with autograd's backward of the subtraction units, as 0.9.0 trained
    autograd = {f"{key}+autograd_differences" for key in {"tr_M2SNetTrainer"} | bf16}
    assert set(steps) == {"unet", "tr_M2SNetTrainer", "tr_SpeedTable_M2SNet_last4"} | bf16 | autograd
    assert ("3D 40x56x40, batch 2: M2SNetTrainer (recipe + LossNet), compact / autograd's backward of the subtraction "
            "units (speed-up; memory)") in out
    for key in autograd:  # the compact backward keeps less (0.79-0.82x on the Hippocampus plans)
        assert steps[key.split("+")[0]]["activation_mib"] < 0.9 * steps[key]["activation_mib"]
    if bf16:
        assert "3D 40x56x40, batch 2: M2SNetTrainer in bf16 (cpu_bf16) / U-Net in fp32" in out
        # the network really ran in bf16: it saved fewer bytes (norms, LossNet and the loss keep fp32: 0.80x here)
        bf16_mib = steps["tr_SpeedTable_M2SNet_cpu_bf16"]["activation_mib"]
        assert bf16_mib < 0.9 * steps["tr_M2SNetTrainer"]["activation_mib"]
    # the recipe's deeper mapping keeps the pyramid off the full resolution: far fewer saved activations
    assert steps["tr_M2SNetTrainer"]["activation_mib"] < 0.5 * steps["tr_SpeedTable_M2SNet_last4"]["activation_mib"]
    assert all(m["step_s"] > 0 and m["flops_per_step"] > 0 for m in steps.values())
    # inside nnU-Net's predictor (random BatchNorm statistics calibrated, or fp16 logits overflow); where the CPU
    # computes bf16 natively, also both networks in bf16; M2SNet also as up to 0.9.0, with PyTorch's own kernels and
    # with a filter pass per subtraction-unit input
    expected = {"U-Net", "Res2Net-50 M2SNet", "M2SNet on the plans encoder",
                "M2SNet on the plans encoder, PyTorch's kernels",
                "M2SNet on the plans encoder, a filter pass per input"}
    if cpu_computes_bf16():
        expected |= {"U-Net in bf16", "M2SNet on the plans encoder, bf16 prediction"}
        assert "M2SNet on the plans encoder, bf16 prediction / U-Net in bf16" in out
    assert set(data["predictor_128"]) == expected
    assert set(data["predictor_3d_hippo"]) == expected - {"Res2Net-50 M2SNet"}  # a 2D encoder
    # the first call of each network, apart from the median: it holds the compile time of a compiled one
    assert set(data["predictor_128_first_call"]) == expected
    assert all(t > 0 for t in data["predictor_128_first_call"].values())
    assert "predictor_3d_hippo, s of the first call" in out
    assert "inference 128x128 with TTA in nnU-Net's predictor: Res2Net-50 M2SNet / U-Net" in out
    # --profile: the top ops of one predictor call per network, kept in the file and in the report
    assert set(data["predictor_3d_hippo_profile"]) == set(data["predictor_3d_hippo"])
    assert any("convolution" in op[0] for op in data["predictor_3d_hippo_profile"]["M2SNet on the plans encoder"])
    assert "### Profile: predictor_128, U-Net (one image with TTA" in out
    assert ("inference 40x56x40 with TTA in nnU-Net's predictor: M2SNet, oneDNN inference convolutions / "
            "PyTorch's kernels (the speed-up)") in out
    assert ("inference 40x56x40 with TTA in nnU-Net's predictor: M2SNet, one filter pass for both inputs of a unit / "
            "a pass per input (the speed-up)") in out
    # what produced the numbers: the commit and versions, no local path
    assert data["provenance"]["m2s_nnunet"] and "git_dirty" in data["provenance"]
    assert "bf16 native" in data["device"] or "bf16 emulated" in data["device"]


def test_compiled_predictor_rows_leave_out_the_kernel_switch(monkeypatch):
    """Compiled, inductor picks the kernels of every network: the oneDNN-off M2SNet row would time the same graph."""
    monkeypatch.syspath_prepend(str(BENCH))
    import speed_table

    eager, compiled = speed_table.predictor_networks(True, 3), speed_table.predictor_networks(True, 3, compiled=True)
    assert set(eager) - set(compiled) == {speed_table.TORCH_KERNELS_LABEL, speed_table.PASS_PER_INPUT_LABEL}


def test_freezing_needs_a_compiled_run(monkeypatch):
    """--freezing changes how networks compile, so alone it would time nothing different: refused, with the fix."""
    monkeypatch.syspath_prepend(str(BENCH))
    import speed_table

    with pytest.raises(SystemExit):
        speed_table.parse_args(["--cases", "predictor", "--freezing"])
    assert speed_table.parse_args(["--cases", "predictor", "--eager-and-compiled", "--freezing"]).freezing


def test_eager_and_compiled_predictor_rows(monkeypatch):
    """--eager-and-compiled: each network beside its compiled self (switched-off M2SNets eager only), and rows for
    what compiling gives each network and for both networks compiled."""
    monkeypatch.syspath_prepend(str(BENCH))
    import speed_table

    networks = speed_table.predictor_networks(True, 2, eager_and_compiled=True)
    eager = speed_table.predictor_networks(True, 2)
    assert set(networks) == set(eager) | {f"{label} (compiled)" for label in eager
                                          if label not in speed_table.SWITCH_LABELS}
    assert networks["U-Net in bf16 (compiled)"] == "unet+bf16+compiled"
    times = {"U-Net": 2.0, "U-Net (compiled)": 1.0, "M2SNet on the plans encoder": 4.0,
             "M2SNet on the plans encoder (compiled)": 0.5, speed_table.BF16_LABEL: 1.0,
             f"{speed_table.BF16_LABEL} (compiled)": 0.25}
    rows = dict((label.split(": ", 1)[1], ratio) for label, ratio, _ in speed_table.compiled_predictor_rows("w", times))
    assert rows["U-Net, compiled / eager (the compile speed-up)"] == 2.0
    assert rows["M2SNet on the plans encoder, compiled / eager (the compile speed-up)"] == 8.0
    assert rows[f"{speed_table.BF16_LABEL}, compiled / U-Net (fp32, eager: nnU-Net's default)"] == 8.0
    both = [r for label, r, _ in speed_table.compiled_predictor_rows("w", times) if "both compiled" in label]
    assert both == [2.0]  # M2SNet 0.5 s against the U-Net's 1.0 s, both compiled
    assert speed_table.compiled_predictor_rows("w", {"U-Net": 1.0}) == []  # nothing compiled: no rows


def test_pass_per_input_switch_filters_each_input_separately(monkeypatch):
    """The 0.9.0 path of the predictor rows: the same values, two filter passes per unit instead of one."""
    monkeypatch.syspath_prepend(str(BENCH))
    import speed_table

    from m2s_nnunet.network.blocks import MultiScaleFilters

    filters = MultiScaleFilters(4, dim=2, norm="instance").eval()
    batches = []  # the batch of every F3 pass
    f3_pass = filters.f3.from_channel_sum
    filters.f3.from_channel_sum = lambda channel_sum: batches.append(len(channel_sum)) or f3_pass(channel_sum)
    a, b = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        one_pass = filters.pair_responses(a, b)
        speed_table.filter_each_input_separately(filters)
        per_input = filters.pair_responses(a, b)
    assert batches == [2, 1, 1]  # both inputs in one pass, then a pass for each
    assert all(torch.equal(x, y) for pair in zip(one_pass, per_input) for x, y in zip(*pair))


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
                     "--only", "fixed filters: fast path vs plain convolution",
                     "subtraction unit: fused paths vs separate filters", "LossNet under autocast",
                     "training steps under autocast", "memory model vs max_memory_allocated", "DDP", timeout=600)
    report = (tmp_path / "g.md").read_text()
    assert "Traceback" not in report, report
    assert "all finite: **True**" in report
    # the fused paths (one pass for both inputs without gradients, one channel sum per input with them) equal the
    # separate filter calls: 2D/3D, both norms, both paths
    assert report.count("| False | 0 | - | True |") == 4  # prediction: no gradient
    training = re.findall(r"\| pass per input, compact backward \(training\) \| bfloat16 \| False \| 0 \| (\S+) "
                          r"\((\S+)\) \| True \|", report)
    assert len(training) == report.count("| one pass (prediction) | bfloat16 |") == 4
    # the compact backward's input gradient against autograd's through the separate calls, to bf16 rounding
    assert all(float(error) <= 1e-2 * float(largest) and float(largest) > 0 for error, largest in training)
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
    for bench in ([], ["BENCH=nosuch"], ["BENCH=benchlib"], ["BENCH=steplib"]):
        proc = subprocess.run([*make, *bench], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "usage: make bench BENCH=NAME" in proc.stderr
        assert ("accuracy bench_network gpu_check plot_curves profile_step readme_table results_tables "
                "speed_table") in proc.stderr


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


# ---- accuracy.py --score-at (learning curves from one run) and the provenance of its reports (issue 23) ----
def test_accuracy_score_at_refuses_points_the_schedule_never_reaches(monkeypatch, capsys, tmp_path):
    """Each point must be a multiple of --iters within --epochs x --iters: refused (exit 2, naming the value)
    while parsing the arguments, before anything trains."""
    monkeypatch.syspath_prepend(str(BENCH))
    import accuracy

    base = ["busi", "--epochs", "4", "--iters", "50", "--work-dir", str(tmp_path)]
    for points, message in ((["100", "175"], "--score-at 175: not a positive multiple of --iters (50)"),
                            (["0"], "--score-at 0: not a positive multiple"),
                            (["250"], "--score-at 250: beyond the schedule of --epochs x --iters = 4 x 50 = 200"),
                            (["100", "--no-test"], "--score-at scores the test sets: it cannot go with --no-test")):
        with pytest.raises(SystemExit) as exit_info:
            accuracy.parse_args([*base, "--score-at", *points])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    args = accuracy.parse_args([*base, "--score-at", "200", "50", "100", "50"])
    assert args.score_at == [50, 100, 200]  # sorted, duplicates dropped
    assert accuracy.parse_args(base).score_at is None
    # an equal-time run (here 120 iterations per epoch) is scored after the same epochs as the baseline
    assert accuracy.score_points(args, 120) == {50: 120, 100: 240, 200: 480}
    env = accuracy.make_env(args)
    assert env["M2S_BENCH_SCORE_AT"] == "50,100,200"
    assert accuracy.make_env(accuracy.parse_args(base))["M2S_BENCH_SCORE_AT"] == ""


def test_schedule_mixin_saves_checkpoints_at_the_score_points(monkeypatch, tmp_path):
    """checkpoint_it<N>.pth through the trainer's own save_checkpoint once N iterations are done, counted from the
    start of the run (a resumed run too), saved before nnU-Net advances current_epoch, as its own checkpoints."""
    monkeypatch.syspath_prepend(str(BENCH / "trainers"))
    import accuracy_trainers as at

    monkeypatch.setenv(at.EPOCHS_ENV, "4")
    monkeypatch.setenv(at.ITERS_ENV, "5")
    monkeypatch.setenv(at.SCORE_AT_ENV, "20,10")
    saved = []

    class FakeTrainer:  # the parts of nnUNetTrainer the mixin touches
        def __init__(self, plans, configuration, fold, dataset_json, device):
            self.output_folder, self.local_rank, self.batch_size, self.device = str(tmp_path), 0, 4, "cpu"
            self.current_epoch = 0

        def on_epoch_start(self):
            pass

        def on_epoch_end(self):
            self.current_epoch += 1

        def on_train_end(self):
            pass

        def save_checkpoint(self, filename):
            saved.append((Path(filename).name, self.current_epoch))
            assert Path(filename).parent == tmp_path

    class Scheduled(at.ScheduleMixin, FakeTrainer):
        pass

    trainer = Scheduled({}, "2d", 0, {}, None)
    assert trainer.bench_score_at == [10, 20]
    for _ in range(4):
        trainer.on_epoch_start()
        trainer.on_epoch_end()
    assert saved == [("checkpoint_it10.pth", 1), ("checkpoint_it20.pth", 3)]
    trainer.on_train_end()
    assert json.loads((tmp_path / "bench.json").read_text())["score_at"] == [10, 20]

    saved.clear()
    resumed = Scheduled({}, "2d", 0, {}, None)
    resumed.current_epoch = 2  # nnU-Net's --c restores it from the checkpoint
    for _ in range(2):
        resumed.on_epoch_start()
        resumed.on_epoch_end()
    assert saved == [("checkpoint_it20.pth", 3)]

    monkeypatch.setenv(at.SCORE_AT_ENV, "12")  # not at the end of an epoch: the run would never save it
    with pytest.raises(ValueError, match="never reached|not reached"):
        Scheduled({}, "2d", 0, {}, None)


def _made_up_curve_results(cases: list[str], points: dict[int, float]) -> dict[str, list[dict]]:
    """Two models, two seeds; both learn (+0.001 per iteration) and at each score point the second is ``points[n]``
    better on every case."""
    def run(model, seed, better):
        def tests(n):
            offset = n / 1000 + better * points[n] - 0.1
            return {"busi": {"per_case": {c: 0.4 + 0.02 * i + offset + 0.01 * seed for i, c in enumerate(cases)},
                             "nnunet_dice": 0.6, "predict_s": 10.0}}

        bench = {"iterations": 300, "batch_size": 12, "seconds_per_iteration": 4.0, "train_seconds": 1200.0}
        return {"model": model, "seed": seed, "bench": bench, "val_dice": 0.6, "tests": tests(300),
                "points": {str(n): {"iterations": n, "tests": tests(n)} for n in points}}

    return {"nnUNetTrainer_bench": [run("nnUNetTrainer_bench", s, 0) for s in (0, 1)],
            "M2SNetTrainer_scratch_bench": [run("M2SNetTrainer_scratch_bench", s, 1) for s in (0, 1)]}


def test_accuracy_table_shows_each_score_point(monkeypatch):
    """render() with --score-at: the final table as before, then one block of rows per point, each paired against
    the first model at that point, and the note that the learning-rate schedule is the longest budget's."""
    monkeypatch.syspath_prepend(str(BENCH))
    import accuracy

    cases = [f"c{i}" for i in range(12)]
    results = _made_up_curve_results(cases, {100: 0.03, 200: 0.05, 300: 0.08})
    common = ["busi", "--models", "nnUNetTrainer_bench", "M2SNetTrainer_scratch_bench", "--seeds", "0", "1",
              "--epochs", "6", "--iters", "50"]
    plain = accuracy.render(accuracy.parse_args(common), results, ["busi"])
    md = accuracy.render(accuracy.parse_args([*common, "--score-at", "100", "200", "300"]), results, ["busi"])
    assert md.startswith(plain) and "Score points" not in plain  # without --score-at: the table of before
    curve = md[len(plain):]
    assert "## Score points: 100, 200, 300 iterations" in curve
    assert "learning-rate schedule: that of the longest budget (6 epochs x 50 iterations = 300)" in curve
    rows = [line for line in curve.splitlines() if line.startswith("| ") and "score point" not in line]
    assert [row.split(" | ")[:3] for row in rows] == [
        [f"| {n}", model, str(n)] for n in (100, 200, 300)
        for model in ("nnUNetTrainer_bench", "M2SNetTrainer_scratch_bench")]
    for row, diff in zip(rows[1::2], ("+0.030 [", "+0.050 [", "+0.080 [")):
        assert diff in row and "0.000488" in row  # every case better: exact two-sided Wilcoxon p of 12
    assert "| 0.510 / 0.520 |" in rows[0]  # each seed's mean at the first point


def test_accuracy_report_records_provenance_without_paths(monkeypatch, tmp_path):
    """The JSON report names the commit, the versions and each model's settings record (issue 14), and no local
    folder, since it is committed to bench/results/."""
    monkeypatch.syspath_prepend(str(BENCH))
    import accuracy

    from m2s_nnunet.settings import M2SNetSettings, make_record

    record = make_record(M2SNetSettings(dim=2, encoder="plans", side_heads=True), "M2SNetTrainer_scratch_bench")
    configuration = {"patch_size": [128, 128], "architecture": {"network_class_name": "m2s.Net", "arch_kwargs": {}}}
    folders = {}
    for trainer, block in (("nnUNetTrainer_bench", {}), ("M2SNetTrainer_scratch_bench", {"trained_with": record})):
        folder = tmp_path / "private" / f"{trainer}__BenchPlans__2d"
        folder.mkdir(parents=True)
        config = {**configuration, **({"m2snet": {"schema_version": 1, **block}} if block else {})}
        plans = {"plans_name": "BenchPlans", "configurations": {"2d": config}}
        (folder / "plans.json").write_text(json.dumps(plans))
        folders[trainer] = accuracy.model_record(folder, accuracy.parse_model(trainer), "2d")
    unet, m2s = folders["nnUNetTrainer_bench"], folders["M2SNetTrainer_scratch_bench"]
    assert unet == {"trainer": "nnUNetTrainer_bench", "plans": "BenchPlans", "configuration": "2d",
                    "trained_with": None, "network_class": "m2s.Net"}
    assert m2s["trained_with"]["trainer"] == "M2SNetTrainer_scratch_bench"
    assert m2s["trained_with"]["settings"]["side_heads"] is True
    assert accuracy.model_record(tmp_path / "missing", accuracy.parse_model("nnUNetTrainer_bench"),
                                 "2d")["trained_with"] is None

    monkeypatch.setenv("M2S_NNUNET_CPU_ONEDNN", "0")
    monkeypatch.setenv("M2S_NNUNET_WEIGHTS_DIR", str(tmp_path / "private" / "weights"))  # a path: never recorded
    source = accuracy.provenance()
    assert source["environment"]["M2S_NNUNET_CPU_ONEDNN"] == "0"
    assert "M2S_NNUNET_WEIGHTS_DIR" not in source["environment"]
    import m2s_nnunet

    assert source["m2s_nnunet"] == m2s_nnunet.__version__ and source["nnunetv2"] and source["torch"]
    if (REPO / ".git").exists():
        assert len(source["git_commit"]) == 40 and isinstance(source["git_dirty"], bool)
    assert accuracy.git_state(tmp_path) == {"git_commit": None, "git_dirty": None}  # not a repository
    args = accuracy.parse_args(["busi", "--score-at", "150", "--work-dir", str(tmp_path / "private" / "work")])
    report = json.dumps({"args": accuracy.recorded_arguments(args), "provenance": source,
                         "results": {"M2SNetTrainer_scratch_bench": [{"model_record": m2s}]}}, default=str)
    assert str(tmp_path) not in report and str(REPO) not in report


def test_accuracy_run_model_predicts_each_score_point_from_its_checkpoint(monkeypatch, tmp_path):
    """run_model with --score-at, nnU-Net's commands and the scoring replaced: each early point is predicted with
    ``-chk checkpoint_it<N>.pth`` into its own folder, the last point reuses the final model's predictions, finished
    work is reused, and a finished training without a point's checkpoint is trained again."""
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.syspath_prepend(str(BENCH / "trainers"))
    import accuracy
    import pandas as pd

    import m2s_nnunet.evaluation
    import m2s_nnunet.nnunet_env

    calls = []

    def fake_nnunet(name, argv, env, log=None, quiet=False):
        calls.append((name, argv))
        if name == "nnUNetv2_train":
            fold = Path(env["nnUNet_results"]) / "Dataset613_AccBusi" / "nnUNetTrainer_bench__BenchPlans__2d" / "fold_0"
            (fold / "validation").mkdir(parents=True, exist_ok=True)
            for file in ("checkpoint_final.pth", "checkpoint_it50.pth", "checkpoint_it150.pth"):
                (fold / file).write_text("")
            (fold / "bench.json").write_text(json.dumps({"iterations": 150}))
            (fold / "validation" / "summary.json").write_text(json.dumps({"foreground_mean": {"Dice": 0.5}}))
        else:
            Path(argv[argv.index("-o") + 1]).mkdir(parents=True)

    def fake_scores(pred, labels, progress=True):
        dice = 0.3 if "it50" in str(pred) else 0.7
        return type("Scores", (), {"per_case": pd.DataFrame({"case": ["a", "b"], "dice": [dice, dice]}),
                                   "is_3d": False, "aggregate": pd.DataFrame({"nnU-Net Dice": [dice]})})()

    monkeypatch.setattr(m2s_nnunet.nnunet_env, "run_nnunet", fake_nnunet)
    monkeypatch.setattr(m2s_nnunet.evaluation, "evaluate_folder", fake_scores)
    args = accuracy.parse_args(["busi", "--models", "nnUNetTrainer_bench", "--score-at", "150", "50",
                                "--work-dir", str(tmp_path)])
    tests = {"busi": (tmp_path / "imagesTs", tmp_path / "labelsTs")}
    model = args.models[0]
    result = accuracy.run_model(args, model, 0, Path("Dataset613_AccBusi"), tests, tmp_path)
    assert [name for name, _ in calls] == ["nnUNetv2_train", "nnUNetv2_predict", "nnUNetv2_predict"]
    final, early = calls[1][1], calls[2][1]
    assert "-chk" not in final and final[final.index("-o") + 1].endswith("nnUNetTrainer_bench/busi")
    assert early[early.index("-chk") + 1] == "checkpoint_it50.pth"
    assert early[early.index("-o") + 1].endswith("nnUNetTrainer_bench/it50/busi")
    assert result["points"]["50"] == {"iterations": 50, "tests": {"busi": {
        "per_case": {"a": 0.3, "b": 0.3}, "nnunet_dice": 0.3, "predict_s": pytest.approx(0.0, abs=1.0)}}}
    assert result["points"]["150"]["tests"]["busi"]["per_case"] == result["tests"]["busi"]["per_case"] == {
        "a": 0.7, "b": 0.7}
    assert result["model_record"]["trainer"] == "nnUNetTrainer_bench"

    calls.clear()
    accuracy.run_model(args, model, 0, Path("Dataset613_AccBusi"), tests, tmp_path)
    assert calls == []  # everything finished before: reused
    fold = next(tmp_path.glob("runs/busi/*/seed0/Dataset613_AccBusi/*/fold_0"))
    (fold / "checkpoint_it50.pth").unlink()  # e.g. trained before --score-at existed
    accuracy.run_model(args, model, 0, Path("Dataset613_AccBusi"), tests, tmp_path)
    # trained again, and the earlier training's predictions are not reused
    assert [name for name, _ in calls] == ["nnUNetv2_train", "nnUNetv2_predict", "nnUNetv2_predict"]


def test_accuracy_predict_timing_times_the_first_case_alone_and_bf16_prediction(monkeypatch, tmp_path):
    """--predict-timing with nnU-Net's commands and the scoring replaced: per test set, nnUNetv2_predict on a folder
    holding only the first case (all its channel files) and on the whole set, afresh; for an M2SNet model on a CPU
    that computes bf16, the same with M2S_NNUNET_PREDICT_BF16=1, scored against the fp32 prediction too."""
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.syspath_prepend(str(BENCH / "trainers"))
    import accuracy
    import pandas as pd

    import m2s_nnunet.cpu_bf16
    import m2s_nnunet.evaluation
    import m2s_nnunet.nnunet_env

    images = tmp_path / "imagesTs"
    images.mkdir()
    (images / "0_notes.txt").write_text("")  # sorts first, but is no nnU-Net input
    for case in ("a", "b", "c"):
        for channel in range(3):
            (images / f"{case}_{channel:04d}.png").write_text("")
    monkeypatch.setenv("M2S_NNUNET_PREDICT_BF16", "1")  # left in the shell: the fp32 rows still run fp32
    calls = []

    def fake_nnunet(name, argv, env, log=None, quiet=False):
        inputs = Path(argv[argv.index("-i") + 1]) if "-i" in argv else None
        calls.append((name, sorted(f.name for f in inputs.iterdir()) if inputs else None,
                      env.get("M2S_NNUNET_PREDICT_BF16")))
        if name == "nnUNetv2_train":
            fold = Path(env["nnUNet_results"]) / "Dataset613_AccBusi" / "M2SNetTrainer_scratch_bench__BenchPlans__2d"
            (fold / "fold_0" / "validation").mkdir(parents=True, exist_ok=True)
            (fold / "fold_0" / "checkpoint_final.pth").write_text("")
            (fold / "fold_0" / "bench.json").write_text(json.dumps({"iterations": 150}))
            (fold / "fold_0" / "validation" / "summary.json").write_text(json.dumps({"foreground_mean": {"Dice": 0.5}}))
        else:
            Path(argv[argv.index("-o") + 1]).mkdir(parents=True)

    def fake_scores(pred, labels, progress=True):
        dice = 0.98 if "timing/fp32" in str(labels) else 0.7  # agreement with the fp32 prediction
        return type("Scores", (), {"per_case": pd.DataFrame({"case": ["a", "b", "c"], "dice": [dice] * 3}),
                                   "is_3d": False, "aggregate": pd.DataFrame({"nnU-Net Dice": [dice]})})()

    monkeypatch.setattr(m2s_nnunet.nnunet_env, "run_nnunet", fake_nnunet)
    monkeypatch.setattr(m2s_nnunet.evaluation, "evaluate_folder", fake_scores)
    monkeypatch.setattr(m2s_nnunet.cpu_bf16, "cpu_computes_bf16", lambda: True)
    args = accuracy.parse_args(["busi", "--models", "M2SNetTrainer_scratch_bench", "--predict-timing",
                                "--work-dir", str(tmp_path / "work")])
    tests = {"busi": (images, tmp_path / "labelsTs")}
    result = accuracy.run_model(args, args.models[0], 0, Path("Dataset613_AccBusi"), tests, tmp_path)
    first = ["a_0000.png", "a_0001.png", "a_0002.png"]
    every = sorted(f.name for f in images.iterdir())  # what the test set's own prediction reads
    assert calls == [("nnUNetv2_train", None, "0"), ("nnUNetv2_predict", every, "0"),  # the final model's scores
                     ("nnUNetv2_predict", first, "0"), ("nnUNetv2_predict", every, "0"),  # fp32, whatever the shell
                     ("nnUNetv2_predict", first, "1"), ("nnUNetv2_predict", every, "1")]
    timing = result["predict_timing"]
    assert set(timing) == {"fp32", "predict_bf16"} and timing["fp32"]["busi"]["cases"] == 3
    assert "dice_vs_fp32" not in timing["fp32"]["busi"] and timing["predict_bf16"]["busi"]["dice_vs_fp32"] == 0.98

    assert timing["fp32"]["busi"]["per_case_s"] == pytest.approx(
        (timing["fp32"]["busi"]["predict_s"] - timing["fp32"]["busi"]["first_case_s"]) / 2)
    result["bench"] = {"iterations": 150, "batch_size": 12, "seconds_per_iteration": 1.0, "train_seconds": 150.0}
    md = accuracy.render(args, {"M2SNetTrainer_scratch_bench": [result]}, ["busi"])
    assert "## nnUNetv2_predict per case (--predict-timing)" in md and "| predict_bf16 | busi | 3 |" in md

    # --predict-compiled: each variant again under nnUNet_compile=t (nnU-Net's predictor compiles the network)
    calls.clear()
    compiled_env = []

    def recording_nnunet(name, argv, env, log=None, quiet=False):
        compiled_env.append((env["M2S_NNUNET_PREDICT_BF16"], env.get("nnUNet_compile")))
        fake_nnunet(name, argv, env)

    monkeypatch.setattr(m2s_nnunet.nnunet_env, "run_nnunet", recording_nnunet)
    args = accuracy.parse_args(["busi", "--models", "M2SNetTrainer_scratch_bench", "--predict-timing",
                                "--predict-compiled", "--work-dir", str(tmp_path / "work")])
    result = accuracy.run_model(args, args.models[0], 0, Path("Dataset613_AccBusi"), tests, tmp_path)
    assert list(result["predict_timing"]) == ["fp32", "predict_bf16", "fp32_compiled", "predict_bf16_compiled"]
    assert compiled_env == [("0", "f"), ("0", "f"), ("1", "f"), ("1", "f"),  # the harness never compiles otherwise
                            ("0", "t"), ("0", "t"), ("1", "t"), ("1", "t")]
    with pytest.raises(SystemExit):
        accuracy.parse_args(["busi", "--predict-compiled"])  # no --predict-timing to add variants to
    result["bench"] = {"iterations": 150, "batch_size": 12, "seconds_per_iteration": 1.0, "train_seconds": 150.0}
    md = accuracy.render(args, {"M2SNetTrainer_scratch_bench": [result]}, ["busi"])
    assert "| predict_bf16_compiled | busi | 3 |" in md and "- *_compiled: the same with nnUNet_compile=t" in md


def test_plot_curves_draws_each_point_and_its_paired_difference(monkeypatch, tmp_path, capsys):
    """plot_curves.py: the differences it draws are the paired ones at each point (known here: +0.03, +0.05,
    +0.08), it writes a PNG, and it refuses a result file that has no score points."""
    monkeypatch.syspath_prepend(str(BENCH))
    import plot_curves

    cases = [f"c{i}" for i in range(12)]
    results = _made_up_curve_results(cases, {100: 0.03, 200: 0.05, 300: 0.08})
    data = {"args": {"dataset": "busi", "fold": "0", "epochs": "6", "iters": "50", "batch": "12"},
            "provenance": {"git_commit": "0123456789abcdef"}, "results": results}
    points = plot_curves.curve_points(data, "busi")
    assert [n for n, *_ in points] == [100, 200, 300]
    assert [round(other - base, 3) for _, base, other, *_ in points] == [0.03, 0.05, 0.08]
    assert [round(d, 3) for *_, d, _, _ in points] == [0.03, 0.05, 0.08]
    assert all(low <= d <= high for *_, d, low, high in points)
    source, png = tmp_path / "curve.json", tmp_path / "docs" / "curve.png"
    source.write_text(json.dumps(data))
    assert plot_curves.main([str(source), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    for runs in results.values():
        for r in runs:
            del r["points"]
    source.write_text(json.dumps(data))
    assert plot_curves.main([str(source), "--out", str(tmp_path / "none.png")]) == 2
    assert "no score points" in capsys.readouterr().err and not (tmp_path / "none.png").exists()


def test_accuracy_time_probe_trains_the_slower_model_only_at_the_baselines_time(monkeypatch, tmp_path):
    """--equal-time --time-probe E: every model after the first is timed by an E-epoch probe (trained only) and then
    trained once, for the baseline's minutes; its full schedule is never trained. The probe is kept in the report."""
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.syspath_prepend(str(BENCH / "trainers"))
    import accuracy

    base = ["hippocampus", "--epochs", "24", "--iters", "50", "--work-dir", str(tmp_path)]
    with pytest.raises(SystemExit):
        accuracy.parse_args([*base, "--time-probe", "1"])  # without --equal-time it would set nothing
    args = accuracy.parse_args([*base, "--equal-time", "--time-probe", "1", "--score-at", "150", "1200",
                                "--json", str(tmp_path / "r.json")])
    monkeypatch.setitem(accuracy.DATASETS, "hippocampus",  # no shared data needed: nothing is read
                        dataclasses.replace(accuracy.DATASETS["hippocampus"], images=tmp_path))
    monkeypatch.setattr(accuracy, "parse_args", lambda argv=None: args)
    monkeypatch.setattr(accuracy, "prepare", lambda args, logs: (tmp_path / "Dataset", {}))
    trained = []

    def fake_run_model(a, model, seed, dataset, tests, logs, iters=None):
        iters = iters or a.iters
        trained.append((model.label, a.epochs, iters, a.no_test, a.score_at))
        per_iteration = 1.0 if model.trainer == "nnUNetTrainer_bench" else 4.0
        return {"model": model.label, "seed": seed, "val_dice": 0.5, "tests": {},
                "bench": {"iterations": a.epochs * iters, "batch_size": 2, "seconds_per_iteration": per_iteration,
                          "train_seconds": per_iteration * a.epochs * iters}}

    monkeypatch.setattr(accuracy, "run_model", fake_run_model)
    monkeypatch.setattr(accuracy, "provenance", lambda: {})
    assert accuracy.main() == 0
    assert trained == [("nnUNetTrainer_bench", 24, 50, False, [150, 1200]),
                       ("M2SNetTrainer_scratch_bench", 1, 50, True, None),  # the probe: one epoch, no test
                       ("M2SNetTrainer_scratch_bench", 24, 12, False, [150, 1200])]  # 1200 s / 4 s / 24 epochs
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["results"]) == ["nnUNetTrainer_bench", "M2SNetTrainer_scratch_bench (equal time)"]
    assert report["time_probes"]["M2SNetTrainer_scratch_bench"][0]["bench"]["iterations"] == 50


def test_compiled_3d_training_rows(monkeypatch):
    """--eager-and-compiled in 3D training: each compile speed-up, both compiled, and compiled M2SNet against the
    eager U-Net, from the step times of one run."""
    monkeypatch.syspath_prepend(str(BENCH))
    import speed_table

    tr, bf16 = speed_table.DEFAULT_3D, speed_table.BF16_3D
    c = speed_table.COMPILED_SUFFIX
    steps = {k: {"step_s": v} for k, v in {"unet": 1.0, f"tr_{tr}": 2.0, f"tr_{bf16}": 1.5, f"unet{c}": 0.8,
                                            f"tr_{tr}{c}": 1.6, f"tr_{bf16}{c}": 1.0}.items()}
    rows = {label: r for label, r, _ in speed_table.compiled_training_rows("3D", steps, [tr, bf16])}
    assert rows["3D: U-Net, compiled / eager (the compile speed-up)"] == pytest.approx(1.25)
    assert rows["3D: M2SNetTrainer (recipe + LossNet), compiled / eager (the compile speed-up)"] == pytest.approx(1.25)
    assert rows["3D: M2SNetTrainer in bf16 (cpu_bf16), compiled / eager (the compile speed-up)"] == pytest.approx(1.5)
    assert rows["3D, both compiled: M2SNetTrainer (recipe + LossNet) / U-Net"] == pytest.approx(0.5)
    assert rows["3D: M2SNetTrainer in bf16 (cpu_bf16), compiled / U-Net (eager)"] == pytest.approx(1.0)
    uncompiled = {k: v for k, v in steps.items() if not k.endswith(c)}
    assert speed_table.compiled_training_rows("3D", uncompiled, [tr, bf16]) == []


def test_compiled_2d_training_rows_name_the_paper_model(monkeypatch):
    """--eager-and-compiled in 2D training: the paper model with and without LossNet, under their own labels."""
    monkeypatch.syspath_prepend(str(BENCH))
    import speed_table

    paper, bare = speed_table.PAPER, speed_table.PAPER_NO_LOSSNET
    c = speed_table.COMPILED_SUFFIX
    steps = {k: {"step_s": v} for k, v in {"unet": 1.0, f"tr_{paper}": 2.0, f"tr_{bare}": 0.9, f"unet{c}": 0.5,
                                            f"tr_{paper}{c}": 1.6, f"tr_{bare}{c}": 0.6}.items()}
    rows = {label: r for label, r, _ in speed_table.compiled_training_rows(
        "2D", steps, [paper, bare], speed_table.training_2d_label)}
    assert rows["2D: Res2Net-50 M2SNet + LossNet, compiled / eager (the compile speed-up)"] == pytest.approx(1.25)
    assert rows["2D, both compiled: Res2Net-50 M2SNet without LossNet / U-Net"] == pytest.approx(0.5 / 0.6)
    assert rows["2D: Res2Net-50 M2SNet + LossNet, compiled / U-Net (eager)"] == pytest.approx(1.0 / 1.6)
    assert len(rows) == 7
