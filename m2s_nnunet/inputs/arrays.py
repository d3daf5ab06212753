"""nnU-Net's ``.npz`` probability files (``--save_probabilities`` / ``--npz``), checked before they are used.

A damaged, empty, one-channel or non-finite file used to give a traceback or, worse, NaN probabilities that were
cast silently into the soft metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from m2s_nnunet.errors import UserError

FIX = "re-export it with nnUNetv2_predict --save_probabilities, or delete it to score the hard mask instead"
_TOL = 1e-3


def read_probabilities(npz: str | Path, shape: tuple[int, ...], num_classes: int) -> np.ndarray:
    """``probabilities`` of ``npz`` as (C, *shape), C >= ``num_classes`` (background included), values in 0..1.

    nnU-Net writes (C, 1, H, W) for 2D images (the dummy z axis is dropped here) and (C, Z, Y, X) for volumes.
    """
    npz = Path(npz)
    if npz.stat().st_size == 0:
        raise UserError("empty file (0 bytes)", npz, FIX)
    try:
        with np.load(npz, allow_pickle=False) as data:
            keys = list(data.keys())
            if "probabilities" not in keys:
                raise UserError(f"no 'probabilities' array (arrays found: {keys})", npz, FIX)
            prob = np.asarray(data["probabilities"])
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - zip, zlib, pickle and format errors all mean "unreadable"
        raise UserError(f"not a readable .npz file ({type(err).__name__}: {err})", npz, FIX) from err
    if prob.dtype.kind not in "fiu":
        raise UserError(f"probabilities have dtype {prob.dtype}, expected floating point numbers", npz, FIX)
    if len(shape) == 2 and prob.ndim == 4 and prob.shape[1] == 1:
        prob = prob[:, 0]
    if prob.ndim != len(shape) + 1 or prob.shape[1:] != tuple(shape):
        raise UserError(f"probabilities of shape {prob.shape} do not match the reference {tuple(shape)} "
                        "(expected one map per class first)", npz, FIX)
    if prob.shape[0] < num_classes:
        raise UserError(f"holds {prob.shape[0]} class map(s) but {num_classes} are needed (background and every "
                        "scored label)", npz, FIX)
    prob = prob.astype(np.float64, copy=False)
    finite = np.isfinite(prob)
    if not finite.all():
        raise UserError(f"{int(prob.size - finite.sum())} probability value(s) are NaN or infinite", npz, FIX)
    if prob.size and (prob.min() < -_TOL or prob.max() > 1 + _TOL):
        raise UserError(f"values {prob.min():.3g}..{prob.max():.3g} are not probabilities (logits?)", npz, FIX)
    return prob
