"""Cross-validation summary of an nnU-Net results folder, with paired M2SNet-vs-baseline statistics.

Reads only what nnU-Net itself writes (``fold_X/validation/summary.json``, ``fold_X/training_log_*.txt``,
``crossval_results_folds_*/summary.json``, ``dataset.json``), so it works for any trainer. Missing,
unfinished and broken folds (a truncated or malformed ``summary.json``, checked field by field in
``m2s_nnunet.inputs.nnunet_json``) are listed in every output, with the file named, instead of being skipped
silently or aborting the whole summary.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from m2s_nnunet.errors import UserError, writing
from m2s_nnunet.evaluation import markdown_table
from m2s_nnunet.inputs.nnunet_json import read_validation_summary
from m2s_nnunet.inputs.textfiles import read_json

METRICS = ("Dice", "IoU")
FG = "fg mean"
LOG_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?: ?")
NP_SCALAR = re.compile(r"np\.\w+\(([^()]*)\)")


class SummaryError(UserError):
    """The results folder cannot be summarised; the message says what is missing."""


@dataclass
class FoldResult:
    fold: str
    status: str  # "ok", "missing" (no folder), "incomplete" (no validation/summary.json) or "broken" (unreadable)
    detail: str = ""
    mean: dict[str, dict[str, float]] = field(default_factory=dict)
    per_case: pd.DataFrame | None = None
    log: pd.DataFrame | None = None


@dataclass
class ModelResult:
    name: str
    trainer: str
    plans: str
    config: str
    path: Path
    folds: dict[str, FoldResult]
    label_names: dict[str, str]
    crossval: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    expected: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unreadable side files (dataset.json, crossval, logs)

    @property
    def ok_folds(self) -> list[str]:
        """Finished cross-validation folds (``fold_all`` and other extra folds excluded)."""
        return [f for f in self.expected if f in self.folds and self.folds[f].status == "ok"]

    def pooled_cases(self) -> pd.DataFrame:
        """Per-case metrics of every finished expected fold (the merged cross-validation result)."""
        frames = [self.folds[f].per_case.assign(fold=f) for f in self.ok_folds]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["case", "label"])


@dataclass
class Comparison:
    a: str
    b: str
    stats: pd.DataFrame
    paired: pd.DataFrame
    split_notes: list[str]
    identical_splits: bool


@dataclass
class SummaryResult:
    dataset: str
    results_dir: Path
    models: list[ModelResult]
    folds_table: pd.DataFrame
    model_table: pd.DataFrame
    comparisons: list[Comparison]
    notes: list[str]


# ---------------------------------------------------------------------------------------------- reading
def find_dataset_dir(dataset: str, results: Path | None = None) -> Path:
    """Resolve ``501``, ``Dataset501`` or ``Dataset501_Name`` inside ``--results`` or ``$nnUNet_results``."""
    root = Path(results) if results else Path(os.environ.get("nnUNet_results", ""))
    if results is None and not os.environ.get("nnUNet_results"):
        raise SummaryError("no results folder: pass --results DIR or set nnUNet_results")
    if not root.is_dir():
        where = "--results" if results is not None else "nnUNet_results"
        raise SummaryError(f"{where} {root} is not an existing folder", fix="pass the nnUNet_results folder "
                           "that holds DatasetXXX_Name/Trainer__Plans__Configuration")
    if (root / dataset).is_dir():
        return root / dataset
    m = re.fullmatch(r"(?:Dataset)?(\d+)(?:_.*)?", dataset)
    hits = sorted(root.glob(f"Dataset{int(m.group(1)):03d}_*")) if m else sorted(root.glob(f"Dataset*_{dataset}"))
    hits = [h for h in hits if h.is_dir()]
    if len(hits) != 1:
        avail = sorted(p.name for p in root.glob("Dataset*") if p.is_dir())
        raise SummaryError(
            f"dataset '{dataset}' {'is ambiguous' if hits else 'not found'} in {root}; available: {avail}"
        )
    return hits[0]


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


def _case_name(prediction_file: str, file_ending: str) -> str:
    name = Path(prediction_file).name
    return name[: -len(file_ending)] if file_ending and name.endswith(file_ending) else name.split(".")[0]


def _read_summary(path: Path, file_ending: str, require_cases: bool = True
                  ) -> tuple[dict[str, dict[str, float]], pd.DataFrame]:
    """Per-label means (plus the fg mean) and per-case rows of a summary.json; UserError if it is malformed."""
    data = read_validation_summary(path, require_cases)
    mean = dict(data.mean)
    mean[FG] = data.foreground_mean
    rows = [{"case": _case_name(c["file"], file_ending), "label": c["label"], **{m: c[m] for m in METRICS}}
            for c in data.cases]
    return mean, pd.DataFrame(rows, columns=["case", "label", *METRICS])


def _fold_status(fold_dir: Path) -> str:
    if (fold_dir / "checkpoint_final.pth").is_file():
        return "training finished but validation/summary.json is absent (run nnUNetv2_train ... --val)"
    if any(fold_dir.glob("checkpoint_*.pth")):
        return "training unfinished (only intermediate checkpoints)"
    if any(fold_dir.glob("training_log_*.txt")):
        return "training started (log present) but no checkpoint and no validation/summary.json"
    return "no checkpoint and no validation/summary.json"


def load_model(path: Path, expected_folds: list[str]) -> ModelResult:
    """Read one ``Trainer__Plans__Configuration`` folder; absent expected folds become 'missing'."""
    parts = path.name.split("__")
    trainer, plans, config = parts[0], "__".join(parts[1:-1]), parts[-1]
    problems: list[str] = []
    ds_json = path / "dataset.json"
    ds: dict = {}
    if ds_json.is_file():
        try:
            ds = read_json(ds_json, dict, "dataset.json")
        except UserError as err:
            problems.append(f"{err} (label names and case names may be incomplete)")
    ending = ds.get("file_ending", "") if isinstance(ds.get("file_ending", ""), str) else ""
    labels = ds.get("labels", {}) if isinstance(ds.get("labels", {}), dict) else {}
    names = {str(v): str(k) for k, v in labels.items() if not isinstance(v, list | dict)}
    present = sorted(p.name[5:] for p in path.glob("fold_*") if p.is_dir())
    folds: dict[str, FoldResult] = {}
    for fold in expected_folds + [f for f in present if f not in expected_folds]:
        fdir = path / f"fold_{fold}"
        if not fdir.is_dir():
            folds[fold] = FoldResult(fold, "missing", "no fold folder")
            continue
        logs = sorted(p for p in fdir.glob("training_log_*.txt") if p.is_file())
        try:
            log = parse_training_log(logs) if logs else None
        except OSError as err:
            problems.append(f"cannot read the training log of fold {fold}: {err}")
            log = None
        summ = fdir / "validation" / "summary.json"
        if not summ.is_file():
            folds[fold] = FoldResult(fold, "incomplete", _fold_status(fdir), log=log)
            continue
        try:
            mean, per_case = _read_summary(summ, ending)
        except UserError as err:
            folds[fold] = FoldResult(fold, "broken", str(err).replace("\n", " "), log=log)
            continue
        folds[fold] = FoldResult(fold, "ok", f"{per_case['case'].nunique()} cases", mean, per_case, log)
    model = ModelResult(path.name, trainer, plans, config, path, folds, names, expected=list(expected_folds),
                        problems=problems)
    for cv in sorted(path.glob("crossval_results_folds_*")):
        if (cv / "summary.json").is_file():
            try:
                model.crossval[cv.name] = _read_summary(cv / "summary.json", ending, require_cases=False)[0]
            except UserError as err:
                problems.append(f"{err} (nnU-Net's cross-validation result is left out)".replace("\n", " "))
    return model


def load_models(dataset_dir: Path, expected_folds: list[str]) -> list[ModelResult]:
    models = [
        load_model(p, expected_folds) for p in sorted(dataset_dir.iterdir()) if p.is_dir() and p.name.count("__") >= 2
    ]
    if not models:
        raise SummaryError(f"no Trainer__Plans__Configuration folders in {dataset_dir}")
    return models


# ---------------------------------------------------------------------------------------------- tables
def _label_display(model: ModelResult, key: str) -> str:
    return key if key == FG else f"{key} ({model.label_names.get(key, '?')})"


def folds_table(models: list[ModelResult]) -> pd.DataFrame:
    """One row per model, fold and label (missing folds kept as rows with NaN and their status)."""
    rows = []
    for m in models:
        for f, r in m.folds.items():
            if r.status != "ok":
                rows.append({"model": m.name, "fold": f, "status": r.status, "detail": r.detail})
                continue
            for key, vals in r.mean.items():
                if key == FG and len(r.mean) == 2:  # a single label: its row already is the fg mean
                    continue
                rows.append(
                    {
                        "model": m.name,
                        "fold": f,
                        "status": "ok",
                        "detail": r.detail,
                        "label": _label_display(m, key),
                        **vals,
                    }
                )
    return pd.DataFrame(rows, columns=["model", "fold", "status", "detail", "label", *METRICS])


def model_table(models: list[ModelResult], expected_folds: list[str]) -> pd.DataFrame:
    """Mean +- sample std (ddof=1) over the expected folds that finished, and pooled over all their cases."""
    rows = []
    for m in models:
        ok = m.ok_folds
        pooled = m.pooled_cases()
        keys = sorted({k for f in ok for k in m.folds[f].mean if k != FG})
        keys += [FG] if len(keys) != 1 else []
        for key in keys if ok else [FG]:
            row: dict = {
                "model": m.name,
                "label": _label_display(m, key),
                "folds_ok": f"{len(ok)}/{len(expected_folds)}",
            }
            for met in METRICS:
                vals = np.array([m.folds[f].mean.get(key, {}).get(met, np.nan) for f in ok], dtype=float)
                row[f"{met} mean"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
                row[f"{met} std"] = float(np.nanstd(vals, ddof=1)) if np.isfinite(vals).sum() > 1 else np.nan
                row[f"{met} pooled"] = _pooled(pooled, key, met)
            row["n_cases"] = int(pooled["case"].nunique()) if len(pooled) else 0
            for cv_name, cv in m.crossval.items():
                row[f"Dice {cv_name}"] = cv.get(key, {}).get("Dice", np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def _pooled(pooled: pd.DataFrame, key: str, metric: str) -> float:
    """nnU-Net's merged result: nanmean over all cases per label; the fg mean is the mean of those."""
    if not len(pooled):
        return float("nan")
    per_label = pooled.groupby("label")[metric].mean()  # pandas mean skips NaN like np.nanmean
    if key == FG:
        return float(per_label.mean()) if len(per_label) else float("nan")
    return float(per_label.get(key, np.nan))


# ---------------------------------------------------------------------------------------------- comparisons
def default_pairs(models: list[ModelResult]) -> tuple[list[tuple[str, str]], list[str]]:
    """Every M2SNet* model vs nnUNetTrainer (same plans+config, else same config, else any)."""
    base = [m for m in models if m.trainer == "nnUNetTrainer"]
    pairs, notes = [], []
    for m in models:
        if not m.trainer.startswith("M2SNetTrainer"):
            continue
        pick = (
            [b for b in base if (b.plans, b.config) == (m.plans, m.config)]
            or [b for b in base if b.config == m.config]
            or base
        )
        if pick:
            pairs.append((m.name, pick[0].name))
        else:
            notes.append(f"{m.name}: no nnUNetTrainer model to compare with (use --compare A B)")
    return pairs, notes


def resolve_model(models: list[ModelResult], ident: str) -> ModelResult:
    """A model by full folder name, or by trainer name when that is unique."""
    exact = [m for m in models if m.name == ident]
    hits = exact or [m for m in models if m.trainer == ident] or [m for m in models if m.name.startswith(ident)]
    if len(hits) != 1:
        raise SummaryError(
            f"--compare '{ident}' {'is ambiguous' if hits else 'matches no model'}; "
            f"use one of {[m.name for m in models]}"
        )
    return hits[0]


def paired_stats(a: np.ndarray, b: np.ndarray, n_boot: int = 10000, seed: int = 0) -> dict[str, float]:
    """Mean difference a-b with a percentile bootstrap 95% CI and a two-sided Wilcoxon signed-rank test."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    out = {
        "n": int(len(d)),
        "mean A": np.nan,
        "mean B": np.nan,
        "mean diff": np.nan,
        "median diff": np.nan,
        "CI low": np.nan,
        "CI high": np.nan,
        "W": np.nan,
        "p": np.nan,
        "A better": int((d > 0).sum()),
        "B better": int((d < 0).sum()),
        "ties": int((d == 0).sum()),
    }
    if len(d) == 0:
        return out
    out.update({"mean A": a.mean(), "mean B": b.mean(), "mean diff": d.mean(), "median diff": float(np.median(d))})
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    out["CI low"], out["CI high"] = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
    if np.any(d != 0):
        res = wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
        out["W"], out["p"] = float(res.statistic), float(res.pvalue)
    else:
        out["p"] = 1.0
    return out


def split_check(a: ModelResult, b: ModelResult) -> tuple[bool, list[str]]:
    """Compare the validation cases of every fold both models finished; folds only one finished are listed."""
    notes, identical, common = [], True, []
    for fold in [f for f in a.expected if f in b.expected]:
        fa, fb = a.folds.get(fold), b.folds.get(fold)
        ok_a, ok_b = fa is not None and fa.status == "ok", fb is not None and fb.status == "ok"
        if not (ok_a and ok_b):
            if ok_a or ok_b:
                notes.append(f"fold {fold}: only {(a if ok_a else b).name} has validation results (not paired)")
            continue
        common.append(fold)
        ca, cb = set(fa.per_case["case"]), set(fb.per_case["case"])
        if ca != cb:
            identical = False
            notes.append(
                f"fold {fold}: validation cases differ ({len(ca - cb)} only in {a.name}, "
                f"{len(cb - ca)} only in {b.name}; e.g. {sorted(ca ^ cb)[:5]})"
            )
    if not common:
        return False, ["no fold finished by both models: nothing to pair", *notes]
    head = (
        f"validation splits are identical in the {len(common)} fold(s) both finished ({', '.join(common)})"
        if identical
        else "validation splits are NOT identical: the models were validated on different case sets; "
        "paired results use only the cases both validated"
    )
    return identical, [head, *notes]


def compare(a: ModelResult, b: ModelResult, metric: str = "Dice") -> Comparison:
    """Per-case paired differences (matched by case name) and tests, per label and for the fg mean."""
    identical, notes = split_check(a, b)
    pa, pb = a.pooled_cases(), b.pooled_cases()
    if not len(pa) or not len(pb):
        return Comparison(a.name, b.name, pd.DataFrame(), pd.DataFrame(), notes + ["no finished folds"], False)
    for name, p in ((a.name, pa), (b.name, pb)):
        dup = p.duplicated(["case", "label"])
        if dup.any():
            notes.append(f"{name}: {dup.sum()} case(s) validated in several folds; the first is used")
    pa, pb = pa.drop_duplicates(["case", "label"]), pb.drop_duplicates(["case", "label"])
    merged = pa[["case", "label", metric]].merge(
        pb[["case", "label", metric]], on=["case", "label"], suffixes=(" A", " B")
    )
    merged["label"] = [_label_display(a, str(k)) for k in merged["label"]]
    if merged["label"].nunique() > 1:
        fg = merged.groupby("case")[[f"{metric} A", f"{metric} B"]].mean().reset_index().assign(label=FG)
        merged = pd.concat([merged, fg], ignore_index=True)
    rows = []
    for label, sub in merged.groupby("label", sort=True):
        valid = sub.dropna(subset=[f"{metric} A", f"{metric} B"])
        stats = paired_stats(valid[f"{metric} A"].to_numpy(), valid[f"{metric} B"].to_numpy())
        rows.append(
            {
                "A": a.name,
                "B": b.name,
                "label": label,
                "metric": metric,
                "excluded (NaN)": len(sub) - len(valid),
                **stats,
            }
        )
    only = set(pa["case"]) ^ set(pb["case"])
    if only:
        notes.append(f"{len(only)} case(s) validated by only one model are not paired")
    merged["diff"] = merged[f"{metric} A"] - merged[f"{metric} B"]
    return Comparison(a.name, b.name, pd.DataFrame(rows), merged, notes, identical)


# ---------------------------------------------------------------------------------------------- driver
def summarize(
    dataset: str,
    results: Path | None = None,
    compare_pairs: list[tuple[str, str]] | None = None,
    expected_folds: list[str] | None = None,
    metric: str = "Dice",
) -> SummaryResult:
    """Load every model of a dataset, build the tables and run the paired comparisons."""
    folds = [str(f) for f in (expected_folds or range(5))]
    ds_dir = find_dataset_dir(dataset, results)
    models = load_models(ds_dir, folds)
    notes = []
    for m in models:
        notes += [f"PROBLEM: {m.name}: {p}" for p in m.problems]
        for f, r in m.folds.items():
            if r.status != "ok":
                notes.append(f"{r.status.upper()}: {m.name} fold {f}: {r.detail}")
        if not m.ok_folds:
            notes.append(f"{m.name}: no finished fold")
    mt = model_table(models, folds)
    for row in mt.to_dict("records"):
        for col in (c for c in row if c.startswith("Dice crossval_results")):
            complete = row["folds_ok"] == f"{len(folds)}/{len(folds)}"
            if complete and np.isfinite(row[col]) and abs(row[col] - row["Dice pooled"]) > 1e-6:
                notes.append(
                    f"{row['model']} {row['label']}: nnU-Net's {col[5:]} Dice {row[col]:.4f} differs from the "
                    f"pooled fold results {row['Dice pooled']:.4f} (re-run nnUNetv2_find_best_configuration?)"
                )
    if compare_pairs:
        pairs = [(resolve_model(models, a).name, resolve_model(models, b).name) for a, b in compare_pairs]
    else:
        pairs, pair_notes = default_pairs(models)
        notes += pair_notes
    by_name = {m.name: m for m in models}
    comps = [compare(by_name[a], by_name[b], metric) for a, b in pairs]
    return SummaryResult(ds_dir.name, ds_dir, models, folds_table(models), mt, comps, notes)


def display_model_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean +- std as text for terminal and Markdown."""
    out = table[["model", "label", "folds_ok"]].copy()
    for met in METRICS:
        out[f"{met} (mean ± std)"] = [_pm(m, s) for m, s in zip(table[f"{met} mean"], table[f"{met} std"], strict=True)]
        out[f"{met} pooled"] = table[f"{met} pooled"]
    out["n_cases"] = table["n_cases"]
    for c in table.columns:
        if c.startswith("Dice crossval"):
            out[c.replace("Dice ", "nnU-Net ")] = table[c]
    return out


def _pm(m: float, s: float) -> str:
    if np.isnan(m):
        return "nan"
    return f"{m:.4f} ± {s:.4f}" if not np.isnan(s) else f"{m:.4f}"


def format_text(res: SummaryResult) -> str:
    """The terminal report: completeness, per-model table, comparisons."""
    lines = [f"Cross-validation summary of {res.results_dir}", ""]
    lines += [f"  {n}" for n in res.notes] or ["  all expected folds finished"]
    lines += ["", markdown_table(display_model_table(res.model_table)), ""]
    for c in res.comparisons:
        lines += [f"Paired comparison A={c.a} vs B={c.b}"] + [f"  {n}" for n in c.split_notes]
        if len(c.stats):
            lines += [markdown_table(c.stats.drop(columns=["A", "B"]))]
        lines.append("")
    return "\n".join(lines)


def write_outputs(res: SummaryResult, out_dir: Path) -> list[Path]:
    """CSV tables, summary.md and PNG plots; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def csv(df: pd.DataFrame, name: str) -> None:
        with writing(out_dir / name):
            df.to_csv(out_dir / name, index=False)
        written.append(out_dir / name)

    csv(res.folds_table, "folds.csv")
    csv(res.model_table, "models.csv")
    if res.comparisons:
        csv(pd.concat([c.stats for c in res.comparisons], ignore_index=True), "comparisons.csv")
        csv(
            pd.concat([c.paired.assign(A=c.a, B=c.b) for c in res.comparisons], ignore_index=True),
            "paired_cases.csv",
        )
    plots = [plot_folds(res, out_dir / "folds_dice.png")]
    plots += [plot_paired(c, out_dir / f"paired_{i}.png") for i, c in enumerate(res.comparisons, 1)]
    plots.append(plot_training_curves(res.models, out_dir / "training_curves.png"))
    plots = [p for p in plots if p is not None]
    written += plots
    md = out_dir / "summary.md"
    with writing(md):
        md.write_text(_markdown(res, plots))
    written.append(md)
    return written


def _markdown(res: SummaryResult, plots: list[Path]) -> str:
    lines = [
        f"# Cross-validation summary: {res.dataset}",
        "",
        f"Results folder: `{res.results_dir}`",
        "",
        "## Completeness",
        "",
    ]
    lines += [f"- {n}" for n in res.notes] or ["- all expected folds finished"]
    lines += [
        "",
        "## Per model",
        "",
        "Mean ± sample std (ddof=1) over finished folds of each fold's `summary.json` mean; *pooled* = "
        "nanmean over all validation cases of those folds (the merged cross-validation result).",
        "",
        markdown_table(display_model_table(res.model_table)),
        "",
        "## Per fold",
        "",
        markdown_table(res.folds_table),
        "",
    ]
    for c in res.comparisons:
        lines += [f"## Paired comparison: A = `{c.a}` vs B = `{c.b}`", ""]
        lines += [f"- {n}" for n in c.split_notes] + [""]
        if len(c.stats):
            lines += [markdown_table(c.stats.drop(columns=["A", "B"])), ""]
    lines += [
        "## Conventions",
        "",
        "- Dice/IoU per case as nnU-Net computes them (NaN when prediction and reference are empty; "
        "such cases are skipped in means and excluded from paired tests).",
        "- Paired tests match cases by name; diff = A - B; 95% CI: percentile bootstrap of the mean "
        "difference (10000 resamples, seed 0); p: two-sided Wilcoxon signed-rank test "
        "(scipy.stats.wilcoxon, zero differences dropped).",
        "",
    ]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _short_names(names: list[str]) -> dict[str, str]:
    trainers = [n.split("__")[0] for n in names]
    return {n: t if trainers.count(t) == 1 else n for n, t in zip(names, trainers, strict=True)}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_folds(res: SummaryResult, path: Path) -> Path | None:
    """Grouped bars of the fg-mean Dice per fold and model, plus mean ± std; missing folds are marked."""
    plt = _pyplot()
    folds = sorted({f for m in res.models for f in m.folds})
    short = _short_names([m.name for m in res.models])
    width = 0.8 / len(res.models)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(folds) + 3), 4))
    for i, m in enumerate(res.models):
        xs = np.arange(len(folds) + 1) + i * width
        vals = [m.folds[f].mean[FG]["Dice"] if f in m.folds and m.folds[f].status == "ok" else np.nan for f in folds]
        rows = res.model_table[res.model_table["model"] == m.name]
        head = rows[rows["label"] == FG] if (rows["label"] == FG).any() else rows.iloc[:1]
        mean, std = float(head["Dice mean"].iloc[0]), float(head["Dice std"].iloc[0])
        ax.bar(xs[:-1], np.nan_to_num(vals), width, color=f"C{i}", label=short[m.name])
        ax.bar(xs[-1], np.nan_to_num(mean), width, color=f"C{i}", yerr=0 if np.isnan(std) else std, capsize=3)
        for x, v, f in zip(xs, vals, folds, strict=False):
            if np.isnan(v):
                status = m.folds[f].status if f in m.folds else "absent"
                ax.text(x, 0.02, status, rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(folds) + 1) + 0.4 - width / 2, [f"fold {f}" for f in folds] + ["mean ± std"])
    ax.set_ylabel("validation Dice (fg mean, nnU-Net)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with writing(path):
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_paired(c: Comparison, path: Path) -> Path | None:
    """Per-case scatter (B on x, A on y) and box plot of the differences, one colour per label."""
    if not len(c.paired):
        return None
    plt = _pyplot()
    cols = [x for x in c.paired.columns if x.endswith(" A")][0][:-2]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5))
    labels = list(dict.fromkeys(c.paired["label"]))
    for label in labels:
        sub = c.paired[c.paired["label"] == label]
        ax1.scatter(sub[f"{cols} B"], sub[f"{cols} A"], s=10, alpha=0.6, label=str(label))
    ax1.plot([0, 1], [0, 1], "k--", lw=1)
    short = _short_names([c.a, c.b])
    ax1.set_xlabel(f"{cols} {short[c.b]}")
    ax1.set_ylabel(f"{cols} {short[c.a]}")
    ax1.legend(fontsize=8, title="label")
    data = [c.paired.loc[c.paired["label"] == lab, "diff"].dropna().to_numpy() for lab in labels]
    ax2.boxplot(data, tick_labels=[str(x) for x in labels])
    ax2.axhline(0, color="k", lw=1, ls="--")
    ax2.set_ylabel(f"{cols} difference (A - B)")
    fig.suptitle(f"A = {short[c.a]} vs B = {short[c.b]}", fontsize=10)
    fig.tight_layout()
    with writing(path):
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_training_curves(models: list[ModelResult], path: Path) -> Path | None:
    """Losses and EMA pseudo Dice per fold, one column per model, side by side."""
    with_logs = [m for m in models if any(r.log is not None and len(r.log) for r in m.folds.values())]
    if not with_logs:
        return None
    plt = _pyplot()
    short = _short_names([m.name for m in models])
    fig, axes = plt.subplots(2, len(with_logs), figsize=(5 * len(with_logs), 7), squeeze=False, sharex="col")
    for j, m in enumerate(with_logs):
        for k, (f, r) in enumerate(m.folds.items()):
            if r.log is None or not len(r.log):
                continue
            color = f"C{k % 10}"
            log = r.log
            for key, ls in (("train_loss", "-"), ("val_loss", "--")):
                if key in log:
                    axes[0, j].plot(log["epoch"], log[key], ls, color=color, label=f"fold {f} {key}")
            if "pseudo_dice_ema" in log:
                axes[1, j].plot(log["epoch"], log["pseudo_dice_ema"], color=color, label=f"fold {f}")
        axes[0, j].set_title(short[m.name], fontsize=10)
        axes[0, j].set_ylabel("loss (solid train, dashed val)")
        axes[1, j].set_ylabel("EMA pseudo Dice")
        axes[1, j].set_xlabel("epoch")
        axes[1, j].legend(fontsize=7)
    fig.tight_layout()
    with writing(path):
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
