"""The nnU-Net raw dataset folder ``nnUNet_raw/DatasetXXX_Name``: where it goes, whether it may be replaced, and
writing it.

The dataset is built in a hidden sibling folder that is renamed into place only when complete
(:mod:`m2s_nnunet.staging`), so a refused or killed run never leaves a half-written dataset. ``--overwrite``
replaces only what a previous conversion wrote (``m2s_conversion.json`` lists it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

from m2s_nnunet import staging
from m2s_nnunet.conversion.kind import InputKind
from m2s_nnunet.conversion.labels import LabelPlan
from m2s_nnunet.conversion.options import ConversionError, ConvertOptions
from m2s_nnunet.conversion.pairing import Pair
from m2s_nnunet.errors import writing
from m2s_nnunet.naming import short_list
from m2s_nnunet.nnunet_env import find_dataset_folder
from m2s_nnunet.splits import Folds

OWNED_TOP_LEVEL = {"imagesTr", "labelsTr", "imagesTs", "labelsTs", "dataset.json", "splits_final.json",
                   "m2s_conversion.json"}


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name ``DatasetXXX_Name`` (3-digit id, name without spaces)."""
    if not 1 <= int(dataset_id) <= 999:
        raise ConversionError(f"dataset id must be 1..999, got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConversionError(f"dataset name '{name}' may only contain letters, digits, '_', '.', '-'")
    return f"Dataset{int(dataset_id):03d}_{name}"


def resolve_raw_root(out: Path | None) -> Path:
    """``--out`` or ``$nnUNet_raw``; one of them must be given."""
    if out is not None:
        return Path(out)
    env = os.environ.get("nnUNet_raw")
    if not env:
        raise ConversionError("no output folder: pass --out DIR or set the nnUNet_raw environment variable")
    return Path(env)


def refuse_replacing(final: Path, opts: ConvertOptions) -> None:
    """Refuse a dataset folder that exists without --overwrite, is a link, holds the user's own files, or whose id
    another dataset folder already uses (nnU-Net finds datasets by id)."""
    _refuse_linked_dataset(final)
    if final.exists() and not opts.overwrite:
        raise ConversionError(f"{final} already exists; pass --overwrite to replace it (nothing was written)")
    if final.exists():
        _refuse_foreign_files(final)
    found = find_dataset_folder(str(int(opts.dataset_id)), final.parent)
    others = [p.name for p in (found if isinstance(found, list) else [found]) if p.name != final.name]
    if others:
        raise ConversionError(
            f"dataset id {opts.dataset_id} is already used by {others} in {final.parent}; "
            "nnU-Net needs unique ids: pick another -d or remove that folder"
        )


def _refuse_linked_dataset(final: Path) -> None:
    """A dataset folder that is a symbolic link (to another disk) is never replaced: --overwrite would put a new
    folder in place of the link, and the rename-and-delete of the old version cannot delete through a link."""
    if not final.is_symlink():
        return
    target = Path(os.path.realpath(final))
    if not final.exists():
        raise ConversionError(f"{final} is a broken symbolic link (to {os.readlink(final)}); nothing was written.\n"
                              "Fix: remove the link (or make it point to an existing folder), then run again.")
    if target.name == final.name:
        fix = (f"convert into the link's target with --out {target.parent} (add --overwrite to replace it); the link "
               "keeps pointing at the new version")
    else:
        fix = (f"delete or move {target} yourself and remove the link, then run again (or convert with --out into "
               "another folder)")
    raise ConversionError(
        f"{final} is a symbolic link to {target}: convert does not replace a linked dataset folder (--overwrite "
        f"would put a new folder in {final.parent} in place of the link). Nothing was written.\nFix: {fix}."
    )


def _refuse_foreign_files(final: Path) -> None:
    """--overwrite replaces what a previous conversion wrote, never files the user put into the dataset folder."""
    try:
        cases = json.loads((final / "m2s_conversion.json").read_text())["cases"]
        owned = {f"{part}/{c}{suffix}{end}" for c, info in cases.items() for end in (".png", ".nii.gz")
                 for part, suffix in ((f"images{info['split']}", "_0000"), (f"labels{info['split']}", ""))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        owned = None
    foreign = []
    for p in sorted(final.rglob("*")):
        rel = p.relative_to(final).as_posix()
        top = rel.split("/", 1)[0]
        if top not in OWNED_TOP_LEVEL or (p.is_file() and "/" in rel and (owned is None or rel not in owned)):
            foreign.append(rel + ("/" if p.is_dir() else ""))
    if foreign:
        why = ("it was not written by m2s-nnunet convert (no readable m2s_conversion.json)" if owned is None
               else "these files were not written by m2s-nnunet convert")
        raise ConversionError(
            f"--overwrite would delete {len(foreign)} file(s) in {final} that are not part of the previous "
            f"conversion ({why}): {short_list(foreign, 10)}\nFix: move them out of the dataset folder (or delete "
            "the folder yourself), then run again. Nothing was written."
        )


def write_dataset(final: Path, kind: InputKind, plan: LabelPlan, channels: int, train: list[Pair],
                  test: list[Pair], splits: Folds | None, opts: ConvertOptions) -> None:
    """Write every (checked) case, dataset.json, splits_final.json and m2s_conversion.json into a staging folder,
    then swap it into place as ``final``; on any failure nothing is left behind."""
    from tqdm import tqdm

    end = kind.file_ending
    tmp = staging.staging_dir(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        for sub in ("imagesTr", "labelsTr") + (("imagesTs", "labelsTs") if test else ()):
            (tmp / sub).mkdir(parents=True)
        jobs = [(p, "Tr") for p in train] + [(p, "Ts") for p in test]
        for p, part in tqdm(jobs, desc="write", unit="case", disable=None if opts.progress else True):
            img_dst = tmp / f"images{part}" / f"{p.case}_0000{end}"
            lab_dst = tmp / f"labels{part}" / f"{p.case}{end}"
            try:
                kind.write_case(p, img_dst, lab_dst, plan, opts)
            except Exception as exc:  # noqa: BLE001
                raise ConversionError(f"failed on {p.image} / {p.mask}: {exc}; nothing was written") from exc
        write_dataset_json(tmp, kind, channels, plan, len(train), len(test), opts)
        if splits is not None:
            _write_json(tmp / "splits_final.json", splits, 4)
        provenance = {
            "images": str(Path(opts.images).resolve()),
            "masks": str(Path(opts.masks).resolve()),
            "resize": opts.resize,
            "label_mapping": plan.description,
            "cases": {p.case: {"image": p.image.name, "mask": p.mask.name, "split": part} for p, part in jobs},
        }
        _write_json(tmp / "m2s_conversion.json", provenance, 1)
        staging.swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_dataset_json(folder: Path, kind: InputKind, channels: int, plan: LabelPlan, n_train: int, n_test: int,
                       opts: ConvertOptions) -> None:
    """``folder/dataset.json`` by nnU-Net's own writer: 3 channels are R, G, B; one is named by --modality."""
    channel_names = {"0": "R", "1": "G", "2": "B"} if channels == 3 else {"0": opts.modality or "grey"}
    with writing(folder / "dataset.json"):
        generate_dataset_json(
            str(folder),
            channel_names,
            dict(plan.names),
            n_train,
            kind.file_ending,
            dataset_name=opts.name,
            description=f"converted by m2s-nnunet convert ({n_train} training, {n_test} test cases)",
            overwrite_image_reader_writer=kind.reader_writer,
            license="see the source of the input images",
            converted_by="m2s-nnunet convert",
        )


def _write_json(path: Path, data: object, indent: int) -> None:
    with writing(path):
        path.write_text(json.dumps(data, indent=indent) + "\n")
