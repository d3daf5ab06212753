"""``m2s_nnunet.evaluation.labels``: where the scored labels come from, and values that are not among them."""

from __future__ import annotations

import numpy as np
import pytest
from fake_predictions import H, W, make_folders, multiclass_folders, save_picture

from m2s_nnunet import evaluation


def test_gt_0_255_masks_and_labels_from_dataset_json(tmp_path):
    pred_dir, gt_dir, arrays = make_folders(tmp_path)
    for k in "abcd":
        save_picture(gt_dir / f"{k}.png", arrays["gt_" + k] * 255)
    (pred_dir / "dataset.json").write_text('{"labels": {"background": 0, "polyp": 1}}')
    res = evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    assert res.aggregate["label"].iloc[0] == "1 (polyp)"
    assert res.per_case.set_index("case").loc["b", "nnunet_Dice"] == 1.0


def test_grey_probability_png_without_soft_png_is_refused_with_the_flag_named(tmp_path):
    pred_dir, gt_dir, arrays = make_folders(tmp_path)
    (pred_dir / "a.npz").unlink()
    save_picture(pred_dir / "a.png", np.clip(arrays["a"] * 200 + np.arange(W)[None, :], 0, 255))  # grey 0..255 map
    with pytest.raises(evaluation.EvaluationError, match=r"(?s)a\.png: prediction holds value.*--soft-png"):
        evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    res = evaluation.evaluate_folder(pred_dir, gt_dir, soft_png=True, progress=False)
    assert res.per_case.set_index("case").loc["a", "source"] == "grey map"


def test_stale_dataset_json_or_wrong_labels_never_score_absent_labels(tmp_path):
    pred_dir, gt_dir, _ = make_folders(tmp_path)
    (pred_dir / "dataset.json").write_text('{"labels": {"background": 0, "liver": 7}}')
    with pytest.raises(evaluation.EvaluationError, match=r"(?s)holds value\(s\) \[1\].*\[7\].*stale"):
        evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    (pred_dir / "dataset.json").unlink()
    with pytest.raises(evaluation.EvaluationError, match=r"a\.npz: holds 2 class map\(s\) but 8 are needed"):
        evaluation.evaluate_folder(pred_dir, gt_dir, labels=["1", "7"], progress=False)
    (pred_dir / "a.npz").unlink()
    # --labels: other values count as background, but a list none of whose labels occurs anywhere is refused
    with pytest.raises(evaluation.EvaluationError, match=r"(?s)--labels \[7\]: none of these labels occurs.*\[1\]"):
        evaluation.evaluate_folder(pred_dir, gt_dir, labels=["7"], progress=False)
    res = evaluation.evaluate_folder(pred_dir, gt_dir, labels=["1", "7"], progress=False)
    assert any("[7] occur in no reference and no prediction" in n for n in res.notes)


@pytest.mark.parametrize("content", ['{"labels": {"background": 0, "polyp": 1', "[1, 2]", '{"labels": {"polyp": "1"}}',
                                     '{"name": "no labels"}'])
def test_corrupt_dataset_json_is_named(tmp_path, content):
    pred_dir, gt_dir, _ = make_folders(tmp_path)
    (pred_dir / "dataset.json").write_text(content)
    with pytest.raises(evaluation.EvaluationError, match=r"(?s)pred/dataset\.json: .*--labels"):
        evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)


def test_explicit_labels_score_a_subset_and_other_values_count_as_background(tmp_path):
    pred_dir, gt_dir = multiclass_folders(tmp_path)
    full = evaluation.evaluate_folder(pred_dir, gt_dir, progress=False).per_case  # labels found: 1 and 2
    res = evaluation.evaluate_folder(pred_dir, gt_dir, labels=["1"], progress=False)
    assert res.per_case["label"].tolist() == [1, 1]
    assert res.per_case["nnunet_Dice"].tolist() == full[full["label"] == 1]["nnunet_Dice"].tolist()
    assert res.per_case["dice"].tolist() == full[full["label"] == 1]["dice"].tolist()
    assert any("value(s) [2] are not among the scored labels (--labels) and count as background" in n
               for n in res.notes)
    res = evaluation.evaluate_folder(pred_dir, gt_dir, labels=["lesion=2"], progress=False)
    assert res.aggregate["label"].tolist() == ["2 (lesion)"] and any("[1] are not among" in n for n in res.notes)
    # labels from a dataset.json that does not match the data are still refused
    (pred_dir / "dataset.json").write_text('{"labels": {"background": 0, "polyp": 1}}')
    with pytest.raises(evaluation.EvaluationError, match=r"(?s)holds value\(s\) \[2\].*stale"):
        evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)


def test_explicit_labels_still_refuse_grey_probability_predictions(tmp_path):
    pred_dir, gt_dir = multiclass_folders(tmp_path)
    grey = np.clip(np.arange(H * W).reshape(H, W) % 200, 0, 255)  # a 0..255 grey map
    save_picture(pred_dir / "a.png", grey)
    with pytest.raises(evaluation.EvaluationError, match=r"(?s)a\.png: prediction holds value.*--soft-png"):
        evaluation.evaluate_folder(pred_dir, gt_dir, labels=["1"], progress=False)
