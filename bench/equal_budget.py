"""nnU-Net's default U-Net vs M2SNet trained for the SAME wall-clock time on the same data, scored on held-out images.

Steps (each reused when its output already exists in ``--work-dir``; ``--overwrite`` starts over):

1. convert a subset of an images/masks folder pair (default: Kvasir-SEG from ``../shared/data``) into an nnU-Net
   raw dataset, resized, with a fraction held out as test images (the list is written to the work dir);
2. ``nnUNetv2_plan_and_preprocess -c 2d`` (nnU-Net's default plans; both trainers use them);
3. ``nnUNetv2_train ... 2d 0`` for each trainer with the same budget: the ``*_budget`` trainers of
   ``bench/trainers/budget_trainers.py`` stop when one more epoch would overrun ``--budget-min`` and by default
   compress their learning-rate schedule into the budget (see that file);
4. ``nnUNetv2_predict`` of the held-out images with each fold-0 model (TTA on, as nnU-Net's default);
5. scoring with ``m2s_nnunet.evaluation`` in both conventions (nnU-Net's Dice/IoU and the polyp-benchmark
   mDice/mIoU/wFm/Sm/Em/MAE), written as a Markdown table.

Default sizes: on CPU 120 images at 128x128 and 15 min per model (about 35-45 min in all on 2 cores); on
CUDA all images at 352x352 (the paper's input size) and 60 min per model. The M2SNet default is a *scratch*
variant (random encoder: ImageNet weights are often unavailable offline); if LossNet's VGG16 weights are not
found locally its Dice+CE-only variant is used. Both are said in the output.

    python bench/equal_budget.py --device cpu --out bench/out/equal_budget.md
    python bench/equal_budget.py --dry-run          # check inputs and print the plan, train nothing
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TRAINER_DIR = BENCH / "trainers"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "polyp" / "Kvasir-SEG-train"
BASELINE = "nnUNetTrainer_budget"


def budget_trainers():
    """The trainer module (imported lazily: it pulls in nnU-Net, which --help and the data check do not need)."""
    if str(TRAINER_DIR) not in sys.path:
        sys.path.insert(0, str(TRAINER_DIR))  # the trainer folder is not a package, by nnU-Net's design
    import budget_trainers

    return budget_trainers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, default=DEFAULT_DATA / "images", help="images folder (default: %(default)s)")
    p.add_argument("--masks", type=Path, default=DEFAULT_DATA / "masks", help="masks folder (default: %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available, else cpu")
    p.add_argument("--budget-min", type=float, default=None,
                   help="training minutes per model (default: 15 on CPU, 60 on CUDA)")
    p.add_argument("--limit", type=int, default=None,
                   help="use the first N cases by name (default: 120 on CPU, all on CUDA; 0 = all)")
    p.add_argument("--resize", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="resize images and masks (default: 128 128 on CPU, 352 352 on CUDA); a multiple of 64 keeps "
                        "nnU-Net's patch a multiple of 32 as M2SNet needs")
    p.add_argument("--test-fraction", type=float, default=0.2, help="held-out test fraction (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the test selection")
    p.add_argument("--trainers", nargs="+", default=None,
                   help=f"budget trainers to compare (default: {BASELINE} and an M2SNet scratch variant); "
                        "the *_budget classes of bench/trainers/budget_trainers.py")
    p.add_argument("--lossnet", choices=("auto", "on", "off"), default="auto",
                   help="for the default M2SNet trainer: auto = LossNet only if VGG16 weights are found locally")
    p.add_argument("--iters-per-epoch", type=int, default=None, help="default: 25 on CPU, 250 on CUDA")
    p.add_argument("--val-iters", type=int, default=None,
                   help="pseudo-validation iterations per epoch (default: 5 on CPU, 50 on CUDA)")
    p.add_argument("--schedule", choices=("fit", "fixed"), default="fit",
                   help="fit: compress each LR schedule into the budget (default); fixed: keep the 1000-epoch horizon")
    p.add_argument("--work-dir", type=Path, default=BENCH / "out" / "equal_budget_work")
    p.add_argument("--dataset-id", type=int, default=951)
    p.add_argument("--dataset-name", default="EqualBudget")
    p.add_argument("--overwrite", action="store_true", help="delete the work dir's dataset, plans and models first")
    p.add_argument("--dry-run", action="store_true", help="check inputs, trainers and weights; print the plan; exit")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    p.add_argument("--json", type=Path, default=None, help="write all numbers here")
    args = p.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cpu = args.device == "cpu"
    args.budget_min = args.budget_min if args.budget_min is not None else (15.0 if cpu else 60.0)
    args.limit = (120 if cpu else 0) if args.limit is None else args.limit
    args.resize = tuple(args.resize) if args.resize else ((128, 128) if cpu else (352, 352))
    args.iters_per_epoch = args.iters_per_epoch or (25 if cpu else 250)
    args.val_iters = args.val_iters or (5 if cpu else 50)
    if not 0 < args.test_fraction < 1:
        p.error("--test-fraction must be between 0 and 1")
    return args


def weights_found(kind: str, encoder: str = "") -> bool:
    """Whether a weight file is available locally (never downloads)."""
    from m2s_nnunet.weights import MissingWeightsError, resolve_encoder_weights, resolve_vgg16_weights

    try:
        if kind == "vgg16":
            resolve_vgg16_weights(allow_download=False)
        else:
            resolve_encoder_weights(encoder, allow_download=False)
    except MissingWeightsError:
        return False
    return True


def choose_trainers(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The trainers to run and notes on why (scratch encoder, LossNet on/off, missing weights)."""
    known = budget_trainers().BUDGET_TRAINERS
    notes = []
    if args.trainers:
        unknown = [t for t in args.trainers if t not in known]
        if unknown:
            raise SystemExit(f"unknown trainer(s) {unknown}; known: {', '.join(known)}")
        trainers = list(args.trainers)
    else:
        encoder = "resnet18_" if args.device == "cpu" else ""
        lossnet = args.lossnet == "on" or (args.lossnet == "auto" and weights_found("vgg16"))
        m2s = f"M2SNetTrainer_{encoder}scratch{'' if lossnet else '_noLossNet'}_budget"
        trainers = [BASELINE, m2s]
        notes.append(f"M2SNet trains from scratch ({m2s}): the same random-init start as nnU-Net's U-Net, and no "
                     "ImageNet weights needed; pass --trainers M2SNetTrainer_budget to use pretrained ones.")
        if not lossnet:
            notes.append("LossNet is off: its VGG16 ImageNet weights were not found locally (or --lossnet off); "
                         "M2SNet trains with nnU-Net's Dice+CE only.")
    for name in trainers:
        settings = rgb_settings(known[name])
        if settings is None:
            continue
        if settings.uses_lossnet and not weights_found("vgg16"):
            notes.append(f"WARNING: {name} needs VGG16 weights for LossNet, not found locally: it will try to "
                         "download them and fail offline (see `m2s-nnunet doctor`).")
        encoder = settings.encoder
        if settings.pretrained_encoder and not weights_found("encoder", encoder):
            notes.append(f"WARNING: {name} needs ImageNet weights for {encoder}, not found locally: it will try to "
                         "download them and fail offline.")
    return trainers, notes


def rgb_settings(cls: type):
    """What an M2SNet trainer builds on this benchmark's 2D RGB pictures (the trainer's own settings rule); None
    for nnU-Net's trainers."""
    from m2s_nnunet.training import M2SNetTrainer

    if not issubclass(cls, M2SNetTrainer):
        return None
    return cls.m2snet_settings({"patch_size": [128, 128]}, 3)


def describe_trainer(name: str) -> tuple[str, str]:
    """(network, loss) of a budget trainer, for the table."""
    settings = rgb_settings(budget_trainers().BUDGET_TRAINERS[name])
    if settings is None:
        return "nnU-Net PlainConvUNet (plans)", "Dice+CE, deep supervision"
    init = "ImageNet" if settings.pretrained_encoder else "scratch"
    loss = f"Dice+CE + {settings.lossnet_weight} LossNet" if settings.uses_lossnet else "Dice+CE"
    return f"M2SNet {settings.encoder} ({init})", loss


def select_test_cases(cases: list[str], fraction: float, seed: int) -> list[str]:
    import numpy as np

    n_test = max(1, round(len(cases) * fraction))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(sorted(cases), size=n_test, replace=False).tolist())


REUSE_KEYS = ("images", "masks", "limit", "resize", "test_fraction", "seed", "dataset_id", "device", "budget_min",
              "iters_per_epoch", "val_iters", "schedule")


def check_work_dir(args: argparse.Namespace) -> None:
    """Finished steps are reused only when they were made with the same settings; otherwise ask for --overwrite."""
    record = args.work_dir / "settings.json"
    now = {k: str(getattr(args, k)) for k in REUSE_KEYS}
    if record.is_file():
        before = json.loads(record.read_text())
        changed = sorted(k for k in REUSE_KEYS if before.get(k) != now[k])
        if changed:
            raise SystemExit(f"{args.work_dir} holds a run with other settings ({', '.join(changed)}); "
                             "pass --overwrite to start over or pick another --work-dir")
    record.write_text(json.dumps(now, indent=2) + "\n")


def make_env(args: argparse.Namespace) -> dict[str, str]:
    from m2s_nnunet.nnunet_env import work_env

    bt = budget_trainers()
    env = work_env(args.work_dir)  # CPU-friendly worker counts and torch.compile off, unless set by the user
    if args.device == "cuda":  # a GPU needs more augmentation workers to be fed; the user's values still win
        cores = os.cpu_count() or 1
        for name, value in (("nnUNet_n_proc_DA", min(12, cores)), ("nnUNet_def_n_proc", min(8, cores))):
            if name not in os.environ:
                env[name] = str(value)
    env["nnUNet_extTrainer"] = env["nnUNet_extTrainer"] + os.pathsep + str(TRAINER_DIR)
    env[bt.BUDGET_ENV] = str(args.budget_min * 60)
    env[bt.ITERS_ENV] = str(args.iters_per_epoch)
    env[bt.VAL_ITERS_ENV] = str(args.val_iters)
    env[bt.SCHEDULE_ENV] = args.schedule
    return env


def prepare_dataset(args: argparse.Namespace, cases: list[str], env: dict[str, str], logs: Path) -> Path:
    from m2s_nnunet.conversion import ConvertOptions, convert
    from m2s_nnunet.nnunet_env import run_nnunet

    raw = Path(env["nnUNet_raw"])
    dataset = raw / f"Dataset{args.dataset_id:03d}_{args.dataset_name}"
    test_list = args.work_dir / "test_cases.txt"
    if dataset.is_dir() and test_list.is_file():
        print(f"[1/5] dataset {dataset} exists, reusing it (and {test_list})")
    else:
        test = select_test_cases(cases, args.test_fraction, args.seed)
        test_list.write_text("\n".join(test) + "\n")
        print(f"[1/5] converting {len(cases)} cases ({len(test)} held out, list in {test_list}) -> {dataset}")
        opts = ConvertOptions(images=args.images, masks=args.masks, dataset_id=args.dataset_id,
                              name=args.dataset_name, out=raw, resize=args.resize, test_list=test_list,
                              limit=args.limit or None, overwrite=True, progress=False)
        report = convert(opts)
        for warning in report.warnings:
            print(f"  note: {warning}")
    plans = Path(env["nnUNet_preprocessed"]) / dataset.name / "nnUNetPlans.json"
    if plans.is_file():
        print(f"[2/5] plans {plans} exist, reusing them")
    else:
        print("[2/5] nnUNetv2_plan_and_preprocess -c 2d")
        run_nnunet("nnUNetv2_plan_and_preprocess",
                   ["-d", str(args.dataset_id), "-c", "2d", "-np", env["nnUNet_def_n_proc"], "-npfp",
                    env["nnUNet_def_n_proc"], "--verify_dataset_integrity"],
                   env, logs / "plan_and_preprocess.log", quiet=True)
    config = json.loads(plans.read_text())["configurations"]["2d"]
    if any(s % 32 for s in config["patch_size"]):
        raise SystemExit(f"nnU-Net planned a 2d patch of {config['patch_size']}, not a multiple of 32 as M2SNet needs; "
                         "rerun with --overwrite and a --resize that is a multiple of 64 (e.g. 128 128 or 256 256)")
    print(f"  2d plans: patch {config['patch_size']}, batch {config['batch_size']}")
    return dataset


def train_predict_score(name: str, args: argparse.Namespace, dataset: Path, env: dict[str, str],
                        logs: Path) -> dict:
    import numpy as np

    from m2s_nnunet.evaluation import evaluate_folder
    from m2s_nnunet.nnunet_env import run_nnunet

    model = Path(env["nnUNet_results"]) / dataset.name / f"{name}__nnUNetPlans__2d" / "fold_0"
    if (model / "checkpoint_final.pth").is_file() and (model / "budget.json").is_file():
        print(f"[3/5] {name}: fold 0 already trained, reusing it")
    else:
        print(f"[3/5] {name}: training fold 0 for {args.budget_min:g} min on {args.device}")
        run_nnunet("nnUNetv2_train", [str(args.dataset_id), "2d", "0", "-tr", name, "-device", args.device],
                   env, logs / f"train_{name}.log")
    budget = json.loads((model / "budget.json").read_text())
    pred_dir = args.work_dir / "predictions" / name
    print(f"[4/5] {name}: predicting {dataset / 'imagesTs'}")
    shutil.rmtree(pred_dir, ignore_errors=True)
    start = time.perf_counter()
    workers = ["-npp", "1", "-nps", "1"] if args.device == "cpu" else []
    run_nnunet("nnUNetv2_predict",
               ["-i", str(dataset / "imagesTs"), "-o", str(pred_dir), "-d", str(args.dataset_id), "-c", "2d",
                "-tr", name, "-f", "0", "-device", args.device, *workers],
               env, logs / f"predict_{name}.log", quiet=True)
    predict_s = time.perf_counter() - start
    print(f"[5/5] {name}: scoring")
    result = evaluate_folder(pred_dir, dataset / "labelsTs", progress=False)
    row = result.aggregate.iloc[0].to_dict()
    val = model / "validation" / "summary.json"
    val_dice = json.loads(val.read_text())["foreground_mean"]["Dice"] if val.is_file() else float("nan")
    return {"trainer": name, "budget": budget, "predict_s": predict_s, "val_dice_fold0": val_dice,
            "test": {k: (float(v) if isinstance(v, (int, float, np.floating, np.integer)) else v)
                     for k, v in row.items()}, "notes": result.notes}


def render(results: list[dict], args: argparse.Namespace, notes: list[str], n_cases: int, n_test: int) -> str:
    import torch
    from benchlib import describe_device, markdown_table

    rows = []
    for r in results:
        b, t = r["budget"], r["test"]
        network, loss = describe_trainer(r["trainer"])
        rows.append([r["trainer"], network, loss, b["train_seconds"] / 60, b["epochs"], b["iterations"],
                     b["images_seen"], r["val_dice_fold0"], t.get("nnU-Net Dice"), t.get("nnU-Net IoU"),
                     t.get("mDice"), t.get("mIoU"), t.get("wFm"), t.get("Sm"), t.get("meanEm"), t.get("MAE"),
                     r["predict_s"]])
    headers = ["trainer", "network", "loss", "train min", "epochs", "iterations", "images seen",
               "fold-0 val Dice", "test nnU-Net Dice", "test nnU-Net IoU", "test mDice", "test mIoU", "wFm", "Sm",
               "meanEm", "MAE", "predict s"]
    md = [
        "# Equal wall-clock budget: nnU-Net U-Net vs M2SNet",
        "",
        f"- data: {args.images} ({n_cases} cases used, resized to {args.resize[0]}x{args.resize[1]}; {n_test} held out "
        f"for test, seed {args.seed}; fold 0 of nnU-Net's 5-fold split of the rest)",
        f"- device: {describe_device(torch.device(args.device))}",
        f"- budget: {args.budget_min:g} min of training per model; epochs of {args.iters_per_epoch} training + "
        f"{args.val_iters} pseudo-validation iterations; LR schedule horizon: "
        + ("fitted to the budget (re-estimated each epoch)" if args.schedule == "fit"
           else "not compressed (the trainers' 1000-epoch horizon)"),
        "",
        markdown_table(headers, rows, digits=3),
        "",
        "- train min: measured training time inside the budget (excludes start-up, nnU-Net's final validation and "
        "prediction). 'images seen' = iterations x batch size of the plans.",
        "- fold-0 val Dice: nnU-Net's summary.json of the fold-0 validation cases (training images, not the test).",
        "- test nnU-Net Dice/IoU: nnU-Net convention (argmax at full resolution, empty/empty cases skipped); "
        "mDice..MAE: polyp-benchmark convention (mean over images, from the hard masks; see m2s_nnunet.evaluation).",
        "- predict s: wall time of nnUNetv2_predict for all test images, start-up included (TTA on).",
        "- both trainers run eagerly (nnUNet_compile=f unless set: M2SNet's compile is not validated), with the "
        "same data-augmentation worker count; everything else is nnU-Net's default pipeline (patch sampling, "
        "augmentation, sliding-window inference).",
    ]
    md += [f"- {n}" for n in notes]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.images.is_dir() or not args.masks.is_dir():
        print(f"equal_budget: SKIPPED: data folders not found ({args.images}, {args.masks}). They only exist on "
              "project machines; pass --images/--masks for other data.")
        return 0
    from benchlib import write_report

    from m2s_nnunet.conversion import ConversionError, pair_inputs
    from m2s_nnunet.nnunet_env import nnunet_command

    try:
        pairs, kind = pair_inputs(args.images, args.masks)
    except ConversionError as err:
        print(f"equal_budget: error: {err}", file=sys.stderr)
        return 2
    if kind != "2d":
        print("equal_budget: error: only 2D image folders are supported (M2SNet is 2D)", file=sys.stderr)
        return 2
    cases = [p.case for p in pairs][: args.limit or None]
    if len(cases) < 10:
        print(f"equal_budget: error: {len(cases)} cases is too few (nnU-Net's 5-fold split needs >= 5 training "
              "cases after the test hold-out); use more data or a larger --limit", file=sys.stderr)
        return 2
    trainers, notes = choose_trainers(args)
    n_test = max(1, round(len(cases) * args.test_fraction))
    for tool in ("nnUNetv2_plan_and_preprocess", "nnUNetv2_train", "nnUNetv2_predict"):
        nnunet_command(tool)  # raises with a clear message when nnU-Net is not installed here
    print(f"equal_budget: {len(cases)} cases ({n_test} test) from {args.images}, resized to {args.resize}, "
          f"device {args.device}, {args.budget_min:g} min per model, trainers: {', '.join(trainers)}")
    for n in notes:
        print(f"  {n}")
    if args.dry_run:
        total = len(trainers) * (args.budget_min + (2 if args.device == "cpu" else 1)) + 2
        print(f"dry run: inputs OK; the full run would take about {total:.0f} min in {args.work_dir}. Commands:")
        print(f"  convert -> {args.work_dir}/nnUNet_raw/Dataset{args.dataset_id:03d}_{args.dataset_name}")
        print(f"  nnUNetv2_plan_and_preprocess -d {args.dataset_id} -c 2d --verify_dataset_integrity")
        for t in trainers:
            print(f"  nnUNetv2_train {args.dataset_id} 2d 0 -tr {t} -device {args.device}   "
                  f"({budget_trainers().BUDGET_ENV}={args.budget_min * 60:g})")
            print(f"  nnUNetv2_predict ... -tr {t} -f 0   + m2s_nnunet.evaluation on labelsTs")
        return 0
    if args.overwrite and args.work_dir.exists():
        shutil.rmtree(args.work_dir)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    check_work_dir(args)
    logs = args.work_dir / "logs"
    logs.mkdir(exist_ok=True)
    env = make_env(args)
    start = time.perf_counter()
    dataset = prepare_dataset(args, cases, env, logs)
    results = [train_predict_score(t, args, dataset, env, logs) for t in trainers]
    md = render(results, args, notes, len(cases), n_test)
    md += f"\n- whole run: {(time.perf_counter() - start) / 60:.1f} min; work dir {args.work_dir}"
    write_report(md, {"args": vars(args), "results": results, "notes": notes}, args.out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
