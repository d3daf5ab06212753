"""``m2s_nnunet.evaluation.cases``: pairing predictions with references, and clear errors when they do not pair."""

from __future__ import annotations

import numpy as np
import pytest
from fake_predictions import H, W, make_folders, save_picture

from m2s_nnunet import evaluation


def test_errors_are_clear(tmp_path):
    pred_dir, gt_dir, _ = make_folders(tmp_path)
    (gt_dir / "d.png").unlink()
    with pytest.raises(evaluation.EvaluationError, match="no reference.*d"):
        evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    (pred_dir / "d.png").unlink()
    (pred_dir / "c.png").unlink()
    with pytest.raises(evaluation.EvaluationError, match="--chill"):
        evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    assert len(evaluation.evaluate_folder(pred_dir, gt_dir, allow_missing=True, progress=False).per_case) == 2
    save_picture(pred_dir / "b.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(evaluation.EvaluationError, match="shape mismatch for case 'b'"):
        evaluation.evaluate_folder(pred_dir, gt_dir, allow_missing=True, progress=False)
