"""Convert's side of the cross-validation splits: the options that name cases, and nnU-Net's preprocessed copy.

The splits themselves are built and checked by :mod:`m2s_nnunet.splits`; here case names from ``--test-list`` and
``--splits`` are read the way ``pair_inputs`` names cases, and the ``splits_final.json`` nnU-Net already holds in
``$nnUNet_preprocessed`` is compared with (and, on ``--install-splits``, replaced by) the new one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from m2s_nnunet.conversion.options import ConversionError, ConvertOptions
from m2s_nnunet.conversion.pairing import sanitize_case
from m2s_nnunet.errors import UserError
from m2s_nnunet.inputs.endings import CONVERT_VOLUME_ENDINGS, PICTURE_ENDINGS
from m2s_nnunet.naming import split_ending
from m2s_nnunet.splits import Folds, kfold_splits, load_user_splits, stale_preprocessed_splits
from m2s_nnunet.splits import read_case_list as _read_case_list


def _case_of(name: str) -> str:
    return sanitize_case(split_ending(name, PICTURE_ENDINGS + CONVERT_VOLUME_ENDINGS)[0])


def read_case_list(path: Path) -> list[str]:
    """One case per line (file names allowed); blank lines and '#' comments ignored."""
    try:
        return _read_case_list(path, _case_of)
    except UserError as err:
        raise ConversionError(str(err)) from err


def make_splits(train_cases: list[str], opts: ConvertOptions) -> Folds | None:
    """``splits_final.json`` content from --splits FILE or --folds K (KFold, seed 12345 as nnU-Net)."""
    try:
        if opts.folds is not None:
            return kfold_splits(train_cases, opts.folds)
        if opts.splits is not None:
            return load_user_splits(Path(opts.splits), train_cases, _case_of)
    except UserError as err:
        raise ConversionError(str(err)) from err
    return None


def preprocessed_dir(ds_name: str) -> Path | None:
    """``$nnUNet_preprocessed/DatasetXXX_Name`` when it exists: nnU-Net already planned a previous version."""
    env = os.environ.get("nnUNet_preprocessed")
    if env and (Path(env) / ds_name).is_dir():
        return Path(env) / ds_name
    return None


def stale_splits(ds_name: str, splits: Folds | None, train_cases: list[str]) -> tuple[Path, str] | None:
    """The preprocessed ``splits_final.json`` that would clash with this conversion, and why (None: no clash)."""
    pre = preprocessed_dir(ds_name)
    existing = pre / "splits_final.json" if pre is not None else None
    if existing is None or not existing.is_file():
        return None
    why = stale_preprocessed_splits(existing, splits, train_cases)
    return (existing, why) if why else None


def install_splits(final: Path, has_splits: bool, stale: bool) -> str | None:
    """``--install-splits``: put the new splits (or nothing, if the old file is stale) into nnU-Net's preprocessed
    folder, keeping the old file as ``.bak``; return what was done, None when there is nothing to install."""
    pre = preprocessed_dir(final.name)
    if pre is None or not (has_splits or stale):
        return None
    dst = pre / "splits_final.json"
    if dst.exists():
        shutil.copyfile(dst, pre / "splits_final.json.bak")
    if has_splits:
        shutil.copyfile(final / "splits_final.json", dst)
        return f"installed {dst} (previous file kept as splits_final.json.bak)"
    dst.unlink()
    return f"moved the stale {dst} to splits_final.json.bak (nnU-Net makes a new 5-fold split)"
