"""``m2s_nnunet.evaluation.folder``: a whole folder in both conventions, soft metrics from the .npz, volumes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fake_predictions import make_folders

from m2s_nnunet import evaluation, metrics


def test_evaluate_folder_conventions_and_sources(tmp_path):
    pred_dir, gt_dir, arrays = make_folders(tmp_path)
    res = evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    pc = res.per_case.set_index("case")
    assert pc.loc["a", "source"] == "probabilities" and pc.loc["b", "source"] == "mask"
    assert math.isnan(pc.loc["c", "nnunet_Dice"]) and pc.loc["c", "dice"] == 1.0
    assert pc.loc["d", "nnunet_Dice"] == 0.0 and pc.loc["d", "dice"] == 0.0
    # a: gt rows 4..11, pred rows 6..13 -> TP 6*8, FP 2*8, FN 2*8
    assert pc.loc["a", "nnunet_Dice"] == pytest.approx(2 * 48 / (2 * 48 + 16 + 16))
    agg = res.aggregate.iloc[0]
    assert agg["n_empty_empty"] == 1
    assert agg["nnU-Net Dice"] == pytest.approx(np.nanmean([0.75, 1.0, np.nan, 0.0]))
    assert agg["mDice"] == pytest.approx(np.mean([0.75, 1.0, 1.0, 0.0]))
    # soft metrics of case a come from the npz probabilities, not from the mask
    prob1 = np.clip(arrays["a"] * 0.8 + 0.1, 0, 1)
    expected = metrics.sod_metrics(metrics.to_grey_map(prob1), arrays["gt_a"] == 1)
    assert pc.loc["a", "mae"] == pytest.approx(expected["mae"])
    assert any("probabilities (1 cases)" in n for n in res.notes)


def test_nifti_volumes_report_nnunet_convention_only(tmp_path):
    import SimpleITK as sitk

    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    vol = np.zeros((5, 8, 8), np.uint8)
    vol[1:4, 2:6, 2:6] = 1
    for d, arr in ((gt_dir, vol), (pred_dir, np.roll(vol, 1, axis=0))):
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(d / "v1.nii.gz"))
    res = evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    assert res.is_3d and "mDice" not in res.aggregate.columns
    assert res.aggregate["nnU-Net Dice"].iloc[0] == pytest.approx(2 * 32 / (2 * 32 + 16 + 16))
    assert any("3D volumes" in n for n in res.notes)
