"""Folder evaluation: matching, probabilities vs masks, parity with nnU-Net's compute_metrics, outputs."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m2s_nnunet import cli, cli_analysis, evaluation, metrics

H, W = 24, 32


def _save(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr.astype(np.uint8)).save(path)


def _make_folders(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
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
        _save(gt_dir / f"{k}.png", gts[k])
        _save(pred_dir / f"{k}.png", preds[k])
    prob1 = np.clip(preds["a"] * 0.8 + 0.1, 0, 1).astype(np.float32)
    np.savez_compressed(pred_dir / "a.npz", probabilities=np.stack([1 - prob1, prob1])[:, None])  # (C, 1, H, W)
    return pred_dir, gt_dir, {"gt_" + k: v for k, v in gts.items()} | preds


def test_evaluate_folder_conventions_and_sources(tmp_path):
    pred_dir, gt_dir, arrays = _make_folders(tmp_path)
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


def test_parity_with_nnunet_compute_metrics(tmp_path):
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

    rng = np.random.default_rng(1)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    for i in range(4):
        _save(gt_dir / f"c{i}.png", rng.integers(0, 3, (H, W)))
        _save(pred_dir / f"c{i}.png", rng.integers(0, 3, (H, W)) * (i != 3))
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


def test_gt_0_255_masks_and_labels_from_dataset_json(tmp_path):
    pred_dir, gt_dir, arrays = _make_folders(tmp_path)
    for k in "abcd":
        _save(gt_dir / f"{k}.png", arrays["gt_" + k] * 255)
    (pred_dir / "dataset.json").write_text('{"labels": {"background": 0, "polyp": 1}}')
    res = evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    assert res.aggregate["label"].iloc[0] == "1 (polyp)"
    assert res.per_case.set_index("case").loc["b", "nnunet_Dice"] == 1.0


def test_errors_are_clear(tmp_path):
    pred_dir, gt_dir, _ = _make_folders(tmp_path)
    (gt_dir / "d.png").unlink()
    with pytest.raises(evaluation.EvaluationError, match="no reference.*d"):
        evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    (pred_dir / "d.png").unlink()
    (pred_dir / "c.png").unlink()
    with pytest.raises(evaluation.EvaluationError, match="--chill"):
        evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    assert len(evaluation.evaluate_folder(pred_dir, gt_dir, allow_missing=True, progress=False).per_case) == 2
    _save(pred_dir / "b.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(evaluation.EvaluationError, match="shape mismatch for case 'b'"):
        evaluation.evaluate_folder(pred_dir, gt_dir, allow_missing=True, progress=False)


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


def test_cli_evaluate_writes_outputs(tmp_path, capsys):
    pred_dir, gt_dir, _ = _make_folders(tmp_path)
    parser = argparse.ArgumentParser()
    cli_analysis.add_evaluate_parser(parser.add_subparsers())
    args = parser.parse_args(["evaluate", str(pred_dir), str(gt_dir), "-o", str(tmp_path / "ev")])
    assert args.func(args) == 0
    for name in ("per_case.csv", "aggregate.csv", "aggregate.md"):
        assert (tmp_path / "ev" / name).stat().st_size > 0
    out = capsys.readouterr().out
    assert "mDice" in out and "py_sod_metrics.WeightedFmeasure" in out
    assert cli.main(["evaluate", str(pred_dir), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "reference folder does not exist" in err and str(tmp_path / "nope") in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- bad inputs (issue 10)
def test_16bit_0_65535_masks_score_like_0_1_masks(tmp_path):
    pred_dir, gt_dir, arrays = _make_folders(tmp_path)
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


def test_grey_probability_png_without_soft_png_is_refused_with_the_flag_named(tmp_path):
    pred_dir, gt_dir, arrays = _make_folders(tmp_path)
    (pred_dir / "a.npz").unlink()
    _save(pred_dir / "a.png", np.clip(arrays["a"] * 200 + np.arange(W)[None, :], 0, 255))  # grey 0..255 map
    with pytest.raises(evaluation.EvaluationError, match=r"(?s)a\.png: prediction holds value.*--soft-png"):
        evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)
    res = evaluation.evaluate_folder(pred_dir, gt_dir, soft_png=True, progress=False)
    assert res.per_case.set_index("case").loc["a", "source"] == "grey map"


def test_stale_dataset_json_or_wrong_labels_never_score_absent_labels(tmp_path):
    pred_dir, gt_dir, _ = _make_folders(tmp_path)
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


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"PK\x03\x04 not really a zip", "not a readable .npz"),
    ("nan", "NaN or infinite"),
    ("one_channel", "holds 1 class map"),
    ("logits", "not probabilities"),
    ("no_key", "no 'probabilities' array"),
])
def test_bad_npz_files_are_named(tmp_path, content, message):
    pred_dir, gt_dir, _ = _make_folders(tmp_path)
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


@pytest.mark.parametrize("content", ['{"labels": {"background": 0, "polyp": 1', "[1, 2]", '{"labels": {"polyp": "1"}}',
                                     '{"name": "no labels"}'])
def test_corrupt_dataset_json_is_named(tmp_path, content):
    pred_dir, gt_dir, _ = _make_folders(tmp_path)
    (pred_dir / "dataset.json").write_text(content)
    with pytest.raises(evaluation.EvaluationError, match=r"(?s)pred/dataset\.json: .*--labels"):
        evaluation.evaluate_folder(pred_dir, gt_dir, progress=False)


def test_truncated_and_garbage_label_files_are_named(tmp_path):
    pred_dir, gt_dir, _ = _make_folders(tmp_path)
    data = (gt_dir / "b.png").read_bytes()
    (gt_dir / "b.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(evaluation.EvaluationError, match=r"b\.png: corrupt or truncated"):
        evaluation.evaluate_folder(pred_dir, gt_dir, labels=["1"], progress=False)
    (gt_dir / "b.png").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(evaluation.EvaluationError, match=r"b\.png: not an image"):
        evaluation.evaluate_folder(pred_dir, gt_dir, labels=["1"], progress=False)


def test_unwritable_output_is_refused_before_scoring(tmp_path, readonly_dir, capsys, monkeypatch):
    pred_dir, gt_dir, _ = _make_folders(tmp_path)
    monkeypatch.setattr(evaluation, "evaluate_folder", lambda *a, **k: pytest.fail("scored before the check"))
    assert cli.main(["evaluate", str(pred_dir), str(gt_dir), "-o", str(readonly_dir / "ev")]) == 2
    err = capsys.readouterr().err
    assert "not writable" in err and str(readonly_dir) in err and "Traceback" not in err


def test_full_disk_while_writing_names_the_file(tmp_path, capsys):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    pred_dir, gt_dir, _ = _make_folders(tmp_path)
    out = tmp_path / "ev"
    out.mkdir()
    (out / "per_case.csv").symlink_to("/dev/full")  # every write there fails with ENOSPC, as on a full disk
    assert cli.main(["evaluate", str(pred_dir), str(gt_dir), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "per_case.csv" in err and "disk is full" in err


# ---------------------------------------------------------------------------------------------- review of issue 10
def _multiclass_folders(tmp_path: Path) -> tuple[Path, Path]:
    """References and predictions holding labels 0/1/2 (two cases)."""
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    for k, shift in (("a", 0), ("b", 2)):
        g = np.zeros((H, W), np.uint8)
        g[4:12, 4:12] = 1
        g[14:20, 20:28] = 2
        _save(gt_dir / f"{k}.png", g)
        _save(pred_dir / f"{k}.png", np.roll(g, shift, axis=0))
    return pred_dir, gt_dir


def test_explicit_labels_score_a_subset_and_other_values_count_as_background(tmp_path):
    pred_dir, gt_dir = _multiclass_folders(tmp_path)
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
    pred_dir, gt_dir = _multiclass_folders(tmp_path)
    grey = np.clip(np.arange(H * W).reshape(H, W) % 200, 0, 255)  # a 0..255 grey map
    _save(pred_dir / "a.png", grey)
    with pytest.raises(evaluation.EvaluationError, match=r"(?s)a\.png: prediction holds value.*--soft-png"):
        evaluation.evaluate_folder(pred_dir, gt_dir, labels=["1"], progress=False)


@pytest.mark.parametrize("ending", [".mha", ".nrrd", ".nii.gz"])
def test_2d_label_maps_in_volume_formats_are_scored(tmp_path, ending):
    import SimpleITK as sitk

    pred_dir, gt_dir, arrays = _make_folders(tmp_path)
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
    pred_dir, gt_dir, arrays = _make_folders(tmp_path)
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
