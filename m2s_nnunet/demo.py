"""``m2s-nnunet demo``: the whole nnU-Net workflow with M2SNet on a generated dataset, on CPU, in minutes.

Generate data -> plan and preprocess -> train fold 0 -> predict the held-back cases -> score them.
Everything lives in a local work folder; nothing outside it is touched, and finished steps are reused
when the demo is run again (delete the work folder for a fresh start).
"""

from __future__ import annotations

import json
import numbers
import time
from pathlib import Path

from m2s_nnunet.evaluation import evaluate_folder, markdown_table, write_evaluation_files
from m2s_nnunet.nnunet_env import run_nnunet, work_env
from m2s_nnunet.synthetic import make_rgb_dataset

DEMO_DATASET_ID = 990
DEMO_DATASET_NAME = "SyntheticPolyps"
DEMO_TRAINER = "M2SNetTrainer_demo"


def _step(number: int, total: int, text: str) -> None:
    print(f"\n[{number}/{total}] {text}", flush=True)


def run_demo(work_dir: str | Path = "m2s_work", trainer: str = DEMO_TRAINER, num_train: int = 24,
             num_test: int = 6, size: int = 96) -> dict:
    """Run the demo and return its scores; prints progress and where the outputs are."""
    start = time.time()
    work = Path(work_dir).resolve()
    env = work_env(work)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    raw = Path(env["nnUNet_raw"])
    dataset = raw / f"Dataset{DEMO_DATASET_ID:03d}_{DEMO_DATASET_NAME}"
    results_model = Path(env["nnUNet_results"]) / dataset.name / f"{trainer}__nnUNetPlans__2d"
    total = 5

    _step(1, total, f"dataset: {num_train} training + {num_test} test RGB images ({size}x{size}) -> {dataset}")
    if dataset.exists():
        print("  exists, reusing it")
    else:
        make_rgb_dataset(raw, DEMO_DATASET_ID, DEMO_DATASET_NAME, num_train, num_test, (size, size))

    _step(2, total, "nnUNetv2_plan_and_preprocess (fingerprint, plans, preprocessing; 2d only)")
    plans = Path(env["nnUNet_preprocessed"]) / dataset.name / "nnUNetPlans.json"
    if plans.is_file():
        print("  plans exist, reusing them")
    else:
        run_nnunet("nnUNetv2_plan_and_preprocess",
                   ["-d", str(DEMO_DATASET_ID), "-c", "2d", "-np", "2", "-npfp", "2", "--verify_dataset_integrity"],
                   env, logs / "plan_and_preprocess.log", quiet=True)
        print(f"  done (log: {logs / 'plan_and_preprocess.log'})")

    _step(3, total, f"nnUNetv2_train {DEMO_DATASET_ID} 2d 0 -tr {trainer} -device cpu --npz")
    if (results_model / "fold_0" / "checkpoint_final.pth").is_file():
        print("  fold 0 already trained, reusing it")
    else:
        run_nnunet("nnUNetv2_train", [str(DEMO_DATASET_ID), "2d", "0", "-tr", trainer, "-device", "cpu", "--npz"],
                   env, logs / "train_fold0.log")

    _step(4, total, "nnUNetv2_predict on the held-back test images (with probabilities)")
    pred_dir = work / "predictions" / trainer
    run_nnunet("nnUNetv2_predict",
               ["-i", str(dataset / "imagesTs"), "-o", str(pred_dir), "-d", str(DEMO_DATASET_ID), "-c", "2d",
                "-tr", trainer, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1", "--save_probabilities"],
               env, logs / "predict.log", quiet=True)

    _step(5, total, "m2s-nnunet evaluate on the test images (nnU-Net and polyp-benchmark conventions)")
    evaluation = evaluate_folder(pred_dir, dataset / "labelsTs", progress=False)
    eval_dir = work / "evaluation" / trainer
    write_evaluation_files(evaluation, eval_dir)
    row = evaluation.aggregate.iloc[0]
    summary = json.loads((results_model / "fold_0" / "validation" / "summary.json").read_text())
    result = {
        "validation_dice_fold0": summary["foreground_mean"]["Dice"],
        "test": {k: (float(v) if isinstance(v, numbers.Real) else v) for k, v in row.items()},
        "minutes": (time.time() - start) / 60,
    }
    print(f"  fold-0 validation Dice (nnU-Net summary.json): {result['validation_dice_fold0']:.3f}")
    print(markdown_table(evaluation.aggregate))
    print(f"\nOutputs (in {work}):")
    print(f"  model, logs, progress.png: {results_model / 'fold_0'}")
    print(f"  test predictions (0/1 PNGs): {pred_dir}")
    print(f"  per-case and aggregate scores: {eval_dir}")
    print(f"  step logs: {logs}")
    print(f"Done in {result['minutes']:.1f} min. Rerun to reuse finished steps; delete {work} to start over.")
    (work / "demo_result.json").write_text(json.dumps(result, indent=2))
    return result
