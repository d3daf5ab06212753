"""``convert``, ``evaluate`` and ``summarize`` subcommands of ``m2s-nnunet``.

Each ``add_*_parser`` registers one subcommand on an argparse ``subparsers`` object and sets ``func`` to a
callable that takes the parsed namespace and returns 0. Refusals are raised as ``m2s_nnunet.errors.UserError``
(``ConversionError``, ``EvaluationError``, ``SummaryError``), which ``m2s_nnunet.cli.main`` prints as one message
with exit code 2. Output folders are checked before any work starts. Heavy imports happen inside the handlers
so that ``m2s-nnunet --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path


# ---------------------------------------------------------------------------------------------- convert
def add_convert_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``m2s-nnunet convert IMAGES MASKS -d ID -n NAME``: build nnUNet_raw/DatasetXXX_NAME."""
    p = subparsers.add_parser(
        "convert",
        help="convert images + masks folders (2D pictures or NIfTI volumes) into an nnU-Net raw dataset",
        description="Pair IMAGES and MASKS by file stem, check them all, and write "
        "<out>/DatasetXXX_NAME/{imagesTr,labelsTr[,imagesTs,labelsTs]} + dataset.json. 2D images become "
        "<case>_0000.png (RGB stays one 3-channel PNG), masks <case>.png with labels 0..K. NIfTI volumes "
        "become <case>_0000.nii.gz / <case>.nii.gz. Nothing is written if any check fails.",
    )
    p.add_argument("images", type=Path, help="folder of images (png/jpg/jpeg/bmp/tif/tiff or .nii.gz/.nii)")
    p.add_argument("masks", type=Path, help="folder of masks/labels with the same file stems")
    p.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset id (1-999)")
    p.add_argument("-n", "--name", required=True, help="dataset name, e.g. Kvasir -> Dataset501_Kvasir")
    p.add_argument("--out", type=Path, default=None, help="nnUNet_raw folder (default: $nnUNet_raw)")
    p.add_argument(
        "--resize",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="resize every 2D case to HxW (images bilinear, masks nearest; PraNet protocol)",
    )
    p.add_argument(
        "--labels",
        nargs="+",
        metavar="NAME=VALUE",
        default=None,
        help="raw mask value of each foreground class, in label order, e.g. ggo=1 consolidation=2 "
        "or polyp=255 (needed unless masks are 0/1, 0/255 or already 0..K)",
    )
    p.add_argument("--label-name", default="foreground", help="name of label 1 for binary masks")
    p.add_argument(
        "--modality",
        default=None,
        help="channel name for grey 2D images (default 'grey') and NIfTI volumes (required: "
        "'CT' selects nnU-Net's CT normalisation, anything else e.g. 'MRI' z-score)",
    )
    p.add_argument(
        "--channels",
        choices=("auto", "rgb", "grey"),
        default="auto",
        help="force all 2D images to RGB or grey (default: keep, refuse mixed)",
    )
    p.add_argument("--drop-alpha", action="store_true",
                   help="drop the alpha channel of RGBA/LA images, and read RGBA/LA masks from their colour channels "
                   "whatever their alpha channel holds")
    p.add_argument(
        "--binarize-masks",
        action="store_true",
        help="threshold masks at 127 (anti-aliased or JPEG masks) into one foreground label",
    )
    p.add_argument("--mask-suffix", default="", help="masks are named <stem><suffix>, e.g. _mask")
    p.add_argument(
        "--test-list",
        type=Path,
        default=None,
        help="text file, one case per line: these go to imagesTs/labelsTs",
    )
    split = p.add_mutually_exclusive_group()
    split.add_argument(
        "--folds",
        type=int,
        default=None,
        help="write splits_final.json with K folds (KFold seed 12345, as nnU-Net)",
    )
    split.add_argument(
        "--splits",
        type=Path,
        default=None,
        help="validate this splits JSON ([{'train': [...], 'val': [...]}, ...]) and write it as splits_final.json",
    )
    p.add_argument(
        "--install-splits",
        action="store_true",
        help="also copy splits_final.json into an existing $nnUNet_preprocessed/DatasetXXX_NAME",
    )
    p.add_argument(
        "--geometry-tol",
        type=float,
        default=1e-3,
        help="NIfTI image/label spacing, origin and direction tolerance (default 1e-3)",
    )
    p.add_argument("--limit", type=int, default=None, help="convert only the first N cases (sorted by name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    p.set_defaults(func=run_convert)
    return p


def run_convert(args: argparse.Namespace) -> int:
    from m2s_nnunet.conversion import ConvertOptions, convert, format_report

    opts = ConvertOptions(
        images=args.images,
        masks=args.masks,
        dataset_id=args.dataset_id,
        name=args.name,
        out=args.out,
        resize=tuple(args.resize) if args.resize else None,
        labels=args.labels,
        label_name=args.label_name,
        modality=args.modality,
        test_list=args.test_list,
        splits=args.splits,
        folds=args.folds,
        install_splits=args.install_splits,
        overwrite=args.overwrite,
        limit=args.limit,
        mask_suffix=args.mask_suffix,
        channels=args.channels,
        binarize_masks=args.binarize_masks,
        drop_alpha=args.drop_alpha,
        geometry_tol=args.geometry_tol,
    )
    report = convert(opts)
    print(format_report(report))
    return 0


# ---------------------------------------------------------------------------------------------- evaluate
def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``m2s-nnunet evaluate PRED_DIR GT_DIR``: nnU-Net and polyp-benchmark metrics of a prediction folder."""
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
    p.set_defaults(func=run_evaluate)
    return p


def run_evaluate(args: argparse.Namespace) -> int:
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
    paths = evaluation.write_outputs(res, out)
    print(evaluation.markdown_table(res.aggregate))
    for n in res.notes:
        print(f"note: {n}")
    refs = metrics.METRIC_REFERENCES if not res.is_3d else {}
    for k, v in refs.items():
        print(f"  {k}: {v}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


# ---------------------------------------------------------------------------------------------- summarize
def add_summarize_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``m2s-nnunet summarize DatasetXXX``: cross-validation tables, paired tests and plots."""
    p = subparsers.add_parser(
        "summarize",
        help="cross-validation summary of nnU-Net results (per fold, mean ± std, pooled, paired tests)",
        description="For every Trainer__Plans__Configuration folder of the dataset in $nnUNet_results: "
        "per-fold and mean ± std Dice/IoU per label, the pooled result over all validation cases, and paired "
        "per-case comparisons (Wilcoxon signed-rank, bootstrap CI) of each M2SNetTrainer* model against "
        "nnUNetTrainer, or of the models given with --compare. Missing/unfinished folds are reported.",
    )
    p.add_argument("dataset", help="dataset id or name: 501, Dataset501 or Dataset501_Kvasir")
    p.add_argument("--results", type=Path, default=None, help="nnUNet_results folder (default: $nnUNet_results)")
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        help="output folder (default: <results>/<DatasetXXX_Name>/m2s_summary)",
    )
    p.add_argument(
        "--compare",
        nargs=2,
        action="append",
        metavar=("A", "B"),
        default=None,
        help="compare model A with B (trainer name or Trainer__Plans__Config); repeatable",
    )
    p.add_argument("--folds", nargs="+", default=None, help="expected folds (default: 0 1 2 3 4)")
    p.add_argument("--metric", choices=("Dice", "IoU"), default="Dice", help="metric of the paired tests")
    p.set_defaults(func=run_summarize)
    return p


def run_summarize(args: argparse.Namespace) -> int:
    from m2s_nnunet import summary
    from m2s_nnunet.inputs.folders import check_output_folder

    ds_dir = summary.find_dataset_dir(args.dataset, args.results)
    out = args.out or ds_dir / "m2s_summary"
    check_output_folder(out, "summary output folder" + ("" if args.out else " (default <dataset>/m2s_summary)"))
    res = summary.summarize(args.dataset, args.results, args.compare, args.folds, args.metric)
    paths = summary.write_outputs(res, out)
    print(summary.format_text(res))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
