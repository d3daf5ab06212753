"""``m2s_nnunet.evaluation.scoring``: per-case counts identical to nnU-Net's own ``compute_metrics``."""

from __future__ import annotations

import numpy as np
import pytest
from fake_predictions import H, W, save_picture

from m2s_nnunet import evaluation


def test_parity_with_nnunet_compute_metrics(tmp_path):
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

    rng = np.random.default_rng(1)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    for i in range(4):
        save_picture(gt_dir / f"c{i}.png", rng.integers(0, 3, (H, W)))
        save_picture(pred_dir / f"c{i}.png", rng.integers(0, 3, (H, W)) * (i != 3))
    res = evaluation.evaluate_folder(pred_dir, gt_dir, labels=["1", "2"], progress=False)
    for i in range(4):
        ref = compute_metrics(str(gt_dir / f"c{i}.png"), str(pred_dir / f"c{i}.png"), NaturalImage2DIO(), [1, 2])
        for lab in (1, 2):
            row = res.per_case[(res.per_case["case"] == f"c{i}") & (res.per_case["label"] == lab)].iloc[0]
            for k in ("TP", "FP", "FN", "TN"):
                assert row[k] == ref["metrics"][lab][k]
            assert row["nnunet_Dice"] == pytest.approx(ref["metrics"][lab]["Dice"], nan_ok=True)
            assert row["nnunet_IoU"] == pytest.approx(ref["metrics"][lab]["IoU"], nan_ok=True)
    assert res.aggregate["label"].iloc[-1] == "foreground mean"
