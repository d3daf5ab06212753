"""Accuracy harness: train models on the same data, plans, fold and schedule; score a fixed held-out list.

For one dataset of ``../shared/data`` (``kvasir``, ``busi``, ``covid``, ``hippocampus``) it

1. converts it into an nnU-Net raw dataset (2D images resized to 128x128 as in the polyp protocol of
   issue 9), with the fixed held-out list of ``bench/heldout/`` in ``imagesTs`` (never trained or tuned on);
   for ``kvasir`` also CVC-ClinicDB (``heldout/clinicdb.txt``) as an unseen-centre test set;
2. runs ``nnUNetv2_plan_and_preprocess`` (``2d``; ``3d_fullres`` for hippocampus) and, with a ``@resencm``
   model, ``nnUNetv2_plan_experiment -pl nnUNetPlannerResEncM``;
3. writes bench plans (``BenchPlans``, ``BenchResEncMPlans``): nnU-Net's plans with only ``plans_name`` and
   the batch size changed (``--batch``, default 12 in 2D: on 2 CPU cores more, smaller steps learn more per
   minute; every model gets the same batch, the ResEnc-M one included);
4. trains fold 0 (``--fold``) of every model and seed with one schedule (``--epochs`` x ``--iters``; the trainers of
   ``bench/trainers/accuracy_trainers.py`` read it from the environment), predicts each test set with
   nnU-Net's default test-time mirroring, and scores it with ``m2s_nnunet.evaluation``; with ``--equal-time``
   it then trains every other model again for the first model's training time (equal wall time);
5. prints one table: per model the schedule, time per iteration, fold-0 validation Dice (the only number
   used to choose between ablation rows) and, per test set, the mean per-case Dice with the paired difference
   to the first model (bootstrap 95 % CI, Wilcoxon p, ``m2s_nnunet.summary.paired_stats``); with several seeds,
   each seed's mean too, which is the replicate noise.

With ``--score-at N [N ...]`` every run also saves a checkpoint when it has trained N iterations
(``checkpoint_it<N>.pth``; each N a multiple of ``--iters`` up to ``--epochs`` x ``--iters``), predicts each test
set from it and adds a learning-curve table: per score point the same columns and paired differences as for the
final model. The points are snapshots of one run, so their learning-rate schedule is that of the longest budget,
not that of a run trained for N iterations. ``--equal-time`` rows are scored after the same epochs.

``--equal-time --time-probe E`` measures the speed of every model after the first from a short run of E epochs
instead of its full schedule, which is then not trained: the only way a slower model reaches the baseline's
minutes of a long 3D curve within one session. The probe's first iterations include warm-up, so it can only
under-state a model's speed (fewer matched iterations, never more). The probes go into the report's
``time_probes``.

The ``--json`` report records, beside the arguments and the per-case scores, the git commit (and whether the tree
had uncommitted changes), the package versions and, per run, the settings record the trainer saved with the model
(``model_record``; for nnU-Net's own trainers the trainer, plans and network class). No local path goes into it.

Per-case Dice: 2D the polyp-benchmark mDice (an empty prediction of an empty mask counts 1); 3D nnU-Net's
Dice averaged over the foreground labels. Finished trainings and predictions are reused.

    python bench/accuracy.py kvasir --models nnUNetTrainer_bench M2SNetTrainer_scratch_bench \\
        nnUNetTrainer_bench@resencm --epochs 3 --iters 50 --seeds 0 1 --out bench/out/acc_kvasir.md
    python bench/accuracy.py kvasir --models nnUNetTrainer_bench M2SNetTrainer_scratch_bench --equal-time \\
        --epochs 6 --iters 25
    python bench/accuracy.py kvasir --epochs 24 --iters 50 --score-at 150 300 600 1200 --json bench/out/curve.json
    python bench/accuracy.py kvasir --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TRAINER_DIR = BENCH / "trainers"
HELDOUT = BENCH / "heldout"
SHARED = REPO.parent / "shared" / "data"
RECORDED_SWITCHES = ("M2S_NNUNET_CPU_BF16", "M2S_NNUNET_CPU_ONEDNN", "M2S_NNUNET_LOSSNET_BF16",
                     "M2S_NNUNET_PREDICT_BF16", "TORCHINDUCTOR_FREEZING")
PLANS = {"default": ("nnUNetPlans", "BenchPlans"), "resencm": ("nnUNetResEncUNetMPlans", "BenchResEncMPlans")}


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of ``../shared/data`` and how the harness converts it."""

    key: str
    dataset_id: int
    images: Path
    masks: Path
    heldout: Path
    configuration: str = "2d"
    resize: tuple[int, int] | None = (128, 128)
    modality: str | None = None
    extra_test: tuple[str, Path, Path, Path] | None = None  # name, images, masks, case list


DATASETS = {
    "kvasir": DatasetSpec("kvasir", 611, SHARED / "polyp/Kvasir-SEG-train/images",
                          SHARED / "polyp/Kvasir-SEG-train/masks", HELDOUT / "kvasir.txt",
                          extra_test=("clinicdb", SHARED / "polyp/CVC-ClinicDB-train/images",
                                      SHARED / "polyp/CVC-ClinicDB-train/masks", HELDOUT / "clinicdb.txt")),
    "busi": DatasetSpec("busi", 613, SHARED / "ultrasound/BUSI-train/images", SHARED / "ultrasound/BUSI-train/masks",
                        HELDOUT / "busi.txt"),
    "covid": DatasetSpec("covid", 614, SHARED / "ct/COVID-SemiSeg-train/images",
                         SHARED / "ct/COVID-SemiSeg-train/masks", HELDOUT / "covid.txt"),
    "hippocampus": DatasetSpec("hippocampus", 615, SHARED / "mri3d/Hippocampus-train/imagesTr",
                               SHARED / "mri3d/Hippocampus-train/labelsTr", HELDOUT / "hippocampus.txt",
                               configuration="3d_fullres", resize=None, modality="MRI"),
}


@dataclass(frozen=True)
class Model:
    trainer: str
    plans_key: str  # "default" or "resencm"

    @property
    def label(self) -> str:
        return self.trainer if self.plans_key == "default" else f"{self.trainer}@{self.plans_key}"


def parse_model(text: str) -> Model:
    trainer, _, plans = text.partition("@")
    plans = plans or "default"
    if plans not in PLANS:
        raise argparse.ArgumentTypeError(f"unknown plans '{plans}' in '{text}': use {', '.join(PLANS)}")
    return Model(trainer, plans)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("--models", nargs="+", type=parse_model,
                   default=[parse_model("nnUNetTrainer_bench"), parse_model("M2SNetTrainer_scratch_bench")],
                   help="TRAINER or TRAINER@resencm (nnU-Net's ResEnc-M plans); the first is the baseline of the "
                        "paired tests (default: nnUNetTrainer_bench M2SNetTrainer_scratch_bench)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="replicates (default: 0)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--iters", type=int, default=50, help="training iterations per epoch (default: %(default)s)")
    p.add_argument("--val-iters", type=int, default=5, help="pseudo-validation iterations per epoch")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size of every model (default: 12 in 2D, the plans' own in 3D; never above the plans')")
    p.add_argument("--val-tta", action="store_true",
                   help="mirroring in nnU-Net's final fold-0 validation too (default off: 2x faster; test "
                        "predictions always use it)")
    p.add_argument("--no-test", action="store_true", help="train and validate only (ablation screening)")
    p.add_argument("--fold", type=int, default=0, help="cross-validation fold to train and validate (default 0); "
                   "held-out predictions use this fold's model")
    p.add_argument("--equal-time", action="store_true",
                   help="also train every other model for the baseline's training time: its iterations per epoch "
                        "scaled by the measured speed ratio, each model's fastest run counting (rows marked "
                        "'equal time')")
    p.add_argument("--time-probe", type=int, default=None, metavar="EPOCHS",
                   help="with --equal-time: measure every other model's speed from EPOCHS epochs of --iters "
                        "iterations, not from its full schedule, and train it only at the baseline's time")
    p.add_argument("--score-at", nargs="+", type=int, default=None, metavar="N",
                   help="also score the test sets after N training iterations of the same runs (multiples of "
                        "--iters, at most --epochs x --iters; the learning-rate schedule is that of the full run)")
    p.add_argument("--predict-timing", action="store_true",
                   help="also time nnUNetv2_predict per case in steady state on every test set (a fresh prediction of "
                        "the set and of its first case alone; the difference excludes process start and model "
                        "load) and, for M2SNet models on CPUs that compute bf16 natively, the same with "
                        "M2S_NNUNET_PREDICT_BF16=1, scored against the labels and against the fp32 prediction")
    p.add_argument("--predict-compiled", action="store_true",
                   help="with --predict-timing: each variant also with nnUNet_compile=t (nnU-Net's predictor then "
                        "compiles the network; the first case alone then includes the compile time)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--work-dir", type=Path, default=BENCH / "out" / "accuracy_work")
    p.add_argument("--dry-run", action="store_true", help="check inputs and print the plan; train nothing")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    p.add_argument("--json", type=Path, default=None, help="write every number (per case too) here")
    args = p.parse_args(argv)
    spec = DATASETS[args.dataset]
    if args.batch is None:
        args.batch = 12 if spec.configuration == "2d" else 0  # 0: the plans' own
    if min(args.epochs, args.iters) < 1:
        p.error("--epochs and --iters must be >= 1")
    if args.score_at is not None:
        check_score_points(p, args)
    if args.time_probe is not None and (not args.equal_time or args.time_probe < 1):
        p.error("--time-probe needs --equal-time and at least 1 epoch: it only sets the equal-time iterations")
    if args.predict_compiled and not args.predict_timing:
        p.error("--predict-compiled adds variants to --predict-timing: give both")
    return args


def check_score_points(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a score point the schedule never reaches before anything trains: the trainer saves a point's
    checkpoint at the end of an epoch, so the run would end without it hours later."""
    total = args.epochs * args.iters
    if args.no_test:
        p.error("--score-at scores the test sets: it cannot go with --no-test")
    for n in args.score_at:
        if n < 1 or n % args.iters:
            p.error(f"--score-at {n}: not a positive multiple of --iters ({args.iters}); checkpoints are saved at the "
                    "end of an epoch")
        if n > total:
            p.error(f"--score-at {n}: beyond the schedule of --epochs x --iters = {args.epochs} x {args.iters} = "
                    f"{total} iterations")
    args.score_at = sorted(set(args.score_at))


def score_points(args: argparse.Namespace, iters: int | None = None) -> dict[int, int]:
    """{score point: iterations a run with ``iters`` per epoch has trained there}. A point is a number of epochs,
    so an equal-time run (other iterations per epoch) is scored after as many epochs as the baseline."""
    iters = iters or args.iters
    return {n: n // args.iters * iters for n in (getattr(args, "score_at", None) or [])}


def schedule_tag(args: argparse.Namespace, iters: int | None = None) -> str:
    return f"e{args.epochs}x{iters or args.iters}_b{args.batch or 'plans'}"


def make_env(args: argparse.Namespace, seed: int | None = None, iters: int | None = None) -> dict[str, str]:
    from m2s_nnunet.cpu_bf16 import PREDICT_ENV
    from m2s_nnunet.nnunet_env import work_env

    env = work_env(args.work_dir)
    if seed is not None:  # one results folder per schedule and seed: nnU-Net names model folders without either
        results = args.work_dir / "runs" / args.dataset / schedule_tag(args, iters) / f"seed{seed}"
        results.mkdir(parents=True, exist_ok=True)
        env["nnUNet_results"] = str(results)
    env["nnUNet_extTrainer"] = env["nnUNet_extTrainer"] + os.pathsep + str(TRAINER_DIR)
    env[PREDICT_ENV] = "0"  # held-out scores are fp32 predictions, whatever the shell says (--predict-timing adds bf16)
    env.update({"M2S_BENCH_EPOCHS": str(args.epochs), "M2S_BENCH_ITERS": str(iters or args.iters),
                "M2S_BENCH_VAL_ITERS": str(args.val_iters), "M2S_BENCH_SEED": str(seed or 0),
                "M2S_BENCH_VAL_TTA": "1" if args.val_tta else "0",
                "M2S_BENCH_SCORE_AT": ",".join(str(n) for n in score_points(args, iters).values())})
    return env


def _convert(spec_images: Path, spec_masks: Path, dataset_id: int, name: str, test_list: Path, raw: Path,
             resize, modality) -> Path:
    from m2s_nnunet.conversion import ConvertOptions, convert

    opts = ConvertOptions(images=spec_images, masks=spec_masks, dataset_id=dataset_id, name=name, out=raw,
                          resize=resize, test_list=test_list, folds=5, modality=modality, progress=False)
    report = convert(opts)
    for warning in report.warnings:
        print(f"  note: {warning}")
    return report.dataset_dir


def prepare(args: argparse.Namespace, logs: Path) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """Raw dataset, plans and bench plans; returns the dataset folder and the test sets {name: (images, labels)}."""
    from m2s_nnunet.nnunet_env import run_nnunet

    spec = DATASETS[args.dataset]
    env = make_env(args)
    raw = Path(env["nnUNet_raw"])
    name = f"Acc{spec.key.capitalize()}"
    dataset = raw / f"Dataset{spec.dataset_id:03d}_{name}"
    if not (dataset / "dataset.json").is_file():
        print(f"[prepare] converting {spec.images} (held out: {spec.heldout.name})")
        _convert(spec.images, spec.masks, spec.dataset_id, name, spec.heldout, raw, spec.resize, spec.modality)
    tests = {spec.key: (dataset / "imagesTs", dataset / "labelsTs")}
    if spec.extra_test:
        extra_name, images, masks, cases = spec.extra_test
        extra = raw / f"Dataset{spec.dataset_id + 1:03d}_AccTest{extra_name.capitalize()}"
        if not (extra / "dataset.json").is_file():
            print(f"[prepare] converting the unseen-centre test set {images} ({cases.name})")
            _convert(images, masks, spec.dataset_id + 1, f"AccTest{extra_name.capitalize()}", cases, raw,
                     spec.resize, spec.modality)
        tests[extra_name] = (extra / "imagesTs", extra / "labelsTs")
    pre = Path(env["nnUNet_preprocessed"]) / dataset.name
    if not (pre / "nnUNetPlans.json").is_file():
        print(f"[prepare] nnUNetv2_plan_and_preprocess -c {spec.configuration}")
        run_nnunet("nnUNetv2_plan_and_preprocess",
                   ["-d", str(spec.dataset_id), "-c", spec.configuration, "-np", "2", "-npfp", "2",
                    "--verify_dataset_integrity"], env, logs / "plan_and_preprocess.log", quiet=True)
    if any(m.plans_key == "resencm" for m in args.models) and not (pre / "nnUNetResEncUNetMPlans.json").is_file():
        print("[prepare] nnUNetv2_plan_experiment -pl nnUNetPlannerResEncM")
        run_nnunet("nnUNetv2_plan_experiment", ["-d", str(spec.dataset_id), "-pl", "nnUNetPlannerResEncM"],
                   env, logs / "plan_resencm.log", quiet=True)
    default_batch = None
    for key in ("default", "resencm"):
        source, bench = PLANS[key]
        if not (pre / f"{source}.json").is_file():
            continue
        plans = json.loads((pre / f"{source}.json").read_text())
        config = plans["configurations"][spec.configuration]
        planned = config["batch_size"]
        if key == "default":
            default_batch = min(config["batch_size"], args.batch) if args.batch else config["batch_size"]
        config["batch_size"] = default_batch  # every model trains at the same batch size
        plans["plans_name"] = bench
        (pre / f"{bench}.json").write_text(json.dumps(plans, indent=2) + "\n")
        print(f"[prepare] {bench}: {spec.configuration} patch {config['patch_size']}, batch {config['batch_size']} "
              f"({source} planned {planned})")
    return dataset, tests


def run_model(args: argparse.Namespace, model: Model, seed: int, dataset: Path,
              tests: dict[str, tuple[Path, Path]], logs: Path, iters: int | None = None) -> dict:
    """Train the fold (reused when finished), predict and score every test set; ``iters`` overrides --iters."""
    from accuracy_trainers import checkpoint_name

    from m2s_nnunet.nnunet_env import run_nnunet

    spec = DATASETS[args.dataset]
    env = make_env(args, seed, iters)
    iters = iters or args.iters
    plans = PLANS[model.plans_key][1]
    model_dir = Path(env["nnUNet_results"]) / dataset.name / f"{model.trainer}__{plans}__{spec.configuration}"
    folder = model_dir / f"fold_{args.fold}"
    tag = f"{model.label} seed {seed}" + (f" ({iters} iterations per epoch)" if iters != args.iters else "")
    log_tag = f"{model.label}_s{seed}" + (f"_i{iters}" if iters != args.iters else "")
    total = args.epochs * iters
    points = score_points(args, iters)
    # the last point is the final model (the same weights): its predictions are the final ones
    early = sorted({it for it in points.values() if it < total})
    missing = [checkpoint_name(it) for it in early if not (folder / checkpoint_name(it)).is_file()]
    finished = ((folder / "checkpoint_final.pth").is_file() and (folder / "bench.json").is_file()
                and (folder / "validation" / "summary.json").is_file())
    if finished and missing:
        print(f"[train] {tag}: finished before without {', '.join(missing)}: training again")
    fold = "" if args.fold == 0 else f"_fold{args.fold}"  # fold 0 keeps the folder name of earlier runs
    preds = args.work_dir / "preds" / args.dataset / schedule_tag(args, iters) / f"seed{seed}{fold}" / model.label
    if not finished or missing:
        shutil.rmtree(preds, ignore_errors=True)  # predictions of an earlier training of this run are stale
        print(f"[train] {tag}: {args.epochs} x {iters} iterations on {args.device}", flush=True)
        start = time.perf_counter()
        run_nnunet("nnUNetv2_train", [str(spec.dataset_id), spec.configuration, str(args.fold), "-tr", model.trainer,
                                      "-p", plans, "-device", args.device], env, logs / f"train_{log_tag}.log",
                   quiet=True)
        print(f"[train] {tag}: done in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    else:
        print(f"[train] {tag}: finished before, reusing {folder}")
    result = {"model": model.label, "seed": seed, "bench": json.loads((folder / "bench.json").read_text()),
              "val_dice": json.loads((folder / "validation" / "summary.json").read_text())["foreground_mean"]["Dice"],
              "tests": {}, "model_record": model_record(model_dir, model, spec.configuration)}
    if args.no_test:
        return result
    predict = ["-d", str(spec.dataset_id), "-c", spec.configuration, "-tr", model.trainer, "-p", plans,
               "-f", str(args.fold), "-device", args.device, "-npp", "1", "-nps", "1"]
    for test, (images, labels) in tests.items():
        result["tests"][test] = predict_and_score(preds / test, images, labels, predict, env,
                                                  logs / f"predict_{log_tag}_{test}.log", f"{tag}: {test}")
    if args.predict_timing:
        result["predict_timing"] = timed_predictions(args, model, preds, tests, predict, env, logs / log_tag, tag)
    if points:
        result["points"] = {}
        for n, it in points.items():
            if it == total:
                scored = {test: dict(scores) for test, scores in result["tests"].items()}
            else:
                scored = {test: predict_and_score(preds / f"it{it}" / test, images, labels,
                                                  [*predict, "-chk", checkpoint_name(it)], env,
                                                  logs / f"predict_{log_tag}_it{it}_{test}.log",
                                                  f"{tag} at {it} iterations: {test}")
                          for test, (images, labels) in tests.items()}
            result["points"][str(n)] = {"iterations": it, "tests": scored}
    return result


def predict_and_score(pred: Path, images: Path, labels: Path, predict_args: list[str], env: dict[str, str],
                      log: Path, what: str) -> dict:
    """Predict one test set into ``pred`` (reused when complete) and score it per case: every score point and the
    final model are predicted and scored the same way."""
    from m2s_nnunet.evaluation import evaluate_folder
    from m2s_nnunet.nnunet_env import run_nnunet

    done = pred / ".complete"
    if not done.is_file():
        shutil.rmtree(pred, ignore_errors=True)
        print(f"[predict] {what} ({images})", flush=True)
        start = time.perf_counter()
        run_nnunet("nnUNetv2_predict", ["-i", str(images), "-o", str(pred), *predict_args], env, log, quiet=True)
        done.write_text(f"{time.perf_counter() - start:.1f}\n")
    scores = evaluate_folder(pred, labels, progress=False)
    return {
        "per_case": case_dice(scores),
        "nnunet_dice": float(scores.aggregate.iloc[-1]["nnU-Net Dice"]),
        "predict_s": float(done.read_text()),
    }


CHANNEL_FILE = re.compile(r"^(?P<case>.+)_\d{4}\.")  # nnU-Net's CASE_XXXX.ext (.png, .nii.gz...)


def case_dice(scores) -> dict[str, float]:
    """Per-case Dice of an ``evaluate_folder`` result, averaged over the foreground labels (2D: the polyp mDice;
    3D: nnU-Net's Dice)."""
    column = "nnunet_Dice" if scores.is_3d else "dice"
    return {c: float(v) for c, v in scores.per_case.groupby("case")[column].mean().items()}


def first_case(images: Path, into: Path) -> Path:
    """``into`` holding links to the first case of ``images`` (all its channel files): nnUNetv2_predict on it
    costs the process start, the model load and one case."""
    channel_files = sorted((m["case"], f) for f in images.iterdir()
                           if f.is_file() and (m := CHANNEL_FILE.match(f.name)))
    if not channel_files:
        raise SystemExit(f"accuracy: {images} holds no nnU-Net input file (CASE_XXXX.ext); nothing to time")
    case = channel_files[0][0]
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    for name, f in channel_files:
        if name == case:
            (into / f.name).symlink_to(f.resolve())
    return into


def timed_predictions(args: argparse.Namespace, model: Model, preds: Path, tests: dict[str, tuple[Path, Path]],
                      predict: list[str], env: dict[str, str], log_prefix: Path, tag: str) -> dict:
    """``--predict-timing``: nnUNetv2_predict as users run it, per case in steady state, fp32 and (M2SNet on a CPU
    that computes bf16) with ``M2S_NNUNET_PREDICT_BF16=1``. Always predicted afresh: reused folders keep the
    time of another session."""
    from m2s_nnunet.cpu_bf16 import NETWORK_ENV, PREDICT_ENV, cpu_computes_bf16
    from m2s_nnunet.evaluation import evaluate_folder
    from m2s_nnunet.nnunet_env import run_nnunet

    # each variant's precision set here, not left to the shell's variables; the CPU check decides as it does here
    plain = {k: v for k, v in env.items() if k != NETWORK_ENV}
    variants = {"fp32": {**plain, PREDICT_ENV: "0"}}
    if not model.trainer.startswith("nnUNetTrainer") and args.device == "cpu" and cpu_computes_bf16():
        variants["predict_bf16"] = {**plain, PREDICT_ENV: "1"}
    if args.predict_compiled:  # each variant again, compiled by nnU-Net's predictor
        variants.update({f"{variant}_compiled": {**variant_env, "nnUNet_compile": "t"}
                         for variant, variant_env in list(variants.items())})
    timing: dict[str, dict] = {}
    for variant, variant_env in variants.items():
        for test, (images, labels) in tests.items():
            folder = preds / "timing" / variant
            one = folder / f"{test}_first_case"
            shutil.rmtree(one, ignore_errors=True)
            one_input = first_case(images, folder / f"{test}_first_case_input")
            start = time.perf_counter()
            run_nnunet("nnUNetv2_predict", ["-i", str(one_input), "-o", str(one), *predict], variant_env,
                       Path(f"{log_prefix}_timing_{variant}_{test}_first.log"), quiet=True)
            one_s = time.perf_counter() - start
            shutil.rmtree(folder / test, ignore_errors=True)
            scored = predict_and_score(folder / test, images, labels, predict, variant_env,
                                       Path(f"{log_prefix}_timing_{variant}_{test}.log"), f"{tag}: {test}, {variant}")
            n = len(scored["per_case"])
            # the whole set's time is kept to 0.1 s (predict_and_score's .complete file): at most 0.05 / (n - 1) s
            # off per case
            entry = {"cases": n, "predict_s": scored["predict_s"], "first_case_s": one_s,
                     "per_case_s": (scored["predict_s"] - one_s) / (n - 1) if n > 1 else None,
                     "per_case": scored["per_case"]}
            if variant != "fp32":  # how far the prediction moves from the fp32 one (the fp32 run's masks as labels)
                agreement = case_dice(evaluate_folder(folder / test, preds / "timing" / "fp32" / test, progress=False))
                import pandas as pd

                entry["dice_vs_fp32"] = float(pd.Series(agreement).mean())  # NaN cases (empty/empty in 3D) skipped
            timing.setdefault(variant, {})[test] = entry
            print(f"[timing] {tag}: {test}, {variant}: {entry['per_case_s'] or float('nan'):.3f} s per case in steady "
                  f"state ({n} cases in {scored['predict_s']:.1f} s, the first alone {one_s:.1f} s)", flush=True)
    return timing


def render_predict_timing(results: dict[str, list[dict]], tests: list[str]) -> list[str]:
    """``--predict-timing``: the per-case time of each model, variant and test set, and the bf16 agreement."""
    import numpy as np
    from benchlib import markdown_table

    rows = []
    for label, runs in results.items():
        for run in runs:
            for variant, by_test in (run.get("predict_timing") or {}).items():
                for t in tests:
                    e = by_test[t]
                    rows.append([label, run["seed"], variant, t, e["cases"], e["first_case_s"], e["per_case_s"],
                                 float(np.mean(list(e["per_case"].values()))), e.get("dice_vs_fp32", "-")])
    if not rows:
        return []
    return ["## nnUNetv2_predict per case (--predict-timing)", "",
            markdown_table(["model", "seed", "precision", "test set", "cases", "first case alone s",
                            "s per case (steady state)", "Dice", "Dice vs fp32 prediction"], rows, digits=3), "",
            "- s per case: (time for the whole set - time for its first case alone) / (cases - 1): process start "
            "and model load excluded; as the harness predicts (-npp 1 -nps 1, test-time mirroring on).",
            "- predict_bf16: the same model with M2S_NNUNET_PREDICT_BF16=1 (bf16 autocast in eval mode on a CPU "
            "that computes bf16 natively); its Dice against the fp32 prediction is per case, then averaged.",
            *(["- *_compiled: the same with nnUNet_compile=t (nnU-Net's predictor compiles the network with "
               "torch.compile); the first case alone includes the compile time."]
              if any(r[2].endswith("_compiled") for r in rows) else [])]


def model_record(model_dir: Path, model: Model, configuration: str) -> dict:
    """What the trained model says it is: the settings record an M2SNet trainer saved in the model folder's
    plans.json (issue 14), which the trainer's name alone does not pin down across versions; for nnU-Net's own
    trainers, which record nothing, the trainer, plans and network class. Names only, no paths."""
    record: dict = {"trainer": model.trainer, "plans": PLANS[model.plans_key][1], "configuration": configuration,
                    "trained_with": None}
    plans_file = model_dir / "plans.json"
    if not plans_file.is_file():
        return record
    from m2s_nnunet.settings import RECORD_KEY, plans_record
    from m2s_nnunet.training.model_record import resolved_configuration

    plans = json.loads(plans_file.read_text())
    record["plans"] = plans.get("plans_name", record["plans"])
    if configuration in (plans.get("configurations") or {}):
        resolved = resolved_configuration(plans, configuration)
        record["network_class"] = (resolved.get("architecture") or {}).get("network_class_name")
        record["trained_with"] = plans_record(resolved, RECORD_KEY)
    return record


def seed_mean(results: list[dict], test: str, point: int | None = None):
    """Per-case scores averaged over the seeds of one model (pandas Series), and each seed's mean; ``point``: those
    of a ``--score-at`` point instead of the final model's."""
    import pandas as pd

    frame = pd.DataFrame({r["seed"]: (r["tests"] if point is None else r["points"][str(point)]["tests"])[test]
                          ["per_case"] for r in results})
    return frame.mean(axis=1), {int(s): float(frame[s].mean()) for s in frame.columns}


def render(args: argparse.Namespace, results: dict[str, list[dict]], tests: list[str]) -> str:
    """The Markdown report: the final models, then with ``--score-at`` the learning curve."""
    from benchlib import markdown_table

    spec = DATASETS[args.dataset]
    baseline = args.models[0].label
    headers = ["model", "seeds", "iterations x batch", "s/iter", "train min", f"fold-{args.fold} val Dice"]
    for t in tests:
        headers += [f"{t} Dice", f"{t} per seed", f"{t} diff vs {baseline} [95% CI]", f"{t} p"]
    rows = []
    for label, runs in results.items():
        b = runs[0]["bench"]
        row = [label, ",".join(str(r["seed"]) for r in runs), f"{b['iterations']} x {b['batch_size']}",
               sum(r["bench"]["seconds_per_iteration"] for r in runs) / len(runs),
               sum(r["bench"]["train_seconds"] for r in runs) / len(runs) / 60,
               " / ".join(f"{r['val_dice']:.3f}" for r in runs)]
        for t in tests:
            row += paired_cells(results, label, baseline, t)
        rows.append(row)
    metric = "nnU-Net Dice averaged over the foreground labels" if spec.configuration != "2d" else \
        "mDice (polyp-benchmark convention: per image, empty/empty = 1)"
    lines = [
        f"# Accuracy: {args.dataset} ({spec.configuration}), fold {args.fold}, "
        f"{args.epochs} epochs x {args.iters} iterations",
        "",
        markdown_table(headers, rows, digits=3),
        "",
    ]
    if tests:
        lines += [
            f"- test sets: {', '.join(f'{t} ({len(seed_mean(results[baseline], t)[0])} cases)' for t in tests)}; "
            f"per-case {metric}; 'per seed': each replicate's mean (the replicate noise).",
            f"- diff: mean per-case difference to {baseline} (seeds averaged per case first), percentile bootstrap "
            "95% CI, two-sided Wilcoxon signed-rank p.",
        ]
    lines += [
        f"- fold-{args.fold} val Dice: nnU-Net's summary.json of the fold's validation cases (training data; the "
        "number used to choose between ablation rows; " + ("with" if args.val_tta else "without") + " mirroring).",
        "- s/iter and train min: the training epochs only (pseudo-validation iterations included; start-up, final "
        "validation and prediction excluded), averaged over seeds.",
    ]
    if getattr(args, "score_at", None) and tests:
        lines += ["", *render_score_points(args, results, tests)]
    timing = render_predict_timing(results, tests)
    if timing:
        lines += ["", *timing]
    return "\n".join(lines)


def paired_cells(results: dict[str, list[dict]], label: str, baseline: str, test: str,
                 point: int | None = None) -> list[str]:
    """Mean, per-seed means, paired difference to the baseline [95% CI] and p of one model on one test set."""
    from m2s_nnunet.summary import paired_stats

    mean, per_seed = seed_mean(results[label], test, point)
    cells = [f"{mean.mean():.3f}", " / ".join(f"{v:.3f}" for v in per_seed.values())]
    if label == baseline:
        return cells + ["-", "-"]
    base, _ = seed_mean(results[baseline], test, point)
    common = mean.index.intersection(base.index)
    pair = mean[common].notna() & base[common].notna()
    stats = paired_stats(mean[common][pair].to_numpy(), base[common][pair].to_numpy())
    return cells + [f"{stats['mean diff']:+.3f} [{stats['CI low']:+.3f}, {stats['CI high']:+.3f}]",
                    f"{stats['p']:.3g}"]


def render_score_points(args: argparse.Namespace, results: dict[str, list[dict]], tests: list[str]) -> list[str]:
    """The learning curve: one block of rows per ``--score-at`` point, paired against the first model there."""
    from benchlib import markdown_table

    baseline = args.models[0].label
    headers = ["score point", "model", "iterations"]
    for t in tests:
        headers += [f"{t} Dice", f"{t} per seed", f"{t} diff vs {baseline} [95% CI]", f"{t} p"]
    rows = []
    for n in args.score_at:
        for label, runs in results.items():
            done = sorted({r["points"][str(n)]["iterations"] for r in runs})
            row = [str(n), label, " / ".join(str(d) for d in done)]
            for t in tests:
                row += paired_cells(results, label, baseline, t, n)
            rows.append(row)
    total = args.epochs * args.iters
    lines = [
        f"## Score points: {', '.join(str(n) for n in args.score_at)} iterations",
        "",
        markdown_table(headers, rows, digits=3),
        "",
        f"- learning-rate schedule: that of the longest budget ({args.epochs} epochs x {args.iters} iterations = "
        f"{total}) for every point. A point before {total} is a snapshot of that run, taken before its learning "
        "rate had decayed, not a model trained for that many iterations.",
        f"- diff: paired against {baseline} at the same point, as above"
        + ("; the last point's model is the final one." if args.score_at[-1] == total else "."),
    ]
    if any(label.endswith("(equal time)") for label in results):
        lines.append("- equal-time rows: scored after the same epochs as the baseline (their own iterations shown), "
                     "so after about the baseline's training time at that point.")
    return lines


def equal_time_iterations(results: dict[str, list[dict]], models: list[Model], epochs: int) -> dict[Model, int]:
    """Iterations per epoch that give every model after the first the first model's training time.

    Speeds come from the runs already made; each model's fastest run counts (the least disturbed by other load).
    """
    base_seconds = min(r["bench"]["train_seconds"] for r in results[models[0].label])
    return {m: max(1, round(base_seconds / min(r["bench"]["seconds_per_iteration"] for r in results[m.label])
                            / epochs)) for m in models[1:]}


def render_time_probes(probes: dict[str, list[dict]]) -> str:
    """The line that says what each time probe measured: the speed behind the equal-time iterations."""
    return "- equal-time iterations from time probes of " + "; ".join(
        f"{label}: {runs[0]['bench']['iterations']} iterations, "
        f"{min(r['bench']['seconds_per_iteration'] for r in runs):.2f} s/iter" for label, runs in probes.items())


def time_probe_args(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments of a time probe: --time-probe epochs of --iters iterations, trained only (its own results
    folder, since the schedule tag differs), so that it costs minutes where the full schedule costs hours."""
    return argparse.Namespace(**{**vars(args), "epochs": args.time_probe, "score_at": None, "no_test": True,
                                 "predict_timing": False})


def recorded_arguments(args: argparse.Namespace) -> dict[str, str]:
    """The arguments as the JSON report records them: paths by name only, since result files get committed
    (``bench/results/``) and a local folder means nothing on another machine."""
    return {k: v.name if isinstance(v, Path) else str(v) for k, v in vars(args).items()}


def git_state(repo: Path = REPO) -> dict[str, object]:
    """The commit the harness ran from and whether tracked or new files differed from it: a trainer's name alone
    does not say which network it built (issue 23). None where git or the repository is missing."""
    def git(*command: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(repo), *command], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def provenance(repo: Path = REPO) -> dict[str, object]:
    """What produced a report, beside its arguments: git state, package versions and the switches of
    ``RECORDED_SWITCHES`` set in the shell (the trained models' own settings records are in each run,
    ``model_record``). Names and versions only, no paths."""
    from importlib.metadata import PackageNotFoundError, version

    import m2s_nnunet

    record: dict[str, object] = {**git_state(repo), "m2s_nnunet": m2s_nnunet.__version__}
    for package in ("nnunetv2", "torch"):
        try:
            record[package] = version(package)
        except PackageNotFoundError:
            record[package] = None
    # the shell's switches that change what runs (precision, kernels) without changing the commit; never the
    # weight-file variables, which hold local paths
    record["environment"] = {k: os.environ[k] for k in RECORDED_SWITCHES if k in os.environ}
    return record


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = DATASETS[args.dataset]
    if not spec.images.is_dir():
        print(f"accuracy: SKIPPED: {spec.images} not found (the shared data only exists on project machines)")
        return 0
    sys.path.insert(0, str(TRAINER_DIR))
    import accuracy_trainers

    unknown = [m.trainer for m in args.models if m.trainer not in accuracy_trainers.BENCH_TRAINERS]
    if unknown:
        print(f"accuracy: error: unknown trainer(s) {unknown}; known: {', '.join(accuracy_trainers.BENCH_TRAINERS)}",
              file=sys.stderr)
        return 2
    print(f"accuracy: {args.dataset} ({spec.configuration}), models {[m.label for m in args.models]}, seeds "
          f"{args.seeds}, {args.epochs} x {args.iters} iterations, batch {args.batch or 'of the plans'}, "
          f"work dir {args.work_dir}")
    if args.score_at:
        print(f"accuracy: scored at {', '.join(str(n) for n in args.score_at)} iterations (checkpoint_it<N>.pth); "
              f"learning-rate schedule of {args.epochs * args.iters} iterations")
    if args.dry_run:
        return 0
    args.work_dir.mkdir(parents=True, exist_ok=True)
    logs = args.work_dir / "logs" / args.dataset
    logs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    source = provenance()  # before training: the code that trains is the code recorded
    dataset, tests = prepare(args, logs)
    timed = args.models if args.time_probe is None else args.models[:1]
    results = {m.label: [run_model(args, m, s, dataset, tests, logs) for s in args.seeds] for m in timed}
    probes = {}
    if args.equal_time:
        if args.time_probe is not None:
            probes = {m.label: [run_model(time_probe_args(args), m, seed, dataset, tests, logs)
                                for seed in args.seeds] for m in args.models[1:]}
        for m, matched in equal_time_iterations({**results, **probes}, args.models, args.epochs).items():
            print(f"[equal time] {m.label}: {matched} iterations per epoch")
            results[f"{m.label} (equal time)"] = [run_model(args, m, seed, dataset, tests, logs, iters=matched)
                                                  for seed in args.seeds]
    test_names = [] if args.no_test else list(tests)
    md = render(args, results, test_names)
    if probes:
        md += "\n" + render_time_probes(probes)
    md += f"\n- whole run: {(time.perf_counter() - start) / 60:.1f} min on {args.device}"
    from benchlib import write_report

    report = {"args": recorded_arguments(args), "provenance": source, "results": results}
    if probes:
        report["time_probes"] = probes
    write_report(md, report, args.out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
