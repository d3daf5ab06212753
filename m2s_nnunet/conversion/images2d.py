"""2D pictures (PNG, JPEG, BMP, TIFF; RGB or grey) -> ``<case>_0000.png`` + ``<case>.png``.

One RGB PNG is read by nnU-Net's ``NaturalImage2DIO`` as 3 channels, and nnU-Net rejects JPEG, so every image is
re-encoded as PNG (real PNGs are copied). Pixel values are never clipped: 16-bit grey stays 16-bit, and images
that cannot be written without loss (alpha, float, 32-bit values) are refused.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from m2s_nnunet.conversion.labels import LabelPlan
from m2s_nnunet.conversion.options import ConvertOptions
from m2s_nnunet.conversion.pairing import Pair
from m2s_nnunet.conversion.scan import Scan, raise_problems, unique_values
from m2s_nnunet.errors import UserError
from m2s_nnunet.inputs import pictures
from m2s_nnunet.naming import short_list

GREY_MODES = {"1", "L", "I;16", "I;16B", "I;16L", "I"}
COLOUR_MODES = {"RGB", "P", "CMYK", "YCbCr"}
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I", "I;32", "I;32B", "I;32L"}

PROBLEM_TITLES = {
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
}


@dataclass(frozen=True)
class PictureScan(Scan):
    """A scan of 2D pictures; ``sizes`` are (H, W) before any resize."""

    mismatched: tuple[str, ...] = ()
    """Pairs whose image and mask sizes differ (allowed only with --resize)."""
    mask_notes: tuple[str, ...] = ()
    """Masks with an alpha channel that were read from their colour channels."""

    def warnings(self, opts: ConvertOptions) -> list[str]:
        """Resized size mismatches and masks read without their alpha channel."""
        warn = []
        if self.mismatched:
            warn.append(
                f"{len(self.mismatched)} image/mask pair(s) differ in size; both are resized "
                f"independently to {opts.resize}: {short_list(self.mismatched, 5)}"
            )
        if self.mask_notes:
            notes = self.mask_notes
            warn.append(f"{len(notes)} mask(s) with an alpha channel were read from their colour channels: "
                        + "; ".join(notes[:3]) + (f"; ... (+{len(notes) - 3} more)" if len(notes) > 3 else ""))
        return warn


def image_channels(mode: str, info: dict, opts: ConvertOptions) -> int | str:
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


def load_image(path: Path, opts: ConvertOptions):
    """The picture (a PIL image) as nnU-Net should read it: RGB or grey (8 or 16 bit), resized if asked; never
    clipped."""
    from PIL import Image

    im = pictures.open_picture(path)
    mode = im.mode
    channels = image_channels(mode, im.info, opts)
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


def scan_pictures(pairs: list[Pair], opts: ConvertOptions) -> PictureScan:
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
            c = image_channels(im.mode, im.info, opts)
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
        values[p.mask.name] = {int(v) for v in unique_values(mask)}
        if mask.shape != (size[1], size[0]):
            mismatched.append(f"{p.image.name} {size[1]}x{size[0]} vs {p.mask.name} {mask.shape[0]}x{mask.shape[1]}")
        sizes.append((size[1], size[0]))
    if mismatched and not opts.resize:
        problems["size"] = mismatched
    if len(set(chans.values())) > 1:
        by = {k: [n for n, c in chans.items() if c == k] for k in sorted(set(chans.values()))}
        problems["channels"] = [f"{k} channel(s): {len(v)} image(s), e.g. {short_list(v, 5)}" for k, v in by.items()]
    raise_problems(problems, PROBLEM_TITLES)
    return PictureScan(channels=next(iter(chans.values()), 1), sizes=tuple(sizes), values=values,
                       mismatched=tuple(mismatched), mask_notes=tuple(mask_notes))


def write_picture(pair: Pair, img_dst: Path, lab_dst: Path, plan: LabelPlan, opts: ConvertOptions) -> None:
    """Write one checked case as PNGs: the image bilinear-resized if asked, the labels nearest-resized."""
    from PIL import Image

    im = pictures.open_picture(pair.image)
    plain = im.format == "PNG" and im.mode in ("RGB", "L") and "transparency" not in im.info
    if plain and not opts.resize and opts.channels == "auto":
        shutil.copyfile(pair.image, img_dst)  # a real, fully decoded PNG: skip a decode/encode round trip
    else:
        load_image(pair.image, opts).save(img_dst, format="PNG", compress_level=3)
    lab = Image.fromarray(plan.apply(pictures.label_picture(pair.mask, opts.drop_alpha)))
    if opts.resize:
        h, w = opts.resize
        lab = lab.resize((w, h), Image.NEAREST)
    lab.save(lab_dst, format="PNG", compress_level=3)


class Pictures:
    """The 2D picture kind (see :class:`m2s_nnunet.conversion.kind.InputKind`)."""

    name = "2d"
    title = "2D images"
    axes = "H x W"
    file_ending = ".png"
    reader_writer = "NaturalImage2DIO"

    def refuse_options(self, opts: ConvertOptions) -> None:
        """Every option applies to pictures."""

    def scan(self, pairs: list[Pair], opts: ConvertOptions) -> PictureScan:
        return scan_pictures(pairs, opts)

    def write_case(self, pair: Pair, img_dst: Path, lab_dst: Path, plan: LabelPlan, opts: ConvertOptions) -> None:
        write_picture(pair, img_dst, lab_dst, plan, opts)
