"""Per-case segmentation metrics in the two conventions that papers report.

* nnU-Net convention (``nnunetv2.evaluation.evaluate_predictions.compute_metrics``): per label Dice
  and IoU from the hard segmentation, **NaN when prediction and reference are both empty**; dataset
  means skip NaN.
* Polyp-benchmark convention (PraNet / M2SNet papers): per-image Dice and IoU of the binary mask with
  **empty prediction + empty reference = 1**, averaged over images (mDice, mIoU), plus the
  salient-object metrics of PySODMetrics (``py_sod_metrics``): weighted F-measure (Margolin et al.
  2014), S-measure (Fan et al. 2017), E-measure curve over 256 thresholds (Fan et al. 2018; mean and
  max of the image-averaged curve) and MAE.

Everything here is pure numpy on in-memory arrays so it can be tested on tiny hand-made examples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from py_sod_metrics import MAE, Emeasure, Smeasure, WeightedFmeasure

#: Which reference implementation each reported metric reproduces (printed by the CLI and the docs).
METRIC_REFERENCES: dict[str, str] = {
    "nnU-Net Dice/IoU": "nnunetv2 compute_metrics (per label, NaN if empty-empty, nanmean over cases)",
    "mDice/mIoU": "per-image Dice/IoU of the hard mask, empty-empty = 1, mean over images "
    "(PraNet/M2SNet-style test scripts)",
    "wFm": "py_sod_metrics.WeightedFmeasure (Margolin 2014, beta^2=1), mean over images",
    "Sm": "py_sod_metrics.Smeasure (Fan 2017, alpha=0.5), mean over images",
    "meanEm/maxEm": "py_sod_metrics.Emeasure (Fan 2018): curve over 256 thresholds averaged over images; "
    "mean / max of that curve",
    "MAE": "py_sod_metrics.MAE, mean over images",
}

BENCHMARK_KEYS = ("dice", "iou", "wfm", "sm", "mean_em", "max_em", "mae")


def confusion_counts(ref: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """Return (TP, FP, FN, TN) of two boolean masks, pixels in ``ignore`` excluded (as nnU-Net does)."""
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if ref.shape != pred.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs prediction {pred.shape}")
    use = np.ones_like(ref) if ignore is None else ~np.asarray(ignore, dtype=bool)
    tp = int(np.count_nonzero(ref & pred & use))
    fp = int(np.count_nonzero(~ref & pred & use))
    fn = int(np.count_nonzero(ref & ~pred & use))
    tn = int(np.count_nonzero(~ref & ~pred & use))
    return tp, fp, fn, tn


def nnunet_label_metrics(
    ref_seg: np.ndarray, pred_seg: np.ndarray, label: int, ignore_label: int | None = None
) -> dict[str, float]:
    """Metrics of one label exactly as nnU-Net's ``compute_metrics`` (Dice/IoU NaN when TP+FP+FN == 0)."""
    ignore = ref_seg == ignore_label if ignore_label is not None else None
    tp, fp, fn, tn = confusion_counts(ref_seg == label, pred_seg == label, ignore)
    if tp + fp + fn == 0:
        dice = iou = float("nan")
    else:
        dice = 2 * tp / (2 * tp + fp + fn)
        iou = tp / (tp + fp + fn)
    return {
        "Dice": dice,
        "IoU": iou,
        "FP": fp,
        "TP": tp,
        "FN": fn,
        "TN": tn,
        "n_pred": tp + fp,
        "n_ref": tp + fn,
    }


def nnunet_case_metrics(
    ref_seg: np.ndarray, pred_seg: np.ndarray, labels: Iterable[int], ignore_label: int | None = None
) -> dict[int, dict[str, float]]:
    """Per-label nnU-Net metrics of one case; ``labels`` are usually the foreground labels."""
    return {int(lab): nnunet_label_metrics(ref_seg, pred_seg, int(lab), ignore_label) for lab in labels}


def benchmark_dice_iou(gt_mask: np.ndarray, pred_mask: np.ndarray) -> tuple[float, float]:
    """Per-image Dice and IoU of binary masks; empty prediction of an empty reference scores 1, not NaN."""
    tp, fp, fn, _ = confusion_counts(gt_mask, pred_mask)
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)


def to_grey_map(prob: np.ndarray) -> np.ndarray:
    """Quantise a probability map in [0, 1] to the uint8 grey map that benchmark tools read from PNG files."""
    prob = np.asarray(prob, dtype=np.float64)
    if prob.size and (np.nanmin(prob) < -1e-6 or np.nanmax(prob) > 1 + 1e-6):
        raise ValueError(f"probabilities must lie in [0, 1], got [{np.nanmin(prob)}, {np.nanmax(prob)}]")
    return np.clip(np.round(prob * 255.0), 0, 255).astype(np.uint8)


def sod_metrics(grey_map: np.ndarray, gt_mask: np.ndarray) -> dict[str, object]:
    """wFm, Sm, E-measure curve and MAE of one 2D image via PySODMetrics' default (uint8, normalised) path.

    ``grey_map`` is uint8 0..255 (a saved prediction map); ``gt_mask`` is boolean. PySODMetrics thresholds
    the reference at 128 and min-max rescales the map, as the MATLAB/PraNet evaluation does.
    """
    if grey_map.ndim != 2:
        raise ValueError(f"salient-object metrics need a 2D map, got shape {grey_map.shape}")
    gt = np.asarray(gt_mask, dtype=bool).astype(np.uint8) * 255
    pred = np.asarray(grey_map, dtype=np.uint8)
    wfm, sm, em, mae = WeightedFmeasure(), Smeasure(), Emeasure(), MAE()
    for metric in (wfm, sm, em, mae):
        metric.step(pred=pred, gt=gt)
    curve = np.asarray(em.changeable_ems[0], dtype=np.float64)
    return {
        "wfm": float(wfm.weighted_fms[0]),
        "sm": float(sm.sms[0]),
        "em_curve": curve,
        "mean_em": float(curve.mean()),
        "max_em": float(curve.max()),
        "mae": float(mae.maes[0]),
    }


def benchmark_case_metrics(
    gt_mask: np.ndarray, pred_mask: np.ndarray, prob: np.ndarray | None = None
) -> dict[str, object]:
    """All polyp-benchmark metrics of one 2D image and one foreground class.

    Dice/IoU use the hard mask ``pred_mask`` (what nnU-Net exports: argmax of the probabilities); the
    soft metrics use ``prob`` (class probability in [0, 1]) when given, else the hard mask as a 0/255 map.
    """
    dice, iou = benchmark_dice_iou(gt_mask, pred_mask)
    grey = to_grey_map(prob) if prob is not None else np.asarray(pred_mask, dtype=bool).astype(np.uint8) * 255
    out: dict[str, object] = {"dice": dice, "iou": iou}
    out.update(sod_metrics(grey, gt_mask))
    return out


def aggregate_benchmark(cases: Sequence[dict[str, object]]) -> dict[str, float]:
    """Dataset-level benchmark numbers: means over images; meanEm/maxEm from the image-averaged curve."""
    if not cases:
        return {k: float("nan") for k in ("mDice", "mIoU", "wFm", "Sm", "meanEm", "maxEm", "MAE")}
    curve = np.mean(np.stack([np.asarray(c["em_curve"], dtype=np.float64) for c in cases]), axis=0)
    return {
        "mDice": float(np.mean([c["dice"] for c in cases])),
        "mIoU": float(np.mean([c["iou"] for c in cases])),
        "wFm": float(np.mean([c["wfm"] for c in cases])),
        "Sm": float(np.mean([c["sm"] for c in cases])),
        "meanEm": float(curve.mean()),
        "maxEm": float(curve.max()),
        "MAE": float(np.mean([c["mae"] for c in cases])),
    }


def nnunet_mean(values: Iterable[float]) -> float:
    """nnU-Net's dataset mean: ``nanmean`` over cases (NaN only when every case is empty-empty)."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0 or np.all(np.isnan(arr)):
        return float("nan")
    return float(np.nanmean(arr))
