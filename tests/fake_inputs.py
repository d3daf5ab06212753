"""Small generated conversion inputs (picture folders, NIfTI volumes) and checks of what ``convert`` wrote, shared by
the conversion and ``convert`` command tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from m2s_nnunet.conversion import ConvertOptions

H, W = 20, 28


def mask_array(i: int, values: tuple[int, ...] = (255,)) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    for k, v in enumerate(values):
        m[2 + 3 * k : 5 + 3 * k, 2 + i : 10 + i] = v
    return m


def make_folder(
    root: Path,
    n: int = 4,
    img_ext: str = ".jpg",
    mask_ext: str = ".png",
    mode: str = "RGB",
    values: tuple[int, ...] = (255,),
    names: list[str] | None = None,
) -> tuple[Path, Path]:
    """``root/images`` + ``root/masks`` with ``n`` small synthetic cases."""
    rng = np.random.default_rng(0)
    img_dir, mask_dir = root / "images", root / "masks"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    for i, name in enumerate(names or [f"case{i:02d}" for i in range(n)]):
        shape = (H, W, len(mode)) if len(mode) > 1 else (H, W)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(img_dir / f"{name}{img_ext}")
        Image.fromarray(mask_array(i, values)).save(mask_dir / f"{name}{mask_ext}")
    return img_dir, mask_dir


def opts(img: Path, msk: Path, out: Path, **kw) -> ConvertOptions:
    return ConvertOptions(img, msk, 501, "Test", out=out, progress=False, **kw)


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def label_values(path: Path) -> set[int]:
    return set(np.unique(np.asarray(Image.open(path))).tolist())


def write_volumes(root: Path, n: int = 3, label_spacing: tuple[float, ...] = (1.0, 1.0, 2.0)):
    import SimpleITK as sitk

    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        vol = sitk.GetImageFromArray(rng.normal(0, 100, (6, 12, 10)).astype(np.float32))
        lab_arr = np.zeros((6, 12, 10), np.uint8)
        lab_arr[2:4, 3:8, 3:7] = 1 + (i % 2)
        lab = sitk.GetImageFromArray(lab_arr)
        vol.SetSpacing((1.0, 1.0, 2.0))
        lab.SetSpacing(label_spacing if i == n - 1 else (1.0, 1.0, 2.0))
        sitk.WriteImage(vol, str(root / "imagesTr" / f"vol_{i:03d}.nii.gz"))
        sitk.WriteImage(lab, str(root / "labelsTr" / f"vol_{i:03d}.nii.gz"))
    return root / "imagesTr", root / "labelsTr"


def truncate(path: Path, fraction: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])

