"""Cross-validation splits (``splits_final.json``) and case lists for ``convert``: built, checked, compared.

A split nnU-Net cannot use is refused here, with the fold and the cases named: an empty train or val list, a
training case in no fold at all, a case twice, names that are not in the training set. A fold may leave training
cases out (custom splits that hold some cases back in a fold). The comparison with an existing
``$nnUNet_preprocessed/DatasetXXX/splits_final.json`` reproduces the check of nnU-Net's planner, whose bare
``AssertionError`` users otherwise meet after re-converting a dataset.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from m2s_nnunet.errors import UserError
from m2s_nnunet.inputs.textfiles import read_json, read_lines
from m2s_nnunet.naming import short_list

NNUNET_SPLIT_SEED = 12345
Folds = list[dict[str, list[str]]]


def read_case_list(path: Path, to_case: Callable[[str], str]) -> list[str]:
    """One case per line (file names allowed, mapped through ``to_case``); blank lines and '#' comments ignored."""
    return [to_case(line) for line in read_lines(path, "case list")]


def kfold_splits(train_cases: list[str], folds: int) -> Folds:
    """nnU-Net's own K-fold split (sorted cases, KFold with seed 12345), so results match nnU-Net's default."""
    if not 2 <= folds <= len(train_cases):
        raise UserError(f"--folds {folds}: must be between 2 and the number of training cases ({len(train_cases)})")
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    splits = generate_crossval_split(sorted(train_cases), seed=NNUNET_SPLIT_SEED, n_splits=folds)
    return [{"train": [str(c) for c in s["train"]], "val": [str(c) for c in s["val"]]} for s in splits]


def load_user_splits(path: Path, train_cases: list[str], to_case: Callable[[str], str]) -> Folds:
    """Read and check ``--splits FILE``: each fold has non-empty train and val lists of training cases, each case at
    most once per fold; a fold may leave cases out, but every training case is in some fold (train or val)."""
    fix = ('write a list of folds, [{"train": [...], "val": [...]}, ...], with training cases only, each at most '
           "once per fold, and every training case in at least one fold")
    raw = read_json(path, list, "--splits file", fix)
    if not raw:
        raise UserError("--splits file holds no fold", path, fix)
    known = set(train_cases)
    splits, problems, named = [], [], set()
    for i, fold in enumerate(raw):
        lists = {k: fold.get(k) for k in ("train", "val")} if isinstance(fold, dict) else {}
        if not lists or not all(isinstance(v, list) and all(isinstance(c, str) for c in v) for v in lists.values()):
            problems.append(f"fold {i}: expected {{\"train\": [names], \"val\": [names]}}, got {str(fold)[:60]}")
            continue
        tr, va = ([to_case(c) for c in lists[k]] for k in ("train", "val"))
        for part, names in (("train", tr), ("val", va)):
            if not names:
                problems.append(f"fold {i}: the {part} list is empty")
            dupes = sorted(c for c, n in Counter(names).items() if n > 1)
            if dupes:
                problems.append(f"fold {i}: {part} names a case twice: {short_list(dupes, 8)}")
        unknown = sorted(set(tr + va) - known)
        if unknown:
            problems.append(f"fold {i}: {len(unknown)} case(s) not in the training set: {short_list(unknown, 8)}")
        both = sorted(set(tr) & set(va))
        if both:
            problems.append(f"fold {i}: cases in both train and val: {short_list(both, 8)}")
        named.update(tr, va)
        splits.append({"train": tr, "val": va})
    absent = sorted(known - named) if splits and len(splits) == len(raw) else []
    if absent:
        problems.append(f"{len(absent)} training case(s) are in no fold (in neither train nor val of any fold): "
                        f"{short_list(absent, 8)}")
    if problems:
        raise UserError("invalid cross-validation splits:\n  " + "\n  ".join(problems[:30]), path, fix)
    return splits


def stale_preprocessed_splits(existing: Path, new: Folds | None, train_cases: list[str]) -> str | None:
    """Why ``existing`` (a preprocessed ``splits_final.json``) does not fit this conversion, or None if it does.

    With new splits this is nnU-Net's planner check (each new fold equals the existing one); without, the
    existing folds must name exactly the new training cases (else training stops on a missing case).
    """
    try:
        old = json.loads(existing.read_text())
        old_sets = [(set(f["train"]), set(f["val"])) for f in old]
    except (OSError, ValueError, TypeError, KeyError) as err:
        return f"it cannot be read ({type(err).__name__}: {err})"
    if new is not None:
        for i, fold in enumerate(new):
            if i >= len(old_sets) or old_sets[i] != (set(fold["train"]), set(fold["val"])):
                return f"fold {i} differs from the new splits (nnU-Net's planner stops with an AssertionError)"
        return None
    named = set().union(*(tr | va for tr, va in old_sets)) if old_sets else set()
    if named != set(train_cases):
        gone, new_cases = sorted(named - set(train_cases)), sorted(set(train_cases) - named)
        return (f"its folds name {len(gone)} case(s) that are no longer training cases ({short_list(gone, 5)}) and "
                f"miss {len(new_cases)} new one(s) ({short_list(new_cases, 5)})")
    return None


def split_fold_count(preprocessed: Path, dataset: str) -> int | None:
    """How many folds ``<preprocessed>/<dataset>/splits_final.json`` has; None where nnU-Net has not written one yet
    (its first training writes nnU-Net's 5-fold split)."""
    path = Path(preprocessed) / dataset / "splits_final.json"
    if not path.is_file():
        return None
    splits = read_json(path, list, "nnU-Net split", 'a list of folds, [{"train": [...], "val": [...]}, ...]')
    if not splits:
        raise UserError("the split holds no fold", path, 'write a list of folds, [{"train": [...], "val": [...]}, ...]')
    return len(splits)


def dataset_folds(dataset: str, preprocessed: Path | None = None) -> list[int]:
    """The folds of a dataset's cross-validation: those of its ``splits_final.json`` (in ``preprocessed`` or
    ``$nnUNet_preprocessed``), else nnU-Net's five."""
    import os

    root = preprocessed or os.environ.get("nnUNet_preprocessed")
    count = split_fold_count(Path(root), dataset) if root else None
    return list(range(count or 5))
