"""Scoring one case in both conventions: nnU-Net's per-label counts and the polyp benchmark's soft metrics.

The soft metrics use the best map available (nnU-Net's probabilities, a ``--soft-png`` grey map, else the mask);
the source is recorded per row. Volumes get the nnU-Net convention only.
"""

from __future__ import annotations

import numpy as np

from m2s_nnunet import metrics
from m2s_nnunet.evaluation.cases import CaseFiles
from m2s_nnunet.evaluation.errors import EvaluationError
from m2s_nnunet.evaluation.labels import check_values
from m2s_nnunet.evaluation.readers import binary_mask_to_1, read_grey_map, read_label_map, read_probabilities


def evaluate_case(
    files: CaseFiles, labels: dict[int, str], ignore_label: int | None, soft_png: bool = False,
    label_source: str = "the label list", drop_alpha: bool = False,
) -> list[dict]:
    """Rows (one per foreground label) with both conventions; soft metrics only for 2D cases.

    Two private columns carry what :func:`~m2s_nnunet.evaluation.evaluate_folder` turns into notes: ``_unscored``
    (values counted as background, ``--labels`` only) and ``_read_notes`` (how alpha channels were read).
    """
    read_notes: list[str] = []
    gt = binary_mask_to_1(read_label_map(files.gt, drop_alpha, read_notes), labels)
    unscored = check_values(gt, files.gt, "reference", labels, ignore_label, label_source, soft_png)
    raw_pred = (read_grey_map(files.pred, drop_alpha, read_notes) if soft_png
                else read_label_map(files.pred, drop_alpha, read_notes))
    if raw_pred.shape != gt.shape:
        raise EvaluationError(
            f"shape mismatch for case '{files.case}': prediction {files.pred} {raw_pred.shape} vs "
            f"reference {files.gt} {gt.shape}"
        )
    is_2d = gt.ndim == 2
    num_classes = max(labels) + 1
    prob = read_probabilities(files.npz, gt.shape, num_classes) if files.npz is not None and is_2d else None
    if soft_png and prob is None:
        if len(labels) != 1:
            raise EvaluationError("--soft-png (grey 0..255 probability maps) needs exactly one foreground label")
        source = "grey map"
        grey = raw_pred
        pred = (grey > 0.5).astype(np.uint8) * next(iter(labels))
    else:
        if soft_png:
            raw_pred = np.argmax(prob, axis=0)  # the npz is the prediction; the grey map is not a label map
        source = "probabilities" if prob is not None else "mask"
        grey = None
        pred = binary_mask_to_1(raw_pred, labels) if list(labels) == [1] else raw_pred
        unscored += check_values(pred, files.pred, "prediction", labels, ignore_label, label_source, soft_png)
    nn = metrics.nnunet_case_metrics(gt, pred, labels, ignore_label)
    rows = []
    for lab, name in labels.items():
        row: dict = {
            "case": files.case,
            "label": lab,
            "label_name": name,
            "source": source if is_2d else "mask",
            "_unscored": tuple(sorted(set(unscored))),
            "_read_notes": tuple(read_notes),
        }
        row.update({f"nnunet_{k}" if k in ("Dice", "IoU") else k: v for k, v in nn[lab].items()})
        if is_2d:
            class_prob = prob[lab] if prob is not None else grey
            bench = metrics.benchmark_case_metrics(gt == lab, pred == lab, class_prob)
            row.update({k: bench[k] for k in metrics.BENCHMARK_KEYS})
            row["em_curve"] = bench["em_curve"]
        rows.append(row)
    return rows
