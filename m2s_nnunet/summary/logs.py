"""Per-epoch values from nnU-Net's ``training_log_*.txt``, for the training-curve plot.

nnU-Net writes no machine-readable log, so the text lines are parsed; a line that does not parse becomes NaN
instead of an error, because a log is extra information and never a reason to refuse a summary.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

LOG_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?: ?")
NP_SCALAR = re.compile(r"np\.\w+\(([^()]*)\)")


def parse_training_log(paths: list[Path]) -> pd.DataFrame:
    """Per-epoch values from nnU-Net ``training_log_*.txt`` files (later files win for repeated epochs)."""
    records: dict[int, dict] = {}
    for path in sorted(paths):
        epoch = None
        for line in path.read_text(errors="replace").splitlines():
            msg = LOG_PREFIX.sub("", line).strip()
            if m := re.fullmatch(r"Epoch (\d+)", msg):
                epoch = int(m.group(1))
                records[epoch] = {"epoch": epoch}
            elif epoch is None:
                continue
            elif m := re.match(r"(train_loss|val_loss|Current learning rate:|Epoch time:) ?(\S+)", msg):
                key = {"Current learning rate:": "lr", "Epoch time:": "epoch_time"}.get(m.group(1), m.group(1))
                records[epoch][key] = _to_float(m.group(2))
            elif m := re.match(r"Pseudo dice \[(.*)\]", msg):
                items = [s for s in NP_SCALAR.sub(r"\1", m.group(1)).split(",") if s.strip()]
                values = [_to_float(s) for s in items]
                records[epoch]["pseudo_dice"] = float(np.nanmean(values)) if values else float("nan")
    df = pd.DataFrame([records[e] for e in sorted(records)])
    if "pseudo_dice" in df:
        ema, out = None, []
        for v in df["pseudo_dice"]:  # nnU-Net's EMA: 0.9 * old + 0.1 * new
            ema = v if ema is None or np.isnan(ema) else 0.9 * ema + 0.1 * v
            out.append(ema)
        df["pseudo_dice_ema"] = out
    return df


def _to_float(s: str) -> float:
    try:
        return float(s.strip().rstrip("s").strip())
    except ValueError:
        return float("nan")
