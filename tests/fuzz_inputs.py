"""Seeded generator of bad inputs for ``m2s-nnunet convert / evaluate / summarize``, and the judge of each outcome.

Every generated case writes a small scenario (pictures, volumes, .npz files, JSON files, folders) and says what
must happen: a clean refusal that names the culprit, a correct result (checked by an oracle against the arrays
the generator meant to write), or either. Each run of the command is classified as

* ``clean refusal``: exit code != 0, one message naming the culprit, no traceback;
* ``correct result``: exit code 0 and the oracle agrees;
* ``crash``: a traceback, or a refusal that does not name the culprit;
* ``refused valid input``: a clean refusal where a result was required;
* ``silent wrong result``: exit code 0 although the input had to be refused, or the oracle disagrees;
* ``data loss``: an input, an existing dataset or a file next to the output changed, or hidden temporary folders
  were left behind.

Used by ``tests/test_fuzz_inputs.py``; also a script, to count outcomes against any checkout::

    python tests/fuzz_inputs.py --seed 0 --cases 240            # the code on PYTHONPATH / installed
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fsutil import make_readonly_dir

OUTCOMES = ("clean refusal", "correct result", "crash", "refused valid input", "silent wrong result", "data loss")
BAD = ("crash", "refused valid input", "silent wrong result", "data loss")


@dataclass
class Case:
    command: str  # convert / evaluate / summarize
    kind: str  # the generator that made it
    argv: list[str]
    expect: str  # "refuse", "ok" or "either"
    culprit: str | None = None  # what a refusal must name (a file name, a folder, an option)
    check: Callable[[str], str | None] | None = None  # oracle on success: stdout -> problem or None
    watch: list[Path] = field(default_factory=list)  # must not change
    leftovers: Path | None = None  # folder where no hidden temporary folder may remain


# ---------------------------------------------------------------------------------------------- files
def _digest(path: Path) -> str:
    h = hashlib.md5()
    if path.is_symlink():
        h.update(os.readlink(path).encode())
    elif path.is_file():
        h.update(path.read_bytes())
    elif path.is_dir():
        for p in sorted(path.rglob("*")):
            h.update(str(p.relative_to(path)).encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            elif p.is_file():
                h.update(p.read_bytes())
    else:
        h.update(b"<absent>")
    return h.hexdigest()


def _save_picture(path: Path, arr: np.ndarray, fmt: str | None = None) -> None:
    from PIL import Image

    Image.fromarray(arr).save(path, format=fmt)


def _decoded(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


# ---------------------------------------------------------------------------------------------- convert
EXTS = (".png", ".jpg", ".bmp", ".tif")
FMT = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".tif": "TIFF"}


@dataclass
class Source:
    """A generated images + masks folder and what the conversion must produce from it."""

    work: Path
    images: Path
    masks: Path
    raw: Path
    expected: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # case -> (image, labels)

    def argv(self, *extra: str) -> list[str]:
        return ["convert", str(self.images), str(self.masks), "-d", "501", "-n", "Fuzz", "--out", str(self.raw),
                *extra]


def _pictures(rng: np.random.Generator, work: Path, n: int | None = None, ext: str | None = None,
              grey: bool | None = None, size: tuple[int, int] | None = None, top: int = 255) -> Source:
    n = n or int(rng.integers(2, 5))
    ext = ext or str(rng.choice([".png", ".bmp", ".tif"]))
    grey = bool(rng.integers(2)) if grey is None else grey
    src = Source(work, work / "src" / "images", work / "src" / "masks", work / "raw")
    src.images.mkdir(parents=True)
    src.masks.mkdir(parents=True)
    src.raw.mkdir()
    (src.raw / "keep.txt").write_text("a file of the user next to the datasets")
    for i in range(n):
        h, w = size or (int(rng.integers(6, 40)), int(rng.integers(6, 40)))
        shape = (h, w) if grey else (h, w, 3)
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        mask = (rng.random((h, w)) < 0.3).astype(np.uint8)
        case = f"c{i:02d}"
        _save_picture(src.images / f"{case}{ext}", img, FMT[ext])
        _save_picture(src.masks / f"{case}.png", mask * top)
        src.expected[case] = (_decoded(src.images / f"{case}{ext}"), mask)
    return src


def _convert_case(kind: str, src: Source, expect: str, culprit: str | None = None, extra: tuple = (),
                  check: bool = True) -> Case:
    return Case("convert", kind, src.argv(*extra), expect, culprit, _convert_oracle(src) if check else None,
                [src.work / "src", src.raw / "keep.txt"], src.raw)


def _convert_oracle(src: Source) -> Callable[[str], str | None]:
    def check(stdout: str) -> str | None:
        from PIL import Image

        ds = src.raw / "Dataset501_Fuzz"
        for case, (image, labels) in src.expected.items():
            img_file, lab_file = ds / "imagesTr" / f"{case}_0000.png", ds / "labelsTr" / f"{case}.png"
            if not img_file.is_file() or not lab_file.is_file():
                return f"{case}: not written"
            with Image.open(img_file) as im:
                if im.format != "PNG":
                    return f"{img_file.name} is a {im.format} file named .png"
            written = _decoded(img_file)
            if written.shape != image.shape or not np.array_equal(written, image):
                return f"{img_file.name}: pixels differ from the input"
            if not np.array_equal(_decoded(lab_file), labels):
                return f"{lab_file.name}: labels differ from the input mask"
        return None

    return check


def c_random_bytes(rng, work):
    src = _pictures(rng, work)
    target = src.images if rng.integers(2) else src.masks
    victim = sorted(target.iterdir())[int(rng.integers(len(list(target.iterdir()))))]
    victim.write_bytes(rng.bytes(int(rng.integers(1, 3000))))
    return _convert_case("random bytes", src, "refuse", victim.name)


def c_zero_size(rng, work):
    src = _pictures(rng, work)
    victim = sorted((src.images if rng.integers(2) else src.masks).iterdir())[0]
    victim.write_bytes(b"")
    return _convert_case("zero-size file", src, "refuse", victim.name)


def c_truncated(rng, work):
    ext = str(rng.choice(EXTS))
    src = _pictures(rng, work, ext=ext, size=(int(rng.integers(20, 60)), int(rng.integers(20, 60))))
    victim = sorted((src.images if rng.integers(2) else src.masks).iterdir())[-1]
    data = victim.read_bytes()
    victim.write_bytes(data[: max(1, int(len(data) * rng.uniform(0.1, 0.97)))])
    return _convert_case("truncated file", src, "either", victim.name)


def c_bitflip(rng, work):
    src = _pictures(rng, work, ext=".png", size=(32, 32))
    victim = sorted((src.images if rng.integers(2) else src.masks).iterdir())[0]
    data = bytearray(victim.read_bytes())
    pos = int(rng.integers(40, len(data) - 12))
    data[pos] ^= 1 << int(rng.integers(8))
    victim.write_bytes(bytes(data))
    return _convert_case("damaged PNG data", src, "either", victim.name)


def c_wrong_extension(rng, work):
    src = _pictures(rng, work, ext=".png")
    real, named = (".jpg", ".png") if rng.integers(2) else (".png", str(rng.choice([".jpg", ".tif", ".bmp"])))
    for p in sorted(src.images.iterdir()):
        arr = _decoded(p)
        p.unlink()
        target = p.with_suffix(named)
        _save_picture(target, arr, FMT[real])
        src.expected[p.stem] = (_decoded(target), src.expected[p.stem][1])
    return _convert_case(f"{FMT[real]} content named {named}", src, "ok")


def c_extreme_sizes(rng, work):
    shape = [(1, 1), (1, int(rng.integers(200, 1500))), (int(rng.integers(200, 1500)), 1), (2, 3)][rng.integers(4)]
    return _convert_case("1x1 / huge aspect", _pictures(rng, work, size=shape), "ok")


def c_deep_images(rng, work):
    from PIL import Image

    variant = int(rng.integers(5))
    src = _pictures(rng, work, grey=True, ext=".png" if variant == 0 else ".tif", size=(12, 16))
    victim = sorted(src.images.iterdir())[-1]
    h, w = src.expected[victim.stem][0].shape
    if variant == 0:  # 16-bit PNG: must stay 16-bit
        for p in src.images.iterdir():
            Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)).save(p)
            src.expected[p.stem] = (_decoded(p), src.expected[p.stem][1])
        return _convert_case("16-bit PNG", src, "ok")
    if variant == 1:  # 32-bit integers that fit 16 bits: written as 16-bit, equal
        for p in src.images.iterdir():
            arr = rng.integers(0, 65536, (h, w)).astype(np.int32)
            Image.fromarray(arr).save(p)
            src.expected[p.stem] = (arr.astype(np.uint16), src.expected[p.stem][1])
        return _convert_case("32-bit integer TIFF (fits)", src, "ok")
    if variant == 2:  # 32-bit integers out of 16-bit range: never clipped
        Image.fromarray(rng.integers(-5000, 300000, (h, w)).astype(np.int32)).save(victim)
        return _convert_case("32-bit integer TIFF (out of range)", src, "refuse", victim.name)
    arr = rng.random((h, w)).astype(np.float32) * 300
    if variant == 4:
        arr[0, 0] = np.nan
    Image.fromarray(arr).save(victim)
    return _convert_case("float TIFF" + (" with NaN" if variant == 4 else ""), src, "refuse", victim.name)


def c_deep_as_rgb(rng, work):
    from PIL import Image

    src = _pictures(rng, work, grey=True, ext=".png", size=(10, 10))
    victim = sorted(src.images.iterdir())[0]
    Image.fromarray(rng.integers(256, 65536, (10, 10), dtype=np.uint16)).save(victim)
    return _convert_case("16-bit grey forced to RGB", src, "refuse", victim.name, ("--channels", "rgb"))


def c_bad_mask_values(rng, work):
    from PIL import Image

    src = _pictures(rng, work, ext=".png")
    victim = sorted(src.masks.iterdir())[int(rng.integers(len(src.expected)))]
    h, w = src.expected[victim.stem][1].shape
    variant = int(rng.integers(3))
    if variant == 0:
        arr = np.where(rng.random((h, w)) < 0.5, np.nan, 1.0).astype(np.float32)
        name = "NaN mask"
    elif variant == 1:
        arr = rng.random((h, w)).astype(np.float32)
        name = "probability map as mask"
    else:
        arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        name = "colour-coded mask"
    victim.unlink()
    victim = victim.with_suffix(".tif")
    Image.fromarray(arr).save(victim)
    return _convert_case(name, src, "refuse", victim.name)


def c_stray_label(rng, work):
    n = int(rng.integers(5, 31))
    top = int(rng.choice([1, 255]))
    src = _pictures(rng, work, n=n, ext=".png", size=(8, 8), grey=True, top=top)
    victim = sorted(src.masks.iterdir())[int(rng.integers(n))]
    mask = _decoded(victim).copy()
    strays = [7, 128, 254] if top == 1 else [2, 7, 128, 254]  # 0/1 plus 2 would be a valid 3-class set
    mask[int(rng.integers(8)), int(rng.integers(8))] = int(rng.choice(strays))
    _save_picture(victim, mask)
    return _convert_case("one stray label value", src, "refuse", victim.name)


def c_multipage(rng, work):
    from PIL import Image

    src = _pictures(rng, work, ext=".tif")
    folder = src.images if rng.integers(2) else src.masks
    victim = sorted(folder.iterdir())[0]
    if folder == src.masks:
        victim.rename(victim.with_suffix(".tif"))
        victim = victim.with_suffix(".tif")
    page = Image.open(victim)
    page.load()
    page.save(victim, save_all=True, append_images=[page.copy()] * int(rng.integers(1, 4)))
    return _convert_case("multi-page TIFF", src, "refuse", victim.name)


def c_alpha(rng, work):
    from PIL import Image

    src = _pictures(rng, work, ext=".png", grey=False)
    victim = sorted(src.images.iterdir())[0]
    arr = _decoded(victim)
    Image.fromarray(np.dstack([arr, np.full(arr.shape[:2], 255, np.uint8)]), "RGBA").save(victim)
    return _convert_case("RGBA image", src, "refuse", victim.name)


def c_size_mismatch(rng, work):
    src = _pictures(rng, work, ext=".png")
    victim = sorted(src.masks.iterdir())[-1]
    _save_picture(victim, np.zeros((int(rng.integers(41, 60)), 7), np.uint8))
    return _convert_case("image/mask size mismatch", src, "refuse", victim.name)


def c_symlinks(rng, work):
    src = _pictures(rng, work)
    shared = work / "shared"
    shared.mkdir()
    victim = sorted(src.images.iterdir())[0]
    target = shared / victim.name
    victim.rename(target)
    if rng.integers(2):
        victim.symlink_to(target)
        case = _convert_case("symlinked image", src, "ok")
    else:
        victim.symlink_to(shared / "gone.png")
        case = _convert_case("broken symlink", src, "refuse", victim.name)
    case.watch.append(shared)
    return case


def c_unwritable_out(rng, work):
    src = _pictures(rng, work)
    blocked = make_readonly_dir(work)
    if blocked is None or rng.integers(2):
        blocked = work / "a_file_not_a_folder"
        blocked.write_text("x")
    src.raw = blocked / "raw"
    case = _convert_case("unwritable output", src, "refuse", str(blocked), check=False)
    case.leftovers = None
    return case


def c_bad_options(rng, work):
    src = _pictures(rng, work, n=3)
    option = [("--limit", "-1"), ("--limit", "0"), ("--folds", "0"), ("--folds", "1"), ("--folds", "-3"),
              ("--folds", "9"), ("--resize", "0", "8"), ("--geometry-tol", "-1"), ("--geometry-tol", "nan")]
    extra = option[int(rng.integers(len(option)))]
    return _convert_case(f"option {' '.join(extra)}", src, "refuse", extra[0], extra)


def c_bad_splits(rng, work):
    src = _pictures(rng, work, n=4)
    cases = sorted(src.expected)
    variants = {
        "empty val": [{"train": cases, "val": []}],
        "case in no fold": [{"train": cases[:2], "val": cases[2:3]}],
        "train is a string": [{"train": cases[0], "val": cases[1:]}],
        "unknown case": [{"train": cases[:2] + ["nope"], "val": cases[2:]}],
        "object not list": {"train": cases},
        "list of strings": ["fold0"],
        "no folds": [],
    }
    names = [*variants, "garbage", "truncated JSON"]
    name = names[int(rng.integers(len(names)))]
    path = work / "my_splits.json"
    if name == "garbage":
        path.write_bytes(rng.bytes(200))
    elif name == "truncated JSON":
        path.write_text(json.dumps([{"train": cases[:2], "val": cases[2:]}])[:25])
    else:
        path.write_text(json.dumps(variants[name]))
    return _convert_case(f"--splits: {name}", src, "refuse", path.name, ("--splits", str(path)))


def c_bad_test_list(rng, work):
    src = _pictures(rng, work, n=3)
    path = work / "held_out.txt"
    if rng.integers(2):
        path.write_bytes(b"\xff\xfe\x00" + rng.bytes(100))
        kind = "binary"
    else:
        path.write_text("c00\nnot_a_case\n")
        kind = "unknown case"
    return _convert_case(f"--test-list: {kind}", src, "refuse", path.name, ("--test-list", str(path)))


def c_overwrite_foreign(rng, work):
    from m2s_nnunet.conversion import ConvertOptions, convert

    src = _pictures(rng, work)
    convert(ConvertOptions(src.images, src.masks, 501, "Fuzz", out=src.raw, progress=False))
    ds = src.raw / "Dataset501_Fuzz"
    victim = [ds / "notes.txt", ds / "labelsTr" / "c00_fixed.png", ds / "extra" / "x.txt"][int(rng.integers(3))]
    victim.parent.mkdir(exist_ok=True)
    victim.write_text("the user's own work")
    case = _convert_case("--overwrite with the user's files inside", src, "refuse", victim.name, ("--overwrite",))
    case.watch.append(ds)
    return case


def c_stale_partial(rng, work):
    from m2s_nnunet.conversion import ConvertOptions, convert

    src = _pictures(rng, work)
    convert(ConvertOptions(src.images, src.masks, 501, "Fuzz", out=src.raw, progress=False))
    partial = src.raw / f".Dataset501_Fuzz.partial-{_dead_pid()}"
    (partial / "imagesTr").mkdir(parents=True)
    (partial / "imagesTr" / "half.png").write_bytes(b"half")
    return _convert_case("stale folder of a killed run", src, "ok", extra=("--overwrite",))


def c_mixed_kinds(rng, work):
    src = _volumes(rng, work, n=2)
    _save_picture(src.images / "c09.png", np.zeros((4, 4), np.uint8))
    _save_picture(src.masks / "c09.png", np.zeros((4, 4), np.uint8))
    return _convert_case("NIfTI and PNG in one folder", src, "refuse", "c09.png", ("--modality", "CT"))


# ---------------------------------------------------------------------------------------------- convert 3D
def _volumes(rng, work: Path, n: int = 2, spacing=(1.0, 1.0, 2.0)) -> Source:
    import SimpleITK as sitk

    src = Source(work, work / "src" / "imagesTr", work / "src" / "labelsTr", work / "raw")
    src.images.mkdir(parents=True)
    src.masks.mkdir(parents=True)
    src.raw.mkdir()
    (src.raw / "keep.txt").write_text("a file of the user next to the datasets")
    for i in range(n):
        shape = (int(rng.integers(2, 6)), int(rng.integers(4, 12)), int(rng.integers(4, 12)))
        vol = rng.normal(0, 100, shape).astype(np.float32)
        lab = (rng.random(shape) < 0.3).astype(np.uint8)
        for arr, folder in ((vol, src.images), (lab, src.masks)):
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing(spacing)
            sitk.WriteImage(im, str(folder / f"v{i}.nii.gz"))
        src.expected[f"v{i}"] = (vol, lab)
    return src


def _volume_oracle(src: Source) -> Callable[[str], str | None]:
    def check(stdout: str) -> str | None:
        import SimpleITK as sitk

        ds = src.raw / "Dataset501_Fuzz"
        for case, (vol, lab) in src.expected.items():
            img = sitk.ReadImage(str(ds / "imagesTr" / f"{case}_0000.nii.gz"))
            out = sitk.ReadImage(str(ds / "labelsTr" / f"{case}.nii.gz"))
            if not np.array_equal(sitk.GetArrayFromImage(img), vol):
                return f"{case}: image voxels differ"
            if not np.array_equal(sitk.GetArrayFromImage(out), lab):
                return f"{case}: label voxels differ"
            if (img.GetSpacing(), img.GetOrigin(), img.GetDirection()) != (out.GetSpacing(), out.GetOrigin(),
                                                                          out.GetDirection()):
                return f"{case}: label geometry differs from its image (nnU-Net's integrity check fails)"
        return None

    return check


def _volume_case(kind: str, src: Source, expect: str, culprit: str | None = None) -> Case:
    case = _convert_case(kind, src, expect, culprit, ("--modality", "CT"), check=False)
    case.check = _volume_oracle(src)
    return case


def c_nifti_truncated(rng, work):
    src = _volumes(rng, work)
    victim = sorted((src.images if rng.integers(2) else src.masks).iterdir())[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: max(1, int(len(data) * rng.uniform(0.2, 0.98)))])
    return _volume_case("truncated .nii.gz", src, "either", victim.name)


def c_nifti_random(rng, work):
    src = _volumes(rng, work)
    victim = sorted(src.images.iterdir())[-1]
    victim.write_bytes(rng.bytes(int(rng.integers(0, 800))))
    return _volume_case("random bytes as .nii.gz", src, "refuse", victim.name)


def c_nifti_nonfinite(rng, work):
    import SimpleITK as sitk

    src = _volumes(rng, work)
    label = bool(rng.integers(2))
    victim = sorted((src.masks if label else src.images).iterdir())[0]
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(victim))).astype(np.float32)
    arr.flat[int(rng.integers(arr.size))] = [np.nan, np.inf, -np.inf][int(rng.integers(3))]
    if not label and rng.integers(2):
        arr[:] = np.nan  # an all-NaN image
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(im, str(victim))
    return _volume_case("NaN/inf voxels" + (" in a label" if label else ""), src, "refuse", victim.name)


def c_nifti_dims(rng, work):
    import SimpleITK as sitk

    src = _volumes(rng, work)
    victim = sorted(src.images.iterdir())[0]
    arr = rng.normal(size=(6, 7)) if rng.integers(2) else rng.normal(size=(2, 3, 6, 7))
    sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.float32)), str(victim))
    return _volume_case(f"{arr.ndim}D volume", src, "refuse", victim.name)


def c_nifti_spacing(rng, work):
    import SimpleITK as sitk

    src = _volumes(rng, work)
    victim = sorted(src.masks.iterdir())[-1]
    label = sitk.ReadImage(str(victim))
    within = bool(rng.integers(2))
    label.SetSpacing((1.0, 1.0, 2.0 + (rng.uniform(1e-5, 9e-4) if within else rng.uniform(0.01, 1.0))))
    sitk.WriteImage(label, str(victim))
    return _volume_case("label spacing " + ("within" if within else "beyond") + " tolerance", src,
                        "ok" if within else "refuse", None if within else victim.name)


# ---------------------------------------------------------------------------------------------- evaluate
@dataclass
class Scores:
    work: Path
    pred: Path
    gt: Path
    out: Path
    truth: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # case -> (gt, pred) binary

    def argv(self, *extra: str) -> list[str]:
        return ["evaluate", str(self.pred), str(self.gt), "-o", str(self.out), *extra]


def _masks(rng, work: Path, n: int | None = None, size: tuple[int, int] | None = None) -> Scores:
    sc = Scores(work, work / "pred", work / "gt", work / "ev")
    sc.pred.mkdir()
    sc.gt.mkdir()
    for i in range(n or int(rng.integers(2, 5))):
        h, w = size or (int(rng.integers(4, 40)), int(rng.integers(4, 40)))
        gt = (rng.random((h, w)) < 0.3).astype(np.uint8)
        pred = np.where(rng.random((h, w)) < 0.2, 1 - gt, gt).astype(np.uint8)
        if i == 0:
            gt[0, 0] = 1  # at least one foreground pixel somewhere: labels can be found in the references
        _save_picture(sc.gt / f"k{i}.png", gt)
        _save_picture(sc.pred / f"k{i}.png", pred)
        sc.truth[f"k{i}"] = (gt, pred)
    return sc


def _dice(gt: np.ndarray, pred: np.ndarray) -> float:
    tp, fp, fn = int((gt & pred).sum()), int((~gt & pred).sum()), int((gt & ~pred).sum())
    return float("nan") if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def _evaluate_oracle(sc: Scores) -> Callable[[str], str | None]:
    def check(stdout: str) -> str | None:
        import pandas as pd

        table = pd.read_csv(sc.out / "per_case.csv")
        rows = table[table["label"] == 1].set_index("case")
        for case, (gt, pred) in sc.truth.items():
            want = _dice(gt.astype(bool), pred.astype(bool))
            if case not in rows.index:
                return f"{case} not scored"
            got = float(rows.loc[case, "nnunet_Dice"])
            if not (math.isnan(want) and math.isnan(got)) and abs(want - got) > 1e-9:
                return f"{case}: nnU-Net Dice {got} instead of {want}"
        return None

    return check


def _evaluate_case(kind: str, sc: Scores, expect: str, culprit: str | None = None, extra: tuple = ()) -> Case:
    return Case("evaluate", kind, sc.argv(*extra), expect, culprit, _evaluate_oracle(sc), [sc.pred, sc.gt])


def e_random_bytes(rng, work):
    sc = _masks(rng, work)
    victim = sorted((sc.pred if rng.integers(2) else sc.gt).glob("*.png"))[0]
    victim.write_bytes(rng.bytes(int(rng.integers(0, 2000))))
    return _evaluate_case("random bytes / zero-size", sc, "refuse", victim.name)


def e_truncated(rng, work):
    sc = _masks(rng, work, size=(40, 40))
    victim = sorted((sc.pred if rng.integers(2) else sc.gt).glob("*.png"))[-1]
    data = victim.read_bytes()
    victim.write_bytes(data[: max(1, int(len(data) * rng.uniform(0.1, 0.97)))])
    return _evaluate_case("truncated PNG", sc, "either", victim.name)


def e_16bit(rng, work):
    sc = _masks(rng, work)
    for case, (gt, pred) in sc.truth.items():
        for folder, arr in ((sc.gt, gt), (sc.pred, pred)):
            if rng.integers(2):
                _save_picture(folder / f"{case}.png", arr.astype(np.uint16) * 65535)
            else:
                _save_picture(folder / f"{case}.png", arr * 255)
    return _evaluate_case("0/65535 and 0/255 masks", sc, "ok")


def e_grey_map(rng, work):
    sc = _masks(rng, work, size=(16, 16))
    victim = sorted(sc.pred.glob("*.png"))[0]
    _save_picture(victim, rng.integers(0, 256, (16, 16), dtype=np.uint8))
    return _evaluate_case("0..255 probability PNG without --soft-png", sc, "refuse", victim.name)


def e_bad_npz(rng, work):
    sc = _masks(rng, work, size=(12, 12))
    case = sorted(sc.truth)[0]
    npz = sc.pred / f"{case}.npz"
    prob = np.stack([1 - sc.truth[case][1], sc.truth[case][1]]).astype(np.float32)[:, None] * 0.8 + 0.1
    variant = int(rng.integers(8))
    if variant == 0:
        prob[1, 0, 0, 0] = np.nan
        np.savez(npz, probabilities=prob)
    elif variant == 1:
        npz.write_bytes(b"")
    elif variant == 2:
        np.savez(npz, probabilities=prob[1:])
    elif variant == 3:
        npz.write_bytes(rng.bytes(300))
    elif variant == 4:
        np.savez(npz, logits=prob)
    elif variant == 5:
        np.savez(npz, probabilities=prob[:, :, :5])
    elif variant == 6:
        np.savez(npz, probabilities=prob * 10 - 3)
    else:
        np.savez_compressed(npz, probabilities=prob)
        npz.write_bytes(npz.read_bytes()[:-30])
    return _evaluate_case("bad .npz", sc, "refuse", npz.name)


def e_good_npz(rng, work):
    sc = _masks(rng, work, size=(12, 12))
    for case, (_, pred) in sc.truth.items():
        p = np.clip(pred * 0.9 + rng.uniform(0, 0.05, pred.shape), 0, 1).astype(np.float32)
        np.savez(sc.pred / f"{case}.npz", probabilities=np.stack([1 - p, p])[:, None])
    return _evaluate_case("valid .npz", sc, "ok")


def e_labels(rng, work):
    sc = _masks(rng, work)
    variant = int(rng.integers(3))
    if variant == 0:
        (sc.pred / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 7}}))
        return _evaluate_case("stale dataset.json next to predictions", sc, "refuse", "dataset.json")
    value = ["7", "2", "3 5"][int(rng.integers(3))].split()
    return _evaluate_case(f"--labels {' '.join(value)}", sc, "refuse", "--labels", ("--labels", *value))


def e_corrupt_dataset_json(rng, work):
    sc = _masks(rng, work)
    content = ['{"labels": {"background": 0, "polyp": 1', "[]", '{"labels": {"polyp": "one"}}', '{"labels": 3}',
               "", "\x00\x01garbage"][int(rng.integers(6))]
    (sc.pred / "dataset.json").write_text(content)
    return _evaluate_case(f"corrupt dataset.json {content[:12]!r}", sc, "refuse", "dataset.json")


def e_shape_mismatch(rng, work):
    sc = _masks(rng, work)
    victim = sorted(sc.pred.glob("*.png"))[0]
    gt = sc.truth[victim.stem][0]
    _save_picture(victim, np.zeros((gt.shape[0] + 1, gt.shape[1]), np.uint8))
    return _evaluate_case("shape mismatch", sc, "refuse", victim.name)


def e_extreme_sizes(rng, work):
    shape = [(1, 1), (1, int(rng.integers(100, 1200))), (int(rng.integers(100, 1200)), 2)][int(rng.integers(3))]
    return _evaluate_case("1x1 / huge aspect masks", _masks(rng, work, size=shape), "ok")


def e_symlinks(rng, work):
    sc = _masks(rng, work)
    victim = sorted(sc.pred.glob("*.png"))[0]
    shared = work / "shared"
    shared.mkdir()
    target = shared / victim.name
    victim.rename(target)
    if rng.integers(2):
        victim.symlink_to(target)
        case = _evaluate_case("symlinked prediction", sc, "ok")
    else:
        victim.symlink_to(shared / "gone.png")
        case = _evaluate_case("broken symlink", sc, "refuse", victim.name)
    case.watch.append(shared)
    return case


def e_unwritable_out(rng, work):
    sc = _masks(rng, work)
    blocked = make_readonly_dir(work)
    if blocked is None or rng.integers(2):
        blocked = work / "a_file"
        blocked.write_text("x")
    sc.out = blocked / "ev"
    return _evaluate_case("unwritable output", sc, "refuse", str(blocked))


def e_colour_and_pages(rng, work):
    from PIL import Image

    sc = _masks(rng, work, size=(10, 10))
    victim = sorted(sc.pred.glob("*.png"))[0]
    if rng.integers(2):
        _save_picture(victim, rng.integers(0, 2, (10, 10, 3), dtype=np.uint8))
        return _evaluate_case("colour prediction", sc, "refuse", victim.name)
    victim.unlink()
    victim = victim.with_suffix(".tif")
    page = Image.fromarray(sc.truth[victim.stem][1])
    page.save(victim, save_all=True, append_images=[page])
    return _evaluate_case("multi-page TIFF prediction", sc, "refuse", victim.name)


def e_float_masks(rng, work):
    from PIL import Image

    sc = _masks(rng, work, size=(9, 9))
    case = sorted(sc.truth)[0]
    arr = sc.truth[case][0].astype(np.float32)
    nan = bool(rng.integers(2))
    if nan:
        arr[0, 0] = np.nan
    (sc.gt / f"{case}.png").unlink()
    Image.fromarray(arr).save(sc.gt / f"{case}.tif")
    return _evaluate_case("float TIFF reference" + (" with NaN" if nan else ""), sc, "refuse" if nan else "ok",
                          f"{case}.tif" if nan else None)


def e_volumes(rng, work):
    import SimpleITK as sitk

    sc = Scores(work, work / "pred", work / "gt", work / "ev")
    sc.pred.mkdir()
    sc.gt.mkdir()
    for i in range(2):
        gt = (rng.random((3, 6, 6)) < 0.4).astype(np.uint8)
        pred = np.where(rng.random(gt.shape) < 0.2, 1 - gt, gt).astype(np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(gt), str(sc.gt / f"v{i}.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(pred), str(sc.pred / f"v{i}.nii.gz"))
        sc.truth[f"v{i}"] = (gt, pred)
    variant = int(rng.integers(3))
    victim = sc.pred / "v1.nii.gz" if rng.integers(2) else sc.gt / "v1.nii.gz"
    if variant == 0:
        data = victim.read_bytes()
        victim.write_bytes(data[: int(len(data) * rng.uniform(0.2, 0.95))])
        return _evaluate_case("truncated .nii.gz", sc, "either", victim.name)
    if variant == 1:
        arr = sc.truth["v1"][0 if victim.parent == sc.gt else 1].astype(np.float32)
        arr[0, 0, 0] = np.nan
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(victim))
        return _evaluate_case("NaN in a label volume", sc, "refuse", victim.name)
    return _evaluate_case("valid volumes", sc, "ok")


# ---------------------------------------------------------------------------------------------- summarize
@dataclass
class Results:
    work: Path
    root: Path
    out: Path
    valid: dict[str, list[float]] = field(default_factory=dict)  # model -> fg Dice of each valid fold
    named: list[str] = field(default_factory=list)  # broken files the output must name

    def argv(self) -> list[str]:
        return ["summarize", "777", "--results", str(self.root), "-o", str(self.out)]


MODELS = ("nnUNetTrainer__nnUNetPlans__2d", "M2SNetTrainer__nnUNetPlans__2d")


def _results(rng, work: Path) -> Results:
    res = Results(work, work / "results", work / "summary")
    cases = [f"case_{i:02d}" for i in range(10)]
    for model in MODELS:
        folder = res.root / "Dataset777_Fuzz" / model
        folder.mkdir(parents=True)
        (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "polyp": 1},
                                                         "file_ending": ".png"}))
        res.valid[model] = []
        for fold in range(5):
            val = folder / f"fold_{fold}" / "validation"
            val.mkdir(parents=True)
            dice = [float(rng.uniform(0.3, 0.95)) for _ in cases[2 * fold: 2 * fold + 2]]
            per_case = [{"prediction_file": f"{c}.png", "metrics": {"1": {"Dice": d, "IoU": d / (2 - d)}}}
                        for c, d in zip(cases[2 * fold: 2 * fold + 2], dice)]
            mean = {"Dice": float(np.mean(dice)), "IoU": float(np.mean([d / (2 - d) for d in dice]))}
            (val / "summary.json").write_text(json.dumps({"foreground_mean": mean, "mean": {"1": mean},
                                                          "metric_per_case": per_case}))
            res.valid[model].append(mean["Dice"])
    return res


def _summary_oracle(res: Results) -> Callable[[str], str | None]:
    def check(stdout: str) -> str | None:
        import pandas as pd

        table = pd.read_csv(res.out / "models.csv").set_index("model")
        for model, dice in res.valid.items():
            if table.loc[model, "folds_ok"] != f"{len(dice)}/5":
                return f"{model}: folds_ok {table.loc[model, 'folds_ok']} instead of {len(dice)}/5"
            want = float(np.mean(dice)) if dice else float("nan")
            got = float(table.loc[model, "Dice mean"])
            if not (math.isnan(want) and math.isnan(got)) and abs(want - got) > 1e-9:
                return f"{model}: Dice mean {got} instead of {want}"
        missing = [n for n in res.named if n not in stdout]
        return f"broken file(s) not named in the output: {missing}" if missing else None

    return check


def _summary_case(kind: str, res: Results, expect: str = "ok", culprit: str | None = None) -> Case:
    return Case("summarize", kind, res.argv(), expect, culprit, _summary_oracle(res), [res.root])


BROKEN = {
    "truncated": lambda t, rng: t[: int(len(t) * rng.uniform(0.05, 0.95))],
    "random bytes": lambda t, rng: rng.bytes(int(rng.integers(1, 400))),
    "zero-size": lambda t, rng: "",
    "empty object": lambda t, rng: "{}",
    "a list": lambda t, rng: json.dumps([json.loads(t)]),
    "string mean": lambda t, rng: json.dumps({**json.loads(t), "mean": "0.7"}),
    "string cases": lambda t, rng: json.dumps({**json.loads(t), "metric_per_case": ["case_00"]}),
    "non-numeric Dice": lambda t, rng: json.dumps({**json.loads(t), "mean": {"1": {"Dice": "high"}}}),
    "Dice out of range": lambda t, rng: json.dumps({**json.loads(t), "foreground_mean": {"Dice": 7.5}}),
    "no cases": lambda t, rng: json.dumps({**json.loads(t), "metric_per_case": []}),
}


def s_broken_fold(rng, work):
    res = _results(rng, work)
    model = MODELS[int(rng.integers(2))]
    folds = sorted(rng.choice(5, size=int(rng.integers(1, 3)), replace=False).tolist())
    kind = list(BROKEN)[int(rng.integers(len(BROKEN)))]
    for fold in sorted(folds, reverse=True):
        path = res.root / "Dataset777_Fuzz" / model / f"fold_{fold}" / "validation" / "summary.json"
        broken = BROKEN[kind](path.read_text(), rng)
        path.write_bytes(broken if isinstance(broken, bytes) else broken.encode())
        del res.valid[model][fold]
        res.named.append(str(path))
    return _summary_case(f"fold summary.json: {kind}", res)


def s_side_files(rng, work):
    res = _results(rng, work)
    model = res.root / "Dataset777_Fuzz" / MODELS[int(rng.integers(2))]
    variant = int(rng.integers(4))
    if variant == 0:
        (model / "dataset.json").write_bytes(rng.bytes(100))
        res.named.append(str(model / "dataset.json"))
        kind = "garbage dataset.json"
    elif variant == 1:
        cv = model / "crossval_results_folds_0_1_2_3_4"
        cv.mkdir()
        (cv / "summary.json").write_text('{"mean": {"1": {"Dice": 0.5')
        res.named.append(str(cv / "summary.json"))
        kind = "truncated crossval summary.json"
    elif variant == 2:
        (model / "fold_1" / "training_log_2025_1_1_00_00_00.txt").write_bytes(rng.bytes(500))
        kind = "garbage training log"
    else:
        per_case = model / "fold_3" / "validation" / "summary.json"
        data = json.loads(per_case.read_text())
        data["metric_per_case"][0]["metrics"]["1"]["Dice"] = None  # empty-empty case: NaN, valid
        per_case.write_text(json.dumps(data))
        kind = "NaN Dice of an empty case"
    return _summary_case(kind, res)


def s_symlinked_fold(rng, work):
    res = _results(rng, work)
    model = res.root / "Dataset777_Fuzz" / MODELS[0]
    shared = work / "elsewhere_fold"
    (model / "fold_2").rename(shared)
    (model / "fold_2").symlink_to(shared)
    case = _summary_case("symlinked fold folder", res)
    case.watch.append(shared)
    return case


def s_unwritable_out(rng, work):
    res = _results(rng, work)
    blocked = make_readonly_dir(work)
    if blocked is None or rng.integers(2):
        blocked = work / "a_file"
        blocked.write_text("x")
    res.out = blocked / "summary"
    return _summary_case("unwritable output", res, "refuse", str(blocked))


def s_no_results(rng, work):
    res = _results(rng, work)
    if rng.integers(2):
        shutil.rmtree(res.root / "Dataset777_Fuzz")
        return _summary_case("dataset absent", res, "refuse", "777")
    target = work / "results_file"
    target.write_text("x")
    res.root = target
    return _summary_case("--results is a file", res, "refuse", "results_file")


GENERATORS: dict[str, list[Callable]] = {
    "convert": [c_random_bytes, c_zero_size, c_truncated, c_bitflip, c_wrong_extension, c_extreme_sizes,
                c_deep_images, c_deep_as_rgb, c_bad_mask_values, c_stray_label, c_multipage, c_alpha,
                c_size_mismatch, c_symlinks, c_unwritable_out, c_bad_options, c_bad_splits, c_bad_test_list,
                c_overwrite_foreign, c_stale_partial, c_mixed_kinds, c_nifti_truncated, c_nifti_random,
                c_nifti_nonfinite, c_nifti_dims, c_nifti_spacing],
    "evaluate": [e_random_bytes, e_truncated, e_16bit, e_grey_map, e_bad_npz, e_good_npz, e_labels,
                 e_corrupt_dataset_json, e_shape_mismatch, e_extreme_sizes, e_symlinks, e_unwritable_out,
                 e_colour_and_pages, e_float_masks, e_volumes],
    "summarize": [s_broken_fold, s_side_files, s_symlinked_fold, s_unwritable_out, s_no_results],
}
SHARE = {"convert": 0.5, "evaluate": 0.32, "summarize": 0.18}  # summarize draws plots: the slowest per case


# ---------------------------------------------------------------------------------------------- running
@dataclass
class Outcome:
    case: Case
    outcome: str
    detail: str
    seconds: float


def _leftovers(folder: Path | None) -> list[str]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".Dataset"))


def judge(case: Case) -> Outcome:
    """Run one case through ``m2s_nnunet.cli.main`` in this process and classify what happened."""
    from m2s_nnunet import cli

    before = {p: _digest(p) for p in case.watch}
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    crashed = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(case.argv)
        except SystemExit as exc:  # argparse refuses bad option syntax itself
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - any escaping exception is a crash by definition
            crashed = traceback.format_exc(limit=3)
            rc = 1
    seconds = time.monotonic() - start
    changed = [str(p) for p, d in before.items() if _digest(p) != d]
    left = _leftovers(case.leftovers)  # hidden temporary folders: this run's, or an older one it should clean
    if changed or left:
        return Outcome(case, "data loss", f"changed {changed}, left behind {left}", seconds)
    message = err.getvalue()
    if crashed or "Traceback" in message:
        return Outcome(case, "crash", (crashed or message)[-600:], seconds)
    if rc != 0:
        if case.culprit and case.culprit not in message:
            return Outcome(case, "crash", f"refusal does not name {case.culprit!r}: {message[-400:]}", seconds)
        if case.expect == "ok":
            return Outcome(case, "refused valid input", message[-400:], seconds)
        return Outcome(case, "clean refusal", message.strip().splitlines()[0][:200] if message.strip() else "",
                       seconds)
    if case.expect == "refuse":
        return Outcome(case, "silent wrong result", "accepted although it had to be refused", seconds)
    try:
        problem = case.check(out.getvalue()) if case.check else None
    except Exception as exc:  # noqa: BLE001 - an unreadable output is a wrong result
        problem = f"output unreadable: {type(exc).__name__}: {exc}"
    if problem:
        return Outcome(case, "silent wrong result", problem, seconds)
    return Outcome(case, "correct result", "", seconds)


def generate(seed: int, total: int, base: Path) -> list[tuple[Path, Callable, np.random.Generator]]:
    """``total`` scenarios (every generator at least once, then drawn by command share), each with its own rng."""
    rng = np.random.default_rng(seed)
    plan = [g for gens in GENERATORS.values() for g in gens]
    commands = list(SHARE)
    while len(plan) < total:
        command = commands[int(rng.choice(len(commands), p=[SHARE[c] for c in commands]))]
        plan.append(GENERATORS[command][int(rng.integers(len(GENERATORS[command])))])
    return [(base / f"{i:03d}_{g.__name__}", g, np.random.default_rng([seed, i])) for i, g in enumerate(plan)]


def run_all(seed: int, total: int, base: Path, keep: bool = False) -> list[Outcome]:
    """Generate and judge every case; each case's folder is removed after it is judged unless ``keep``."""
    results = []
    saved = {k: os.environ.get(k) for k in ("nnUNet_preprocessed", "nnUNet_raw")}
    os.environ["nnUNet_preprocessed"] = str(base / "no_preprocessed")  # never touch a real one
    os.environ.pop("nnUNet_raw", None)
    try:
        results = _run_cases(seed, total, base, keep)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return results


def _run_cases(seed: int, total: int, base: Path, keep: bool) -> list[Outcome]:
    results = []
    for work, generator, rng in generate(seed, total, base):
        work.mkdir(parents=True)
        try:
            case = generator(rng, work)
        except Exception:  # noqa: BLE001 - a generator bug must be visible, not counted as the tool's fault
            raise RuntimeError(f"generator {generator.__name__} failed in {work}") from None
        results.append(judge(case))
        if not keep:
            for p in work.rglob("*"):
                if p.is_dir() and not p.is_symlink():
                    p.chmod(0o755)
            shutil.rmtree(work, ignore_errors=True)
    return results


def counts(results: list[Outcome]) -> dict[str, dict[str, int]]:
    table: dict[str, Counter] = {c: Counter() for c in GENERATORS}
    for r in results:
        table[r.case.command][r.outcome] += 1
    return {c: {o: table[c][o] for o in OUTCOMES} for c in table}


def report(results: list[Outcome]) -> str:
    lines = ["| command | cases | " + " | ".join(OUTCOMES) + " |", "|---|---|" + "---|" * len(OUTCOMES)]
    table = counts(results)
    for command, row in table.items():
        lines.append(f"| {command} | {sum(row.values())} | " + " | ".join(str(row[o]) for o in OUTCOMES) + " |")
    total = {o: sum(row[o] for row in table.values()) for o in OUTCOMES}
    lines.append(f"| all | {len(results)} | " + " | ".join(str(total[o]) for o in OUTCOMES) + " |")
    bad = [r for r in results if r.outcome in BAD]
    lines += ["", f"{len(bad)} bad outcome(s):"] + [
        f"- {r.case.command} / {r.case.kind} -> {r.outcome}: {r.detail.strip()[:300]}" for r in bad]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=240)
    parser.add_argument("--json", type=Path, default=None, help="also write the counts and bad outcomes here")
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="m2s_fuzz_") as base:
        results = run_all(args.seed, args.cases, Path(base))
    print(report(results))
    print(f"\n{len(results)} cases in {time.monotonic() - start:.0f} s (seed {args.seed})")
    if args.json:
        args.json.write_text(json.dumps({"counts": counts(results), "bad": [
            {"command": r.case.command, "kind": r.case.kind, "outcome": r.outcome, "detail": r.detail}
            for r in results if r.outcome in BAD]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
