"""Generated datasets in nnU-Net's raw format, for the demo and the tests (no data needs to ship).

* 2D RGB "polyp-like" images: a smooth, shaded tissue background with one or two brighter, redder
  elliptical lesions with a soft rim; binary masks 0/1.
* 3D CT-like volumes: noisy soft tissue (HU ~ 40) with one or two dense spherical lesions (HU ~ 120).

The images are deterministic for a given seed. Held-back test cases go to ``imagesTs`` and their masks to
``labelsTs`` (nnU-Net ignores the latter; the demo scores predictions against them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], scale: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: random coarse grid upsampled by nearest repeat then box-blurred."""
    from scipy.ndimage import uniform_filter, zoom

    coarse = rng.random(tuple(max(2, s // scale) for s in shape))
    up = zoom(coarse, [s / c for s, c in zip(shape, coarse.shape)], order=1)
    up = uniform_filter(up, size=3)
    up -= up.min()
    return up / max(up.max(), 1e-8)


def _ellipse_masks(rng: np.random.Generator, shape: tuple[int, int], count: int) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros(shape, dtype=bool)
    for _ in range(count):
        cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
        ry, rx = rng.uniform(0.08, 0.2) * h, rng.uniform(0.08, 0.2) * w
        angle = rng.uniform(0, np.pi)
        y, x = yy - cy, xx - cx
        u = x * np.cos(angle) + y * np.sin(angle)
        v = -x * np.sin(angle) + y * np.cos(angle)
        mask |= (u / rx) ** 2 + (v / ry) ** 2 <= 1
    return mask


def synthetic_rgb_case(rng: np.random.Generator, size: tuple[int, int] = (96, 96)) -> tuple[np.ndarray, np.ndarray]:
    """One RGB uint8 image (H, W, 3) and its 0/1 mask (H, W)."""
    mask = _ellipse_masks(rng, size, int(rng.integers(1, 3)))
    tissue = _smooth_noise(rng, size, 12)
    base = np.stack([0.55 + 0.25 * tissue, 0.30 + 0.15 * tissue, 0.25 + 0.10 * tissue], -1)
    lesion = np.array([0.85, 0.35, 0.30]) + 0.08 * _smooth_noise(rng, size, 6)[..., None]
    img = np.where(mask[..., None], lesion, base)
    shading = 0.6 + 0.4 * _smooth_noise(rng, size, 48)[..., None]
    img = img * shading + rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), mask.astype(np.uint8)


def synthetic_ct_case(rng: np.random.Generator,
                      shape: tuple[int, int, int] = (12, 64, 64)) -> tuple[np.ndarray, np.ndarray]:
    """One CT-like float32 volume in HU (Z, Y, X) and its 0/1 lesion mask."""
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    mask = np.zeros(shape, dtype=bool)
    for _ in range(int(rng.integers(1, 3))):
        c = [rng.uniform(0.3, 0.7) * s for s in shape]
        r = rng.uniform(0.12, 0.22) * shape[1]
        mask |= ((zz - c[0]) * 3.0) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r**2
    body = -1000 + 1040 * (((yy - shape[1] / 2) / (0.45 * shape[1])) ** 2
                           + ((xx - shape[2] / 2) / (0.45 * shape[2])) ** 2 <= 1)
    vol = body + np.where(mask, 80.0, 0.0) + rng.normal(0, 15, shape)
    return vol.astype(np.float32), mask.astype(np.uint8)


def _write_dataset_json(folder: Path, channel_names: dict, num_training: int, file_ending: str, **extra) -> None:
    """``folder/dataset.json`` by nnU-Net's own writer; every generated dataset has one 'lesion' label."""
    generate_dataset_json(str(folder), channel_names, {"background": 0, "lesion": 1}, num_training, file_ending,
                          license="synthetic data, no restrictions", converted_by="m2s_nnunet.synthetic", **extra)


def _prepare(raw_root: str | Path, dataset_id: int, name: str) -> Path:
    folder = Path(raw_root) / f"Dataset{dataset_id:03d}_{name}"
    if folder.exists():
        raise FileExistsError(f"{folder} already exists; pick another dataset id or remove it yourself")
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True)
    return folder


def _cases(num_train: int, num_test: int) -> Iterator[tuple[str, str]]:
    """(split, case name) for every case: the first ``num_train`` go to Tr, the rest to Ts."""
    for i in range(num_train + num_test):
        yield ("Tr" if i < num_train else "Ts"), f"case_{i:03d}"


def make_rgb_dataset(raw_root: str | Path, dataset_id: int = 990, name: str = "SyntheticPolyps",
                     num_train: int = 24, num_test: int = 6, size: tuple[int, int] = (96, 96),
                     seed: int = 0) -> Path:
    """Write a 2D RGB PNG dataset (one 3-channel PNG per case, as nnU-Net's NaturalImage2DIO expects)."""
    from PIL import Image

    folder = _prepare(raw_root, dataset_id, name)
    rng = np.random.default_rng(seed)
    for split, case in _cases(num_train, num_test):
        img, mask = synthetic_rgb_case(rng, size)
        Image.fromarray(img).save(folder / f"images{split}" / f"{case}_0000.png")
        Image.fromarray(mask).save(folder / f"labels{split}" / f"{case}.png")
    _write_dataset_json(folder, {"0": "R", "1": "G", "2": "B"}, num_train, ".png")
    return folder


def make_ct_dataset(raw_root: str | Path, dataset_id: int = 991, name: str = "SyntheticCT",
                    num_train: int = 6, num_test: int = 2, shape: tuple[int, int, int] = (12, 64, 64),
                    spacing: tuple[float, float, float] = (3.0, 1.0, 1.0), seed: int = 0) -> Path:
    """Write a NIfTI CT-like volume dataset (channel 'CT' selects nnU-Net's CT normalisation)."""
    import SimpleITK as sitk

    folder = _prepare(raw_root, dataset_id, name)
    rng = np.random.default_rng(seed)
    for split, case in _cases(num_train, num_test):
        vol, mask = synthetic_ct_case(rng, shape)
        for array, path in ((vol, folder / f"images{split}" / f"{case}_0000.nii.gz"),
                            (mask, folder / f"labels{split}" / f"{case}.nii.gz")):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing(tuple(reversed(spacing)))  # SimpleITK is x, y, z
            sitk.WriteImage(image, str(path))
    _write_dataset_json(folder, {"0": "CT"}, num_train, ".nii.gz", overwrite_image_reader_writer="SimpleITKIO")
    return folder
