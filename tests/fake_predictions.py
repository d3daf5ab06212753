"""Small prediction and reference folders with known scores, shared by the evaluation and ``evaluate`` tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 24, 32


def save_picture(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr.astype(np.uint8)).save(path)


def make_folders(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """gt/pred folders with 4 cases: overlap, perfect, empty-empty, false positive; one .npz."""
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    gts, preds = {}, {}
    g = np.zeros((H, W), np.uint8)
    g[4:12, 4:12] = 1
    p = np.zeros_like(g)
    p[6:14, 4:12] = 1
    gts["a"], preds["a"] = g, p
    gts["b"], preds["b"] = g.copy(), g.copy()
    gts["c"], preds["c"] = np.zeros_like(g), np.zeros_like(g)
    fp = np.zeros_like(g)
    fp[0:3, 0:3] = 1
    gts["d"], preds["d"] = np.zeros_like(g), fp
    for k in gts:
        save_picture(gt_dir / f"{k}.png", gts[k])
        save_picture(pred_dir / f"{k}.png", preds[k])
    prob1 = np.clip(preds["a"] * 0.8 + 0.1, 0, 1).astype(np.float32)
    np.savez_compressed(pred_dir / "a.npz", probabilities=np.stack([1 - prob1, prob1])[:, None])  # (C, 1, H, W)
    return pred_dir, gt_dir, {"gt_" + k: v for k, v in gts.items()} | preds


def multiclass_folders(tmp_path: Path) -> tuple[Path, Path]:
    """References and predictions holding labels 0/1/2 (two cases)."""
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    for k, shift in (("a", 0), ("b", 2)):
        g = np.zeros((H, W), np.uint8)
        g[4:12, 4:12] = 1
        g[14:20, 20:28] = 2
        save_picture(gt_dir / f"{k}.png", g)
        save_picture(pred_dir / f"{k}.png", np.roll(g, shift, axis=0))
    return pred_dir, gt_dir
