"""Match every image with its mask by file stem, and tell which kind of input the folders hold.

Pairing happens before any file is decoded, so a naming mistake (a suffix, an orphan file, two files that collide
after sanitising) is refused in one message that lists every culprit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from m2s_nnunet.conversion.options import ConversionError
from m2s_nnunet.errors import UserError
from m2s_nnunet.inputs import folders
from m2s_nnunet.inputs.endings import CONVERT_VOLUME_ENDINGS, PICTURE_ENDINGS
from m2s_nnunet.naming import short_list, split_ending


@dataclass
class Pair:
    """One case: its sanitised id, the image file and the mask file."""

    case: str
    image: Path
    mask: Path


def sanitize_case(stem: str) -> str:
    """Case ids become file names inside nnU-Net folders: keep them to [A-Za-z0-9_.-]."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def _list_inputs(folder: Path, endings: Sequence[str]) -> dict[str, Path]:
    """Visible files with one of ``endings``, by stem; broken links and duplicate stems are refused."""
    try:
        folders.check_input_folder(folder)
    except UserError as err:
        raise ConversionError(str(err)) from err
    broken = [p.name for p in folders.broken_links(folder) if split_ending(p.name, endings)[1]]
    if broken:
        raise ConversionError(f"{folder}: broken symbolic link(s) (their targets do not exist): {short_list(broken)}; "
                              "fix or remove them")
    found: dict[str, Path] = {}
    dupes = []
    for p in sorted(folder.iterdir()):
        stem, end = split_ending(p.name, endings)
        if not end or not p.is_file() or p.name.startswith("."):
            continue
        if stem in found:
            dupes.append(f"{found[stem].name} / {p.name}")
        found[stem] = p
    if dupes:
        raise ConversionError(f"{folder}: several files share a name: {short_list(dupes)}; keep one per case")
    return found


def pair_inputs(images: Path, masks: Path, mask_suffix: str = "") -> tuple[list[Pair], str]:
    """Match images and masks by file stem; return the pairs (sorted by case) and the kind ('2d' or '3d')."""
    vols = _list_inputs(images, CONVERT_VOLUME_ENDINGS)
    kind = "3d" if vols else "2d"
    endings = CONVERT_VOLUME_ENDINGS if vols else PICTURE_ENDINGS
    imgs = vols or _list_inputs(images, PICTURE_ENDINGS)
    if not imgs:
        raise ConversionError(f"no images ({', '.join(PICTURE_ENDINGS + CONVERT_VOLUME_ENDINGS)}) in {images}")
    for folder in dict.fromkeys((images, masks)):
        _refuse_mixed_kinds(folder)
    msks = _list_inputs(masks, endings)
    pairs, no_mask, used = [], [], set()
    for stem, img in imgs.items():
        candidates = [stem + mask_suffix]
        if re.search(r"_\d{4}$", stem):  # nnU-Net style case_0000 image next to case label
            candidates.append(stem[:-5] + mask_suffix)
        hit = next((c for c in candidates if c in msks), None)
        if hit is None:
            no_mask.append(img.name)
            continue
        used.add(hit)
        case = hit[: len(hit) - len(mask_suffix)] if mask_suffix else hit
        pairs.append(Pair(sanitize_case(case), img, msks[hit]))
    no_image = sorted(msks[s].name for s in set(msks) - used)
    _refuse_unmatched(images, masks, no_mask, no_image)
    _refuse_clashes(pairs)
    return sorted(pairs, key=lambda p: p.case), kind


def _refuse_unmatched(images: Path, masks: Path, no_mask: list[str], no_image: list[str]) -> None:
    problems = []
    if no_mask:
        problems.append(f"{len(no_mask)} image(s) without a mask in {masks}: {short_list(no_mask)}")
    if no_image:
        problems.append(f"{len(no_image)} mask(s) without an image in {images}: {short_list(no_image)}")
    if problems:
        hint = " (masks use a name suffix? pass --mask-suffix, e.g. --mask-suffix _mask)"
        raise ConversionError(
            "unmatched names; images and masks are paired by file stem"
            + hint
            + ":\n  "
            + "\n  ".join(problems)
            + "\nRemove or rename the unmatched files."
        )


def _refuse_clashes(pairs: list[Pair]) -> None:
    """Two stems that differ only in characters outside [A-Za-z0-9_.-] would write the same case files."""
    seen: dict[str, str] = {}
    clashes = []
    for p in pairs:
        if p.case in seen:
            clashes.append(f"{seen[p.case]} / {p.image.name}")
        seen[p.case] = p.image.name
    if clashes:
        raise ConversionError(
            f"file names collide after replacing characters outside [A-Za-z0-9_.-]: {short_list(clashes)}; rename them"
        )


def _refuse_mixed_kinds(folder: Path) -> None:
    """A folder holding NIfTI volumes *and* 2D pictures is ambiguous: one kind would be dropped silently."""
    vols, pics = _list_inputs(folder, CONVERT_VOLUME_ENDINGS), _list_inputs(folder, PICTURE_ENDINGS)
    if vols and pics:
        raise ConversionError(
            f"{folder} holds both NIfTI volumes ({short_list(sorted(p.name for p in vols.values()), 3)}) and 2D "
            f"pictures ({short_list(sorted(p.name for p in pics.values()), 3)}); convert one kind at a time: move "
            "the other files to another folder"
        )


def unsupported_files(folder: Path) -> list[str]:
    """Visible files whose ending is neither a picture nor a volume (they are not converted)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")
                  and not split_ending(p.name, PICTURE_ENDINGS + CONVERT_VOLUME_ENDINGS)[1])
