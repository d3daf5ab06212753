"""Turn an images folder + a masks folder into an nnU-Net v2 raw dataset (``nnUNet_raw/DatasetXXX_Name``).

Two kinds of input are accepted:

* 2D pictures (png/jpg/jpeg/bmp/tif/tiff, RGB or grey): every image becomes ``<case>_0000.png``
  (one RGB PNG is read by nnU-Net's ``NaturalImage2DIO`` as 3 channels; nnU-Net rejects JPEG, so
  everything is re-encoded as PNG) and every mask ``<case>.png`` with consecutive labels 0..K;
* NIfTI volumes (``*.nii.gz``/``*.nii``, CT/MRI): ``<case>_0000.nii.gz`` + ``<case>.nii.gz`` after a geometry
  check of each image against its label.

Every file is decoded in full and checked before anything is written (corrupt, truncated, multi-page,
non-finite and out-of-range inputs are refused with the file named), all problems are reported together, and
the dataset is built in a hidden sibling folder that is renamed into place only when complete
(``staging.py``; what a killed run leaves behind is cleaned up by the next one).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from m2s_nnunet import staging
from m2s_nnunet.errors import UserError, writing
from m2s_nnunet.inputs import folders, pictures, volumes
from m2s_nnunet.naming import short_list, split_ending
from m2s_nnunet.splits import NNUNET_SPLIT_SEED, kfold_splits, load_user_splits, stale_preprocessed_splits  # noqa: F401
from m2s_nnunet.splits import read_case_list as _read_case_list

IMAGE_ENDINGS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
JPEG_ENDINGS = (".jpg", ".jpeg")
VOLUME_ENDINGS = (".nii.gz", ".nii")
GREY_MODES = {"1", "L", "I;16", "I;16B", "I;16L", "I"}
COLOUR_MODES = {"RGB", "P", "CMYK", "YCbCr"}
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I", "I;32", "I;32B", "I;32L"}
OWNED_TOP_LEVEL = {"imagesTr", "labelsTr", "imagesTs", "labelsTs", "dataset.json", "splits_final.json",
                   "m2s_conversion.json"}


class ConversionError(UserError):
    """A refused conversion; the message names the offending files and how to fix them."""


@dataclass
class ConvertOptions:
    images: Path
    masks: Path
    dataset_id: int
    name: str
    out: Path | None = None
    resize: tuple[int, int] | None = None
    labels: Sequence[str] | None = None
    label_name: str = "foreground"
    modality: str | None = None
    test_list: Path | None = None
    splits: Path | None = None
    folds: int | None = None
    install_splits: bool = False
    overwrite: bool = False
    limit: int | None = None
    mask_suffix: str = ""
    channels: str = "auto"
    binarize_masks: bool = False
    drop_alpha: bool = False
    geometry_tol: float = 1e-3
    progress: bool = True


@dataclass
class Pair:
    case: str
    image: Path
    mask: Path


@dataclass
class LabelPlan:
    """How raw mask values become nnU-Net labels: a lookup table or a threshold at 127."""

    names: dict[str, int]
    lut: dict[int, int] | None = None
    threshold: int | None = None
    description: str = ""

    def apply(self, arr: np.ndarray) -> np.ndarray:
        """Raw mask values -> uint8 labels (values absent from the table become 0; the scan refuses those)."""
        if self.threshold is not None:
            return (arr > self.threshold).astype(np.uint8)
        if arr.dtype == np.uint8:
            table = np.zeros(256, dtype=np.uint8)
            for src, dst in (self.lut or {}).items():
                if 0 <= src < 256:
                    table[src] = dst
            return table[arr]
        out = np.zeros(arr.shape, dtype=np.uint8)
        for src, dst in (self.lut or {}).items():
            out[arr == src] = dst
        return out


@dataclass
class ConversionReport:
    dataset_dir: Path
    kind: str
    n_train: int
    n_test: int
    channels: int
    size_range: str
    values_found: list[int]
    plan: LabelPlan
    warnings: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


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


def check_options(opts: ConvertOptions) -> None:
    """Refuse option values that would be accepted silently and do something else than asked."""
    problems = []
    if opts.limit is not None and opts.limit < 1:
        problems.append(f"--limit {opts.limit}: must be a positive number of cases (or leave it out for all)")
    if opts.folds is not None and opts.folds < 2:
        problems.append(f"--folds {opts.folds}: cross-validation needs at least 2 folds (or leave it out)")
    if opts.resize is not None and (len(opts.resize) != 2 or min(opts.resize) < 1):
        problems.append(f"--resize {opts.resize}: needs two positive sizes H W")
    if not (math.isfinite(opts.geometry_tol) and opts.geometry_tol >= 0):
        problems.append(f"--geometry-tol {opts.geometry_tol}: must be a finite number >= 0")
    if opts.channels not in ("auto", "rgb", "grey"):
        problems.append(f"--channels {opts.channels}: must be auto, rgb or grey")
    if opts.splits is not None and opts.folds is not None:
        problems.append("use either --splits FILE or --folds K, not both")
    if problems:
        raise ConversionError("invalid options (nothing was written):\n  " + "\n  ".join(problems))


def sanitize_case(stem: str) -> str:
    """Case ids become file names inside nnU-Net folders: keep them to [A-Za-z0-9_.-]."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def _list_inputs(folder: Path, endings: Sequence[str]) -> dict[str, Path]:
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
    """Match images and masks by file stem; return the pairs and the kind ('2d' or '3d')."""
    vols = _list_inputs(images, VOLUME_ENDINGS)
    kind = "3d" if vols else "2d"
    endings = VOLUME_ENDINGS if vols else IMAGE_ENDINGS
    imgs = vols or _list_inputs(images, IMAGE_ENDINGS)
    if not imgs:
        raise ConversionError(f"no images ({', '.join(IMAGE_ENDINGS + VOLUME_ENDINGS)}) in {images}")
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
    return sorted(pairs, key=lambda p: p.case), kind


def _refuse_mixed_kinds(folder: Path) -> None:
    """A folder holding NIfTI volumes *and* 2D pictures is ambiguous: one kind would be dropped silently."""
    vols, pics = _list_inputs(folder, VOLUME_ENDINGS), _list_inputs(folder, IMAGE_ENDINGS)
    if vols and pics:
        raise ConversionError(
            f"{folder} holds both NIfTI volumes ({short_list(sorted(p.name for p in vols.values()), 3)}) and 2D "
            f"pictures ({short_list(sorted(p.name for p in pics.values()), 3)}); convert one kind at a time: move "
            "the other files to another folder"
        )


def unsupported_files(folder: Path) -> list[str]:
    """Visible files whose ending is neither a picture nor a volume (they are not converted)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")
                  and not split_ending(p.name, IMAGE_ENDINGS + VOLUME_ENDINGS)[1])


def parse_label_args(items: Sequence[str] | None) -> list[tuple[str, int]]:
    """``name=value`` pairs; the raw value ``value`` becomes label 1, 2, ... in the given order."""
    out = []
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConversionError(f"--labels expects NAME=VALUE items, got '{item}'")
        try:
            out.append((name, int(value)))
        except ValueError as exc:
            raise ConversionError(f"--labels: value of '{item}' is not an integer") from exc
    out = [(n, v) for n, v in out if not (n == "background" and v == 0)]
    names = [n for n, _ in out]
    if len(set(names)) != len(names) or "background" in names:
        raise ConversionError("--labels: names must be unique and 'background' is reserved for value 0")
    if any(v == 0 for _, v in out) or len({v for _, v in out}) != len(out):
        raise ConversionError("--labels: values must be unique and non-zero (0 is background)")
    return out


def decide_label_plan(values: dict[str, set[int]], jpeg_masks: list[str], opts: ConvertOptions) -> LabelPlan:
    """Choose how raw mask values map to 0..K, or refuse with the files whose values do not fit."""
    given = parse_label_args(opts.labels)
    union = set().union(*values.values()) if values else set()
    if (opts.binarize_masks or (jpeg_masks and len(given) <= 1)) and max(union, default=0) > 1:
        name = given[0][0] if given else opts.label_name
        why = "--binarize-masks" if opts.binarize_masks else "JPEG masks"
        return LabelPlan({"background": 0, name: 1}, threshold=127, description=f"value > 127 -> 1 ({why})")
    if given:
        allowed = {0} | {v for _, v in given}
        bad = {c: sorted(v - allowed) for c, v in values.items() if v - allowed}
        if bad:
            raise ConversionError(_bad_values_message(bad, f"--labels allows only {sorted(allowed)}"))
        names = {"background": 0} | {n: i + 1 for i, (n, _) in enumerate(given)}
        lut = {0: 0} | {v: i + 1 for i, (_, v) in enumerate(given)}
        return LabelPlan(names, lut=lut, description=", ".join(f"{s} -> {d}" for s, d in lut.items()))
    if union <= {0, 1}:
        return LabelPlan({"background": 0, opts.label_name: 1}, lut={0: 0, 1: 1}, description="0/1 kept")
    for top in (255, 65535):
        if union <= {0, top}:
            return LabelPlan({"background": 0, opts.label_name: 1}, lut={0: 0, top: 1},
                             description=f"0/{top} -> 0/1")
    if union == set(range(max(union) + 1)):
        names = {"background": 0} | {f"class_{i}": i for i in range(1, max(union) + 1)}
        return LabelPlan(names, lut={i: i for i in union}, description="consecutive labels kept")
    scheme, bad = _closest_scheme(values)
    raise ConversionError(_bad_values_message(
        bad, f"values found {sorted(union)[:12]} are neither 0/1, 0/255 nor 0..K; most masks are {scheme}, these "
        "are not"))


def _closest_scheme(values: dict[str, set[int]]) -> tuple[str, dict[str, list[int]]]:
    """The label scheme most masks follow, and the masks that break it with their stray values.

    One stray value in 1 of 150 masks must name that mask, not the 20 first masks in alphabetical order.
    """
    schemes = {"0/1": {0, 1}, "0/255": {0, 255}, "0/65535": {0, 65535}}
    maxima = Counter(max(v, default=0) for v in values.values())
    k = maxima.most_common(1)[0][0] if maxima else 0
    if 1 < k < 255:  # the multi-class scheme most masks follow (0..255 would accept any 8-bit mask)
        schemes[f"0..{k}"] = set(range(k + 1))
    ranked = []
    for name, allowed in schemes.items():
        ranked.append(({c: sorted(v - allowed) for c, v in values.items() if v - allowed}, name))
    bad, name = min(ranked, key=lambda t: len(t[0]))
    return name, bad


def _bad_values_message(bad: dict[str, list[int]], why: str) -> str:
    lines = [f"{c}: {v[:10]}" for c, v in sorted(bad.items())]
    return (
        f"unexpected label values in {len(bad)} mask(s) ({why}):\n  "
        + "\n  ".join(lines[:20])
        + ("\n  ..." if len(lines) > 20 else "")
        + "\nFix: pass --labels NAME=VALUE for each foreground value (e.g. --labels polyp=255), or "
        "--binarize-masks to threshold at 127 (anti-aliased or JPEG masks)."
    )


# ---------------------------------------------------------------------------------------------- 2D pictures
def _image_channels(mode: str, info: dict, opts: ConvertOptions) -> int | str:
    """Channel count after conversion, or a problem keyword ('alpha', 'float', 'mode', 'deep')."""
    has_alpha = mode in ALPHA_MODES or "transparency" in info
    if has_alpha and not opts.drop_alpha:
        return "alpha"
    if mode == "F":
        return "float"
    if opts.channels == "rgb":
        return "deep" if mode in SIXTEEN_BIT_MODES else 3
    if opts.channels == "grey":
        return 1
    if mode in GREY_MODES or mode in ("LA", "La"):
        return 1
    if mode in COLOUR_MODES or mode in ALPHA_MODES:
        return 3
    return "mode"


def _load_image(path: Path, opts: ConvertOptions):
    """The picture as nnU-Net should read it: RGB or grey (8 or 16 bit), resized if asked; never clipped."""
    from PIL import Image

    im = pictures.open_picture(path)
    mode = im.mode
    channels = _image_channels(mode, im.info, opts)
    if channels == 3 and mode != "RGB":
        im = im.convert("RGB")
    elif channels == 1 and mode in SIXTEEN_BIT_MODES and mode != "I;16":
        im = pictures.as_uint16(im)  # PIL's convert('L') would clip 16/32-bit values to 8 bits
    elif channels == 1 and mode not in ("L", "I;16"):
        im = im.convert("L")
    if opts.resize:
        h, w = opts.resize
        im = im.resize((w, h), Image.BILINEAR)
    return im


def _scan_2d(pairs: list[Pair], opts: ConvertOptions) -> dict:
    """Decode every image and mask in full; collect every problem (by kind) before anything is written."""
    from tqdm import tqdm

    problems: dict[str, list[str]] = {}
    chans: dict[str, int] = {}
    sizes: list[tuple[int, int]] = []
    values: dict[str, set[int]] = {}
    mismatched: list[str] = []
    mask_notes: list[str] = []
    for p in tqdm(pairs, desc="check", unit="case", disable=None if opts.progress else True):
        try:
            im = pictures.open_picture(p.image)
        except UserError as err:
            problems.setdefault("unreadable", []).append(f"{p.image}: {err.problem}")
            im = None
        if im is not None:
            size = im.size
            c = _image_channels(im.mode, im.info, opts)
            if c == "alpha":
                problems.setdefault("alpha", []).append(f"{p.image.name} ({im.mode})")
            elif c in ("float", "mode"):
                problems.setdefault("mode", []).append(f"{p.image.name} ({im.mode})")
            elif c == "deep":
                problems.setdefault("deep", []).append(f"{p.image.name} ({im.mode})")
            elif why := pictures.integer_range_problem(im):
                problems.setdefault("range", []).append(f"{p.image.name}: {why}")
            else:
                chans[p.image.name] = int(c)
        try:
            mask = pictures.label_picture(p.mask, opts.drop_alpha, mask_notes)
        except UserError as err:
            key = "mask_alpha" if isinstance(err, pictures.AmbiguousAlphaError) else "unreadable"
            problems.setdefault(key, []).append(f"{p.mask}: {err.problem}")
            continue
        if im is None:
            continue
        values[p.mask.name] = {int(v) for v in _unique_values(mask)}
        if mask.shape != (size[1], size[0]):
            mismatched.append(f"{p.image.name} {size[1]}x{size[0]} vs {p.mask.name} {mask.shape[0]}x{mask.shape[1]}")
        sizes.append((size[1], size[0]))
    if mismatched and not opts.resize:
        problems["size"] = mismatched
    if len(set(chans.values())) > 1:
        by = {k: [n for n, c in chans.items() if c == k] for k in sorted(set(chans.values()))}
        problems["channels"] = [f"{k} channel(s): {len(v)} image(s), e.g. {short_list(v, 5)}" for k, v in by.items()]
    _raise_problems(
        problems,
        {
            "unreadable": "unreadable files (corrupt, truncated, empty, multi-page or not an image; re-export, "
            "replace or remove them)",
            "alpha": "images with an alpha channel (RGBA/LA); nnU-Net would read 4 channels. "
            "Drop alpha / convert to "
            "RGB (e.g. PIL .convert('RGB')), or pass --drop-alpha",
            "mode": "images with an unsupported pixel type (32-bit float or exotic mode); save them as 8/16-bit PNG",
            "deep": "16/32-bit grey images cannot become RGB without losing their values; drop --channels rgb "
            "(keep them grey) or rescale them to 8 bits yourself",
            "range": "32-bit integer images whose values do not fit a 16-bit PNG (they would be clipped); "
            "rescale them to 0..65535 or 0..255",
            "mask_alpha": "masks with an alpha channel that cannot be ignored safely (it may be the mask itself); "
            "pass --drop-alpha if the colour channels hold the labels, or save the alpha channel as the mask "
            "(e.g. PIL im.getchannel('A'))",
            "size": "image/mask size mismatch (HxW); check the pairing, or pass --resize H W to resize both",
            "channels": "mixed channel counts (RGB and grey); pass --channels rgb or --channels grey to unify",
        },
    )
    return {
        "channels": next(iter(chans.values()), 1),
        "sizes": sizes,
        "values": values,
        "mismatched": mismatched,
        "mask_notes": mask_notes,
    }


def _raise_problems(problems: dict[str, list[str]], titles: dict[str, str]) -> None:
    if not problems:
        return
    parts = [
        f"{titles[k]}:\n  " + "\n  ".join(v[:20]) + (f"\n  ... (+{len(v) - 20} more)" if len(v) > 20 else "")
        for k, v in problems.items()
    ]
    raise ConversionError("conversion refused, nothing was written:\n" + "\n".join(parts))


def _write_2d(pair: Pair, img_dst: Path, lab_dst: Path, plan: LabelPlan, opts: ConvertOptions) -> None:
    from PIL import Image

    im = pictures.open_picture(pair.image)
    plain = im.format == "PNG" and im.mode in ("RGB", "L") and "transparency" not in im.info
    if plain and not opts.resize and opts.channels == "auto":
        shutil.copyfile(pair.image, img_dst)  # a real, fully decoded PNG: skip a decode/encode round trip
    else:
        _load_image(pair.image, opts).save(img_dst, format="PNG", compress_level=3)
    lab = Image.fromarray(plan.apply(pictures.label_picture(pair.mask, opts.drop_alpha)))
    if opts.resize:
        h, w = opts.resize
        lab = lab.resize((w, h), Image.NEAREST)
    lab.save(lab_dst, format="PNG", compress_level=3)


# ---------------------------------------------------------------------------------------------- 3D volumes
GEOMETRY = ("size", "spacing", "origin", "direction")


def _geometry(image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def _scan_3d(pairs: list[Pair], opts: ConvertOptions) -> dict:
    """Read every volume and label in full (truncation, NaN/inf, dimensions, geometry) before writing anything."""
    from tqdm import tqdm

    problems: dict[str, list[str]] = {}
    shapes, spacings, values, regridded, plain_gz = [], [], {}, [], []
    for p in tqdm(pairs, desc="check", unit="case", disable=None if opts.progress else True):
        try:
            image = volumes.read_volume(p.image)
            label = volumes.read_volume(p.mask)
        except UserError as err:
            problems.setdefault("unreadable", []).append(f"{err.path}: {err.problem}")
            continue
        plain_gz += [f.name for f in (p.image, p.mask) if _named_gz_but_plain(f)]
        dims = [(f, im) for f, im in ((p.image, image), (p.mask, label))
                if im.GetDimension() != 3 or im.GetNumberOfComponentsPerPixel() != 1]
        if dims:
            problems.setdefault("dims", []).extend(
                f"{f.name}: {im.GetDimension()}D, {im.GetNumberOfComponentsPerPixel()} component(s)" for f, im in dims)
            continue
        try:
            volumes.finite_array(image, p.image)
            uniq = _unique_values(volumes.label_array(label, p.mask))
        except UserError as err:
            problems.setdefault("values", []).append(f"{err.path}: {err.problem}")
            continue
        geo_img, geo_lab = _geometry(image), _geometry(label)
        diffs = [
            n
            for n, a, b in zip(GEOMETRY, geo_img, geo_lab, strict=True)
            if len(a) != len(b) or not np.allclose(a, b, rtol=0, atol=opts.geometry_tol if n != "size" else 0)
        ]
        if diffs:
            detail = "; ".join(f"{d} {geo_img[GEOMETRY.index(d)]} vs {geo_lab[GEOMETRY.index(d)]}" for d in diffs)
            problems.setdefault("geometry", []).append(f"{p.image.name} vs {p.mask.name}: {detail}")
            continue
        if geo_img[1:] != geo_lab[1:]:
            regridded.append(p.mask.name)
        values[p.mask.name] = {int(v) for v in uniq}
        shapes.append(tuple(reversed(geo_img[0])))
        spacings.append(tuple(reversed(geo_img[1])))
    _raise_problems(
        problems,
        {
            "unreadable": "unreadable volumes or labels (empty, truncated, damaged or not NIfTI; re-export or "
            "remove them)",
            "dims": "volumes that are not single-channel 3D "
            "(split 4D/multi-modal data into one file per channel, "
            "e.g. with nnUNetv2_convert_MSD_dataset)",
            "values": "volumes with NaN/infinite voxels or labels with non-integer values "
            "(replace NaN/inf by a real value; resample labels with nearest-neighbour interpolation)",
            "geometry": f"image/label geometry mismatch (tolerance {opts.geometry_tol}); "
            "resample the label onto "
            "its image grid",
        },
    )
    return {"channels": 1, "sizes": shapes, "spacings": spacings, "values": values, "regridded": regridded,
            "plain_gz": plain_gz}


def _named_gz_but_plain(path: Path) -> bool:
    """A ``.nii.gz`` file that is not gzip-compressed (SimpleITK and nnU-Net read it; copying it keeps it wrong)."""
    return path.name.lower().endswith(".nii.gz") and not volumes.is_gzip(path)


def _write_3d(pair: Pair, img_dst: Path, lab_dst: Path, plan: LabelPlan) -> None:
    """The image as it is (already checked in full); the label with the image's exact geometry.

    A label whose spacing/origin/direction differ within ``--geometry-tol`` would otherwise keep its own, and
    ``nnUNetv2_plan_and_preprocess --verify_dataset_integrity`` would refuse it. Images are copied byte for byte
    when they are real ``.nii.gz`` files (gzip magic bytes), else written compressed with SimpleITK.
    """
    import SimpleITK as sitk

    image = volumes.read_volume(pair.image)
    if pair.image.name.lower().endswith(".nii.gz") and volumes.is_gzip(pair.image):
        shutil.copyfile(pair.image, img_dst)
    else:  # .nii, or a plain NIfTI file named .nii.gz: written as a real .nii.gz
        sitk.WriteImage(image, str(img_dst), True)
    label = volumes.read_volume(pair.mask)
    out = sitk.GetImageFromArray(plan.apply(volumes.label_array(label, pair.mask)))
    out.CopyInformation(image)
    sitk.WriteImage(out, str(lab_dst), True)


# ---------------------------------------------------------------------------------------------- splits
def _case_of(name: str) -> str:
    return sanitize_case(split_ending(name, IMAGE_ENDINGS + VOLUME_ENDINGS)[0])


def read_case_list(path: Path) -> list[str]:
    """One case per line (file names allowed); blank lines and '#' comments ignored."""
    try:
        return _read_case_list(path, _case_of)
    except UserError as err:
        raise ConversionError(str(err)) from err


def make_splits(train_cases: list[str], opts: ConvertOptions) -> list[dict[str, list[str]]] | None:
    """``splits_final.json`` content from --splits FILE or --folds K (KFold, seed 12345 as nnU-Net)."""
    try:
        if opts.folds is not None:
            return kfold_splits(train_cases, opts.folds)
        if opts.splits is not None:
            return load_user_splits(Path(opts.splits), train_cases, _case_of)
    except UserError as err:
        raise ConversionError(str(err)) from err
    return None


# ---------------------------------------------------------------------------------------------- driver
def convert(opts: ConvertOptions) -> ConversionReport:
    """Check everything, then build the dataset atomically; raise ConversionError on any refusal.

    Leftovers of interrupted runs are handled first (``staging.recover_leftovers``); what was done with them is in
    the report's warnings, and in the message of a refusal, which otherwise says that nothing was written.
    """
    check_options(opts)
    root = resolve_raw_root(opts.out)
    ds_name = dataset_folder_name(opts.dataset_id, opts.name)
    final = root / ds_name
    try:
        folders.check_output_folder(root, "output folder (nnUNet_raw)")
    except UserError as err:
        raise ConversionError(str(err) + "\nNothing was written.") from err
    recovered = staging.recover_leftovers(final)
    try:
        return _convert_checked(opts, root, ds_name, final, list(recovered))
    except UserError as err:
        if not recovered:
            raise
        raise ConversionError(
            f"{err}\nNote: before this refusal, leftovers of interrupted runs in {root} were handled:\n  "
            + "\n  ".join(recovered)
        ) from err


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


def _convert_checked(opts: ConvertOptions, root: Path, ds_name: str, final: Path, warn: list[str]) -> ConversionReport:
    """``convert`` after the output folder check and the recovery of interrupted runs (notes in ``warn``)."""
    from tqdm import tqdm

    _refuse_linked_dataset(final)
    if final.exists() and not opts.overwrite:
        raise ConversionError(f"{final} already exists; pass --overwrite to replace it (nothing was written)")
    if final.exists():
        _refuse_foreign_files(final)
    others = [p.name for p in root.glob(f"Dataset{int(opts.dataset_id):03d}_*") if p.name != ds_name]
    if others:
        raise ConversionError(
            f"dataset id {opts.dataset_id} is already used by {others} in {root}; "
            "nnU-Net needs unique ids: pick another -d or remove that folder"
        )
    pairs, kind = pair_inputs(Path(opts.images), Path(opts.masks), opts.mask_suffix)
    if kind == "3d":
        if opts.resize:
            raise ConversionError("--resize is for 2D pictures only; nnU-Net resamples volumes itself")
        if not opts.modality:
            raise ConversionError(
                "NIfTI volumes need --modality: 'CT' (Hounsfield units -> nnU-Net "
                "CTNormalization) or e.g. 'MRI' (per-image z-score)"
            )
    for folder in dict.fromkeys((Path(opts.images), Path(opts.masks))):
        skipped = unsupported_files(folder)
        if skipped:
            warn.append(f"{len(skipped)} file(s) in {folder} are neither pictures ({', '.join(IMAGE_ENDINGS)}) nor "
                        f"NIfTI volumes and were not converted: {short_list(skipped, 5)}")
    if opts.limit is not None:
        pairs = pairs[: opts.limit]
        warn.append(f"--limit {opts.limit}: only the first {len(pairs)} cases (sorted by name) are converted")
    test_cases = set(read_case_list(opts.test_list)) if opts.test_list else set()
    missing = sorted(test_cases - {p.case for p in pairs})
    if missing and opts.limit is None:
        raise ConversionError(
            f"--test-list {opts.test_list} names {len(missing)} case(s) that are not in the input: "
            f"{short_list(missing)}"
        )
    if missing:
        warn.append(f"{len(missing)} --test-list case(s) fall outside --limit and are skipped")
    scan = _scan_3d(pairs, opts) if kind == "3d" else _scan_2d(pairs, opts)
    jpeg_masks = [p.mask.name for p in pairs if p.mask.suffix.lower() in JPEG_ENDINGS]
    plan = decide_label_plan(scan["values"], jpeg_masks, opts)
    if jpeg_masks and plan.threshold is not None:
        warn.append(f"{len(jpeg_masks)} JPEG mask(s) thresholded at 127 (lossy compression leaves values 1..254)")
    if scan.get("mismatched"):
        warn.append(
            f"{len(scan['mismatched'])} image/mask pair(s) differ in size; both are resized "
            f"independently to {opts.resize}: {short_list(scan['mismatched'], 5)}"
        )
    if scan.get("mask_notes"):
        notes = scan["mask_notes"]
        warn.append(f"{len(notes)} mask(s) with an alpha channel were read from their colour channels: "
                    + "; ".join(notes[:3]) + (f"; ... (+{len(notes) - 3} more)" if len(notes) > 3 else ""))
    if scan.get("plain_gz"):
        warn.append(f"{len(scan['plain_gz'])} file(s) named .nii.gz are not gzip-compressed (plain NIfTI): read as "
                    f"such and written as real .nii.gz: {short_list(scan['plain_gz'], 5)}")
    if scan.get("regridded"):
        warn.append(f"{len(scan['regridded'])} label(s) differ from their image's spacing/origin/direction within "
                    f"--geometry-tol {opts.geometry_tol} and were written with the image's geometry: "
                    f"{short_list(scan['regridded'], 5)}")
    warn += _rare_labels(scan["values"], plan)
    empty = sorted(c for c, v in scan["values"].items() if not set(plan.apply(np.array(sorted(v)))) - {0})
    if empty:
        warn.append(f"{len(empty)} case(s) have no foreground: {short_list(empty, 5)}")
    train = [p for p in pairs if p.case not in test_cases]
    test = [p for p in pairs if p.case in test_cases]
    if not train:
        raise ConversionError("no training cases left after --test-list")
    splits = make_splits([p.case for p in train], opts)
    stale = _stale_splits(ds_name, splits, [p.case for p in train])
    if stale and not opts.install_splits:
        raise ConversionError(
            f"{stale[0]} does not fit this conversion: {stale[1]}. nnUNetv2_plan_and_preprocess or "
            "nnUNetv2_train would stop on it (nothing was written).\nFix: re-run with --install-splits (the old "
            "file is kept as splits_final.json.bak), or delete that file."
        )

    end = ".nii.gz" if kind == "3d" else ".png"
    tmp = staging.staging_dir(final)
    root.mkdir(parents=True, exist_ok=True)
    try:
        for sub in ("imagesTr", "labelsTr") + (("imagesTs", "labelsTs") if test else ()):
            (tmp / sub).mkdir(parents=True)
        jobs = [(p, "Tr") for p in train] + [(p, "Ts") for p in test]
        for p, part in tqdm(jobs, desc="write", unit="case", disable=None if opts.progress else True):
            img_dst = tmp / f"images{part}" / f"{p.case}_0000{end}"
            lab_dst = tmp / f"labels{part}" / f"{p.case}{end}"
            try:
                if kind == "3d":
                    _write_3d(p, img_dst, lab_dst, plan)
                else:
                    _write_2d(p, img_dst, lab_dst, plan, opts)
            except Exception as exc:  # noqa: BLE001
                raise ConversionError(f"failed on {p.image} / {p.mask}: {exc}; nothing was written") from exc
        channels = scan["channels"]
        dataset_json = _dataset_json(kind, channels, plan, len(train), len(test), opts)
        _write_json(tmp / "dataset.json", dataset_json, 4)
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
    size_range = _size_range(scan["sizes"])
    if opts.resize:
        size_range += f" (written as {opts.resize[0]}x{opts.resize[1]})"
    report = ConversionReport(
        final,
        kind,
        len(train),
        len(test),
        scan["channels"],
        size_range,
        sorted(set().union(*scan["values"].values())),
        plan,
        warn,
    )
    report.next_steps = _next_steps(final, opts, splits is not None, stale is not None)
    if opts.overwrite and _preprocessed_dir(ds_name) is not None:
        report.warnings.append(
            f"{_preprocessed_dir(ds_name)} holds preprocessing of the previous version; "
            "re-run nnUNetv2_plan_and_preprocess"
        )
    return report


def _rare_labels(values: dict[str, set[int]], plan: LabelPlan) -> list[str]:
    """A label found in a single mask of ten or more is more often a stray value than a class: say so."""
    if len(values) < 10 or plan.threshold is not None:
        return []
    notes = []
    for raw, label in sorted((plan.lut or {}).items()):
        holders = [c for c, v in values.items() if raw in v]
        if label and len(holders) == 1:
            notes.append(f"label {label} (raw value {raw}) occurs in only 1 of {len(values)} masks ({holders[0]}): "
                         "a stray value? Check that mask, or choose the labels with --labels")
    return notes


def _write_json(path: Path, data: object, indent: int) -> None:
    with writing(path):
        path.write_text(json.dumps(data, indent=indent) + "\n")


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


def _stale_splits(ds_name: str, splits: list | None, train_cases: list[str]) -> tuple[Path, str] | None:
    """The preprocessed ``splits_final.json`` that would clash with this conversion, and why (None: no clash)."""
    pre = _preprocessed_dir(ds_name)
    existing = pre / "splits_final.json" if pre is not None else None
    if existing is None or not existing.is_file():
        return None
    why = stale_preprocessed_splits(existing, splits, train_cases)
    return (existing, why) if why else None


def _unique_values(arr: np.ndarray) -> np.ndarray:
    """np.unique, but via a histogram for 8/16-bit masks (much faster on megapixel images)."""
    arr = np.asarray(arr)
    if arr.dtype in (np.uint8, np.uint16):
        return np.flatnonzero(np.bincount(arr.ravel(), minlength=1))
    return np.unique(arr)


def _size_range(sizes: list[tuple[int, ...]]) -> str:
    """Per-axis min..max, e.g. '332..1072 x 487..1920' (HxW or ZxYxX)."""
    if not sizes:
        return "-"
    arr = np.asarray(sizes)
    return " x ".join(f"{lo}..{hi}" if lo != hi else f"{lo}" for lo, hi in zip(arr.min(0), arr.max(0), strict=True))


def _dataset_json(kind: str, channels: int, plan: LabelPlan, n_train: int, n_test: int, opts: ConvertOptions) -> dict:
    if channels == 3:
        channel_names = {"0": "R", "1": "G", "2": "B"}
    else:
        channel_names = {"0": opts.modality or "grey"}
    return {
        "channel_names": channel_names,
        "labels": plan.names,
        "numTraining": n_train,
        "file_ending": ".nii.gz" if kind == "3d" else ".png",
        "overwrite_image_reader_writer": "SimpleITKIO" if kind == "3d" else "NaturalImage2DIO",
        "name": opts.name,
        "description": f"converted by m2s-nnunet convert ({n_train} training, {n_test} test cases)",
    }


def _preprocessed_dir(ds_name: str) -> Path | None:
    env = os.environ.get("nnUNet_preprocessed")
    if env and (Path(env) / ds_name).is_dir():
        return Path(env) / ds_name
    return None


def _next_steps(final: Path, opts: ConvertOptions, has_splits: bool, stale: bool = False) -> list[str]:
    """What to run next; ``--install-splits`` is applied here, before the steps that would read the splits."""
    src = final / "splits_final.json"
    pre = _preprocessed_dir(final.name)
    steps = []
    if pre is not None and opts.install_splits and (has_splits or stale):
        dst = pre / "splits_final.json"
        if dst.exists():
            shutil.copyfile(dst, pre / "splits_final.json.bak")
        if has_splits:
            shutil.copyfile(src, dst)
            steps.append(f"installed {dst} (previous file kept as splits_final.json.bak)")
        else:
            dst.unlink()
            steps.append(f"moved the stale {dst} to splits_final.json.bak (nnU-Net makes a new 5-fold split)")
    steps.append(f"nnUNetv2_plan_and_preprocess -d {opts.dataset_id} --verify_dataset_integrity")
    if not has_splits or steps[0].startswith("installed"):
        return steps
    if pre is None:
        steps.append(
            f"{src} is copied into $nnUNet_preprocessed/{final.name}/ by nnU-Net's planner; if you plan "
            f"elsewhere, copy it there yourself before training"
        )
    elif not (pre / "splits_final.json").exists():
        steps.append(
            f"{pre} already exists: nnU-Net's planner copies the new splits there when you run the step above; "
            f"if you skip it, re-run with --install-splits, or: cp {src} {pre}/splits_final.json"
        )
    return steps


def format_report(report: ConversionReport) -> str:
    """Human-readable summary of what was found and written."""
    kind = "NIfTI volumes" if report.kind == "3d" else "2D images"
    lines = [
        f"Wrote {report.dataset_dir}",
        f"  {kind}: {report.n_train} training + {report.n_test} test cases, {report.channels} channel(s)",
        f"  sizes ({'Z x Y x X' if report.kind == '3d' else 'H x W'}): {report.size_range}",
        f"  raw label values found: {report.values_found[:20]}",
        f"  label mapping: {report.plan.description}; labels: {report.plan.names}",
    ]
    lines += [f"warning: {w}" for w in report.warnings]
    lines += ["next:"] + [f"  {s}" for s in report.next_steps]
    return "\n".join(lines)
