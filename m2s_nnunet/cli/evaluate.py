"""``m2s-nnunet evaluate PRED_DIR GT_DIR``: nnU-Net and polyp-benchmark metrics of a prediction folder
(``m2s_nnunet.evaluation``). The output folder is checked before any scoring starts."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="score predictions against ground truth (nnU-Net Dice/IoU + mDice, mIoU, wFm, Sm, Em, MAE)",
        description="Score every <case>.png/.nii.gz in PRED_DIR against GT_DIR. "
        "nnU-Net convention: per-label Dice/IoU, NaN when both empty (as nnunetv2 compute_metrics). "
        "Polyp-benchmark convention (2D only): "
        "per-image Dice/IoU with empty-empty = 1, and PySODMetrics wFm/Sm/Em/MAE, from <case>.npz "
        "probabilities when present, else from the masks.",
    )
    p.add_argument("pred_dir", type=Path, help="folder of predicted label maps (+ optional <case>.npz)")
    p.add_argument("gt_dir", type=Path, help="folder of reference label maps (labelsTr/labelsTs or 0/255 masks)")
    p.add_argument("-o", "--out", type=Path, default=None, help="output folder (default: PRED_DIR/evaluation)")
    p.add_argument(
        "--labels",
        nargs="+",
        default=None,
        metavar="VALUE|NAME=VALUE",
        help="foreground labels to score, other values count as background (default: from dataset.json next "
        "to the predictions or the references, else the values found)",
    )
    p.add_argument("--chill", action="store_true", help="allow references without a prediction (skipped)")
    p.add_argument(
        "--soft-png",
        action="store_true",
        help="prediction PNGs are 0..255 probability maps (PraNet-style), thresholded at 0.5 for Dice",
    )
    p.add_argument("--drop-alpha", action="store_true",
                   help="read RGBA/LA label pictures from their colour channels whatever their alpha channel holds")
    p.add_argument("-np", "--num-processes", type=int, default=1, help="worker processes (default 1)")
    return p


def run(args: argparse.Namespace) -> int:
    from m2s_nnunet import evaluation, metrics
    from m2s_nnunet.inputs.folders import check_output_folder

    if args.num_processes < 1:
        raise evaluation.EvaluationError(f"--num-processes {args.num_processes}: must be at least 1")
    out = args.out or Path(args.pred_dir) / "evaluation"
    check_output_folder(out, "evaluation output folder" + ("" if args.out else " (default PRED_DIR/evaluation)"))
    res = evaluation.evaluate_folder(
        args.pred_dir, args.gt_dir, args.labels, args.num_processes, args.chill, args.soft_png,
        drop_alpha=args.drop_alpha,
    )
    paths = evaluation.write_evaluation_files(res, out)
    print(evaluation.markdown_table(res.aggregate))
    for n in res.notes:
        print(f"note: {n}")
    refs = metrics.METRIC_REFERENCES if not res.is_3d else {}
    for k, v in refs.items():
        print(f"  {k}: {v}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
