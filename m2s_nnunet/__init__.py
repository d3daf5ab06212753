"""m2s-nnunet: M2SNet (Zhao et al. 2023) and its LossNet as a plain PyTorch model and as an nnU-Net v2 trainer.

``from m2s_nnunet import M2SNet, LossNet, structure_loss``. The names are resolved lazily so that the
command-line tools that do not need torch start quickly.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.9.0"
__all__ = ["LossNet", "M2SNet", "structure_loss", "__version__"]

_LAZY = {
    "M2SNet": "m2s_nnunet.network",
    "LossNet": "m2s_nnunet.losses",
    "structure_loss": "m2s_nnunet.losses",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'm2s_nnunet' has no attribute '{name}'")
