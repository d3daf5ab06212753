"""Metric functions against hand-computed tiny examples and against PySODMetrics itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
from py_sod_metrics import MAE, Emeasure, Smeasure, WeightedFmeasure

from m2s_nnunet import metrics

REF = np.array([[1, 1, 0], [0, 0, 0]])
PRED = np.array([[1, 0, 1], [0, 0, 0]])


def test_confusion_counts_and_nnunet_metrics_by_hand():
    assert metrics.confusion_counts(REF == 1, PRED == 1) == (1, 1, 1, 3)
    m = metrics.nnunet_label_metrics(REF, PRED, 1)
    assert m["Dice"] == pytest.approx(0.5)  # 2*1 / (2*1 + 1 + 1)
    assert m["IoU"] == pytest.approx(1 / 3)  # 1 / (1 + 1 + 1)
    assert (m["TP"], m["FP"], m["FN"], m["TN"], m["n_pred"], m["n_ref"]) == (1, 1, 1, 3, 2, 2)


def test_empty_empty_conventions_differ():
    empty = np.zeros((4, 4), dtype=np.uint8)
    nn = metrics.nnunet_label_metrics(empty, empty, 1)
    assert math.isnan(nn["Dice"]) and math.isnan(nn["IoU"])
    assert metrics.benchmark_dice_iou(empty == 1, empty == 1) == (1.0, 1.0)
    one = empty.copy()
    one[0, 0] = 1
    assert metrics.benchmark_dice_iou(empty == 1, one == 1) == (0.0, 0.0)
    assert metrics.nnunet_label_metrics(empty, one, 1)["Dice"] == 0.0


def test_ignore_label_is_excluded_like_nnunet():
    ref = np.array([[1, 2], [0, 1]])
    pred = np.array([[1, 1], [1, 0]])
    m = metrics.nnunet_label_metrics(ref, pred, 1, ignore_label=2)
    # pixel (0,1) ignored: TP=1 (0,0), FP=1 (1,0), FN=1 (1,1), TN=0
    assert (m["TP"], m["FP"], m["FN"], m["TN"]) == (1, 1, 1, 0)


def test_case_metrics_multi_label():
    ref = np.array([[1, 2, 0, 0]])
    pred = np.array([[1, 2, 2, 0]])
    out = metrics.nnunet_case_metrics(ref, pred, [1, 2])
    assert out[1]["Dice"] == 1.0
    assert out[2]["Dice"] == pytest.approx(2 / 3)


def test_nnunet_mean_skips_nan():
    assert metrics.nnunet_mean([0.5, float("nan"), 1.0]) == pytest.approx(0.75)
    assert math.isnan(metrics.nnunet_mean([float("nan")]))


def test_sod_metrics_hand_examples():
    gt = np.zeros((8, 8), dtype=bool)
    gt[:, :4] = True
    full = np.full((8, 8), 255, dtype=np.uint8)
    out = metrics.sod_metrics(full, gt)
    assert out["mae"] == pytest.approx(0.5)  # constant map is not rescaled: |1 - gt| averages 0.5
    empty_gt = np.zeros((8, 8), dtype=bool)
    zero = np.zeros((8, 8), dtype=np.uint8)
    out = metrics.sod_metrics(zero, empty_gt)
    assert out["sm"] == pytest.approx(1.0)  # S-measure of an empty reference: 1 - mean(pred)
    assert out["mae"] == 0.0
    perfect = metrics.sod_metrics(gt.astype(np.uint8) * 255, gt)
    assert perfect["wfm"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["sm"] == pytest.approx(1.0)
    assert perfect["max_em"] == pytest.approx(64 / 63)  # PySODMetrics divides by (N - 1)
    assert perfect["em_curve"].shape == (256,)


def test_to_grey_map_rounds_and_checks_range():
    assert metrics.to_grey_map(np.array([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]
    with pytest.raises(ValueError):
        metrics.to_grey_map(np.array([1.5]))


def test_benchmark_matches_pysodmetrics_on_random_maps():
    rng = np.random.default_rng(0)
    refs = [WeightedFmeasure(), Smeasure(), Emeasure(), MAE()]
    cases = []
    for i in range(6):
        gt = np.zeros((40, 48), dtype=bool)
        y, x = rng.integers(5, 30, 2)
        gt[y : y + 8 + i, x : x + 10] = True
        prob = np.clip(gt * 0.7 + rng.random(gt.shape) * 0.4, 0, 1)
        cases.append(metrics.benchmark_case_metrics(gt, prob > 0.5, prob))
        grey = metrics.to_grey_map(prob)
        for r in refs:
            r.step(pred=grey, gt=gt.astype(np.uint8) * 255)
    agg = metrics.aggregate_benchmark(cases)
    wfm, sm, em, mae = (r.get_results() for r in refs)
    assert agg["wFm"] == pytest.approx(wfm["wfm"])
    assert agg["Sm"] == pytest.approx(sm["sm"])
    assert agg["MAE"] == pytest.approx(mae["mae"])
    assert agg["meanEm"] == pytest.approx(em["em"]["curve"].mean())
    assert agg["maxEm"] == pytest.approx(em["em"]["curve"].max())


def test_aggregate_dice_is_plain_mean_over_images():
    gt = np.zeros((4, 4), dtype=bool)
    gt[0, :2] = True
    pred = np.zeros_like(gt)
    pred[0, 0] = True
    empty = np.zeros_like(gt)
    cases = [
        metrics.benchmark_case_metrics(gt, gt),  # 1.0
        metrics.benchmark_case_metrics(gt, pred),  # 2*1/(2+0+1) = 2/3
        metrics.benchmark_case_metrics(empty, empty),  # empty-empty counts as 1
    ]
    agg = metrics.aggregate_benchmark(cases)
    assert agg["mDice"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert agg["mIoU"] == pytest.approx((1 + 1 / 2 + 1) / 3)
