"""2D pictures (PNG, JPEG, BMP, TIFF): opened *and decoded in full*, so that corrupt files are refused here.

Reading only a file's header (what ``Image.open`` does) lets truncated and corrupt files through: they fail
much later, inside nnU-Net's preprocessing, without naming the file. Every function here decodes all pixels
and raises :class:`UserError` naming the file otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from m2s_nnunet.errors import UserError

REEXPORT = "re-export or replace the file (or remove the case)"
SINGLE_VIEW_FORMATS = {"MPO"}  # multi-frame JPEGs whose first frame is the picture (im.load() decodes frame 0)
DROP_ALPHA_FIX = (
    "if the colour channels hold the values, pass --drop-alpha (m2s-nnunet convert / evaluate) to ignore alpha; "
    "if the alpha channel is the mask, save it as the mask (e.g. PIL im.getchannel('A')); or save the file as a "
    "single-channel picture (e.g. PIL .convert('L'))"
)


class AmbiguousAlphaError(UserError):
    """A picture whose alpha channel varies and may hold the values (``--drop-alpha`` reads the colour channels)."""


def open_picture(path: str | Path):
    """The fully decoded single-frame ``PIL.Image`` of ``path``; refuse empty, unknown, corrupt, truncated and
    multi-page files. ``image.format`` tells the real format, whatever the file name says.

    Extra frames are refused for multi-page TIFFs and animated pictures (GIF, APNG, WebP, ...): which frame is
    meant cannot be guessed. MPO files (the JPEGs of many phones and cameras: the photo plus a preview or a
    second view) are read as their first frame, the photo itself, as every JPEG viewer does.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _check_nonempty(path)
    try:
        with Image.open(path) as probe:  # verify(): checksums (PNG CRCs) without decoding
            frames = int(getattr(probe, "n_frames", 1) or 1)
            probe.verify()
        im = Image.open(path)
        im.load()  # decode every pixel: truncated data fails here
    except UnidentifiedImageError as err:
        raise UserError("not an image that can be read (unknown or damaged format)", path, REEXPORT) from err
    except Image.DecompressionBombError as err:
        raise UserError(f"image too large to decode safely ({err})", path, "downsample it first") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # PIL's decoders use all of these
        raise UserError(f"corrupt or truncated image ({err})", path, REEXPORT) from err
    if frames > 1 and im.format not in SINGLE_VIEW_FORMATS:
        raise UserError(
            f"holds {frames} pages/frames; only single-image files are supported",
            path,
            "save each page as its own file (one case each), or keep only the page you need",
        )
    return im


def _check_nonempty(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise UserError("broken symbolic link (its target does not exist)", path, "fix or remove the link")
    if not path.is_file():
        raise UserError("not a file", path)
    if path.stat().st_size == 0:
        raise UserError("empty file (0 bytes)", path, REEXPORT)


def integer_range_problem(im) -> str | None:
    """Why a 32-bit integer picture cannot become an 8/16-bit PNG without changing values (None if it can)."""
    if im.mode not in ("I", "I;32", "I;32B", "I;32L"):
        return None
    arr = np.asarray(im)
    lo, hi = int(arr.min(initial=0)), int(arr.max(initial=0))
    if lo < 0 or hi > 65535:
        return f"32-bit integer pixel values {lo}..{hi} do not fit 16 bits (0..65535)"
    return None


def as_uint16(im):
    """A 16/32-bit grey picture as a native ``I;16`` image (PIL's convert('L') would clip it to 8 bits)."""
    from PIL import Image

    return Image.fromarray(np.asarray(im).astype(np.uint16))


def picture_array(path: str | Path, drop_alpha: bool = False, notes: list[str] | None = None) -> np.ndarray:
    """One-channel pixel array of a picture (grey maps, soft predictions); finite values only.

    Identical colour channels are collapsed (a grey map saved as RGB); real colours are refused. An alpha
    channel is ignored when it is constant (or with ``drop_alpha``); one that varies is refused, since it may hold
    the values. What was done with alpha is appended to ``notes``.
    """
    return _one_channel(path, drop_alpha, notes, labels=False)


def label_picture(path: str | Path, drop_alpha: bool = False, notes: list[str] | None = None) -> np.ndarray:
    """A label picture (mask) as a 2D integer array; refuse colour-coded, non-integer and non-finite masks.

    Masks with alpha (RGBA, LA) are read from their colour channels when that is unambiguous: the alpha channel is
    constant, or the colour channels hold labels and every transparent pixel is background there (a transparent
    background). Otherwise (the alpha channel may be the mask) they are refused, unless ``drop_alpha`` says to use
    the colour channels. What was done is appended to ``notes``.
    """
    arr = _one_channel(path, drop_alpha, notes, labels=True)
    if arr.dtype.kind == "f":
        if not np.all(np.mod(arr, 1) == 0):
            raise UserError(
                "mask has non-integer values (a probability map?)",
                path,
                "save masks as integer label maps (0, 1, ...); for 0..1 maps threshold them first",
            )
        arr = arr.astype(np.int64)
    return arr


def _one_channel(path: str | Path, drop_alpha: bool, notes: list[str] | None, labels: bool) -> np.ndarray:
    im = open_picture(path)
    arr = np.asarray(im)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim == 3:
        colour = _collapse_grey(arr, path)
        if arr.shape[2] in (2, 4):
            note = _alpha_decision(colour, arr[..., -1], path, drop_alpha, labels)
            if note and notes is not None:
                notes.append(note)
        arr = colour
    if arr.ndim != 2:
        raise UserError(f"expected a 2D picture, got an array of shape {arr.shape}", path)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise UserError(f"{bad} pixel(s) are NaN or infinite", path, "replace them with valid values")
    return arr


def _collapse_grey(arr: np.ndarray, path: str | Path) -> np.ndarray:
    """The one colour channel of an (H, W, C) picture (alpha, if any, left out); refuse real colours."""
    colour = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]
    if not (colour == colour[..., :1]).all():
        raise UserError(
            "colour-coded (its colour channels differ); label maps must be single-channel",
            path,
            "save it as a single-channel label map with values 0, 1, 2, ...",
        )
    return colour[..., 0]


def _alpha_decision(colour: np.ndarray, alpha: np.ndarray, path: str | Path, drop_alpha: bool,
                    labels: bool) -> str | None:
    """Whether the alpha channel may be ignored (a note saying so) or must be refused (UserError)."""
    name = Path(path).name
    if alpha.size == 0 or (alpha == alpha.flat[0]).all():
        value = int(alpha.flat[0]) if alpha.size else 255
        return f"{name}: constant alpha channel ({value}) ignored; values read from the colour channels"
    if drop_alpha:
        return f"{name}: varying alpha channel dropped (--drop-alpha); values read from the colour channels"
    if labels and colour.any() and not colour[alpha == 0].any():
        return (f"{name}: alpha channel ignored: the colour channels hold the labels and every transparent pixel is "
                "background there")
    why = ("the colour channels hold no label" if labels and not colour.any()
           else "transparent pixels are not background in the colour channels" if labels
           else "it may hold the values")
    raise AmbiguousAlphaError(f"has a transparency (alpha) channel that varies and cannot be ignored safely ({why})",
                              path, DROP_ALPHA_FIX)
