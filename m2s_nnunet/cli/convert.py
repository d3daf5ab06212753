"""``m2s-nnunet convert IMAGES MASKS -d ID -n NAME``: build nnUNet_raw/DatasetXXX_NAME (``m2s_nnunet.conversion``).

Every input is checked before anything is written; a refusal is a ``ConversionError`` (a ``UserError``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class _DeprecatedAlias(argparse.Action):
    """An old option spelling that still works: stores like the new one and says so once on stderr."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"m2s-nnunet convert: note: {option_string} is deprecated, use {self.new} (same meaning)",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
        "--mask-values",
        nargs="+",
        metavar="NAME=VALUE",
        default=None,
        help="raw mask value of each foreground class, in label order, e.g. ggo=1 consolidation=2 "
        "or polyp=255 (needed unless masks are 0/1, 0/255 or already 0..K)",
    )
    p.add_argument("--labels", nargs="+", dest="mask_values", action=_DeprecatedAlias, new="--mask-values",
                   default=None, help=argparse.SUPPRESS)  # the old spelling, kept for existing scripts
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
    return p


def run(args: argparse.Namespace) -> int:
    from m2s_nnunet.conversion import ConvertOptions, convert, format_report

    opts = ConvertOptions(
        images=args.images,
        masks=args.masks,
        dataset_id=args.dataset_id,
        name=args.name,
        out=args.out,
        resize=tuple(args.resize) if args.resize else None,
        labels=args.mask_values,
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
