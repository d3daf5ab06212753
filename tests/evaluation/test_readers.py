"""``m2s_nnunet.evaluation.readers``: 16-bit masks, volume formats, alpha channels, bad .npz and image files."""

from __future__ import annotations

import numpy as np
import pytest
from fake_predictions import H, W, make_folders
from PIL import Image

from m2s_nnunet import cli, evaluation


def test_16bit_0_65535_masks_score_like_0_1_masks(tmp_path):
    pred_dir, gt_dir, arrays = make_folders(tmp_path)
    expected = evaluation.evaluate_folder(pred_dir, gt_dir, progress=False).per_case["nnunet_Dice"]
    (pred_dir / "a.npz").unlink()
    for k in "abcd":  # 16-bit predictions against nnU-Net's 0/1 references
        Image.fromarray(arrays[k].astype(np.uint16) * 65535).save(pred_dir / f"{k}.png")
    res = evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    assert res.per_case["label"].tolist() == [1, 1, 1, 1]
    assert res.per_case["nnunet_Dice"].tolist() == pytest.approx(expected.tolist(), nan_ok=True)
    assert res.per_case.set_index("case").loc["a", "nnunet_Dice"] == pytest.approx(0.75)
    for k in "abcd":  # and 16-bit references too
        Image.fromarray(arrays["gt_" + k].astype(np.uint16) * 65535).save(gt_dir / f"{k}.png")
    res = evaluation.evaluate_folder(pred_dir, gt_dir, labels=["1"], progress=False)
    assert res.per_case["nnunet_Dice"].tolist() == pytest.approx(expected.tolist(), nan_ok=True)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"PK\x03\x04 not really a zip", "not a readable .npz"),
    ("nan", "NaN or infinite"),
    ("one_channel", "holds 1 class map"),
    ("logits", "not probabilities"),
    ("no_key", "no 'probabilities' array"),
])
def test_bad_npz_files_are_named(tmp_path, content, message):
    pred_dir, gt_dir, _ = make_folders(tmp_path)
    npz = pred_dir / "a.npz"
    prob = np.full((2, 1, H, W), 0.5, np.float32)
    if isinstance(content, bytes):
        npz.write_bytes(content)
    elif content == "nan":
        prob[1, 0, 3, 3] = np.nan
        np.savez(npz, probabilities=prob)
    elif content == "one_channel":
        np.savez(npz, probabilities=prob[1:])
    elif content == "logits":
        np.savez(npz, probabilities=prob * 8 - 2)
    else:
        np.savez(npz, something_else=prob)
    with pytest.raises(evaluation.EvaluationError, match=rf"(?s)a\.npz: .*{message}"):
        evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)


def test_truncated_and_garbage_label_files_are_named(tmp_path):
    pred_dir, gt_dir, _ = make_folders(tmp_path)
    data = (gt_dir / "b.png").read_bytes()
    (gt_dir / "b.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(evaluation.EvaluationError, match=r"b\.png: corrupt or truncated"):
        evaluation.evaluate_folder(pred_dir, gt_dir, labels=["1"], progress=False)
    (gt_dir / "b.png").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(evaluation.EvaluationError, match=r"b\.png: not an image"):
        evaluation.evaluate_folder(pred_dir, gt_dir, labels=["1"], progress=False)


@pytest.mark.parametrize("ending", [".mha", ".nrrd", ".nii.gz"])
def test_2d_label_maps_in_volume_formats_are_scored(tmp_path, ending):
    import SimpleITK as sitk

    pred_dir, gt_dir, arrays = make_folders(tmp_path)
    (pred_dir / "a.npz").unlink()
    for k in "abcd":
        for d, arr in ((gt_dir, arrays["gt_" + k]), (pred_dir, arrays[k])):
            (d / f"{k}.png").unlink()
            sitk.WriteImage(sitk.GetImageFromArray(arr), str(d / f"{k}{ending}"))
    res = evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    assert not res.is_3d
    pc = res.per_case.set_index("case")
    assert pc.loc["a", "nnunet_Dice"] == pytest.approx(0.75) and pc.loc["b", "dice"] == 1.0
    rgb = sitk.GetImageFromArray(np.zeros((H, W, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(pred_dir / f"a{ending}"))
    with pytest.raises(evaluation.EvaluationError, match=r"one value per pixel.*3 component"):
        evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)


def test_alpha_masks_are_scored_with_a_note_or_refused_with_drop_alpha(tmp_path, capsys):
    pred_dir, gt_dir, arrays = make_folders(tmp_path)
    expected = evaluation.evaluate_folder(pred_dir, gt_dir, progress=False).per_case["nnunet_Dice"].tolist()
    for k in "abcd":  # reference masks exported with a transparent background
        g = arrays["gt_" + k] * 255
        Image.fromarray(np.dstack([g, g, g, g]), "RGBA").save(gt_dir / f"{k}.png")
    res = evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    assert res.per_case["nnunet_Dice"].tolist() == pytest.approx(expected, nan_ok=True)
    assert any("alpha channels of" in n and "alpha channel ignored" in n for n in res.notes)
    g = arrays["gt_a"] * 255  # white everywhere, the mask in alpha only: ambiguous
    Image.fromarray(np.dstack([np.full_like(g, 255)] * 3 + [g]), "RGBA").save(gt_dir / "a.png")
    assert cli.main(["evaluate", str(pred_dir), str(gt_dir), "-o", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert "a.png" in err and "--drop-alpha" in err and "Traceback" not in err
    assert cli.main(["evaluate", str(pred_dir), str(gt_dir), "-o", str(tmp_path / "ev"), "--drop-alpha"]) == 0
    assert "varying alpha channel dropped (--drop-alpha)" in capsys.readouterr().out
