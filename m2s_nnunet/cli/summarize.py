"""``m2s-nnunet summarize DATASET``: cross-validation tables, paired tests and plots (``m2s_nnunet.summary``).
The output folder is checked before any work starts."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    p.add_argument("--folds", nargs="+", default=None,
                   help="expected folds (default: those of the dataset's splits_final.json, else 0 1 2 3 4)")
    p.add_argument("--metric", choices=("Dice", "IoU"), default="Dice", help="metric of the paired tests")
    return p


def run(args: argparse.Namespace) -> int:
    from m2s_nnunet import summary
    from m2s_nnunet.inputs.folders import check_output_folder

    ds_dir = summary.find_dataset_dir(args.dataset, args.results)
    out = args.out or ds_dir / "m2s_summary"
    check_output_folder(out, "summary output folder" + ("" if args.out else " (default <dataset>/m2s_summary)"))
    res = summary.summarize(args.dataset, args.results, args.compare, args.folds, args.metric)
    paths = summary.write_summary_files(res, out)
    print(summary.format_text(res))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
