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


def open_picture(path: str | Path):
    """The fully decoded single-frame ``PIL.Image`` of ``path``; refuse empty, unknown, corrupt, truncated and
    multi-page files. ``image.format`` tells the real format, whatever the file name says."""
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
    if frames > 1:
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


def picture_array(path: str | Path) -> np.ndarray:
    """One-channel pixel array of a picture (grey maps, soft predictions); finite values only.

    Identical colour channels are collapsed (a grey map saved as RGB); real colours are refused.
    """
    im = open_picture(path)
    arr = np.asarray(im)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim == 3:
        arr = _collapse_grey(arr, path)
    if arr.ndim != 2:
        raise UserError(f"expected a 2D picture, got an array of shape {arr.shape}", path)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise UserError(f"{bad} pixel(s) are NaN or infinite", path, "replace them with valid values")
    return arr


def label_picture(path: str | Path) -> np.ndarray:
    """A label picture (mask) as a 2D integer array; refuse colour-coded, non-integer and non-finite masks."""
    arr = picture_array(path)
    if arr.dtype.kind == "f":
        if not np.all(np.mod(arr, 1) == 0):
            raise UserError(
                "mask has non-integer values (a probability map?)",
                path,
                "save masks as integer label maps (0, 1, ...); for 0..1 maps threshold them first",
            )
        arr = arr.astype(np.int64)
    return arr


def _collapse_grey(arr: np.ndarray, path: str | Path) -> np.ndarray:
    colour = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]
    if arr.shape[2] in (2, 4) and not (arr[..., -1] == arr[..., -1].flat[0]).all():
        raise UserError(
            "has a transparency (alpha) channel that varies; a label map must not encode anything in alpha",
            path,
            "save it as a single-channel label map (e.g. PIL .convert('L'))",
        )
    if not (colour == colour[..., :1]).all():
        raise UserError(
            "colour-coded (its colour channels differ); label maps must be single-channel",
            path,
            "save it as a single-channel label map with values 0, 1, 2, ...",
        )
    return colour[..., 0]
