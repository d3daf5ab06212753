"""Score a folder of predictions against ground truth in both the nnU-Net and the polyp-benchmark convention.

Predictions are label maps as nnU-Net writes them (``<case>.png`` or ``<case>.nii.gz``); when
``<case>.npz`` (nnU-Net ``--save_probabilities`` / ``--npz``: array ``probabilities`` of shape
(C, 1, H, W) for 2D images, (C, Z, Y, X) for volumes) sits next to a prediction, the soft
benchmark metrics use the class probability map instead of the hard mask. The source is recorded per case.

Every file goes through the shared readers of ``m2s_nnunet.inputs`` (decoded in full, finite values). With labels
from a ``dataset.json`` or from the references, every value of every prediction and reference must be background,
a scored label or the ignore label: a stale ``dataset.json`` is refused with the file named, instead of scoring
labels that exist nowhere (mDice 1.0) while the real one is never scored. With ``--labels`` (a subset of the
labels may be scored), other values count as background and are listed in the notes; a ``--labels`` list none of
whose labels occurs anywhere while other values do is refused, and so is a 0..255 probability PNG given as a
prediction (``--soft-png``).

The steps, one module each: ``cases`` (pairing files by case name), ``readers`` (one file as an array),
``labels`` (which values are scored), ``scoring`` (one case), ``folder`` (a whole folder and its aggregate),
``report`` (the files written).
"""

from __future__ import annotations

from m2s_nnunet.evaluation.cases import ALL_ENDINGS, IMAGE_ENDINGS_2D, VOLUME_ENDINGS, CaseFiles, match_cases
from m2s_nnunet.evaluation.errors import EvaluationError
from m2s_nnunet.evaluation.folder import EvaluationResult, aggregate_table, evaluate_folder
from m2s_nnunet.evaluation.labels import GREY_MAP_MIN_VALUES, resolve_labels
from m2s_nnunet.evaluation.readers import read_grey_map, read_label_map, read_probabilities
from m2s_nnunet.evaluation.report import markdown_table, write_evaluation_files
from m2s_nnunet.evaluation.scoring import evaluate_case

__all__ = [
    "ALL_ENDINGS",
    "GREY_MAP_MIN_VALUES",
    "IMAGE_ENDINGS_2D",
    "VOLUME_ENDINGS",
    "CaseFiles",
    "EvaluationError",
    "EvaluationResult",
    "aggregate_table",
    "evaluate_case",
    "evaluate_folder",
    "markdown_table",
    "match_cases",
    "read_grey_map",
    "read_label_map",
    "read_probabilities",
    "resolve_labels",
    "write_evaluation_files",
]
