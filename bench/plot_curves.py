"""Learning curves as pictures: held-out Dice against training iterations, from ``accuracy.py --score-at`` files.

One PNG per result file, for its first two models. Per test set, the left panel shows each model's mean per-case
Dice at every score point.
The right panel shows the paired difference (second model minus the first, per case) with its percentile
bootstrap 95% CI, computed as the README's accuracy table computes it. The points are snapshots of one run,
whose learning-rate schedule is that of its longest budget.

    python bench/plot_curves.py bench/results/kvasir_fold0_curve.json --out docs/img/curve_kvasir.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def curve_points(data: dict, test: str) -> list[tuple[int, float, float, float, float, float]]:
    """Per score point: (point, first model's mean, second model's mean, paired difference second - first, CI low,
    CI high), per-case scores averaged over seeds first (``accuracy.seed_mean``)."""
    from accuracy import seed_mean

    from m2s_nnunet.summary import paired_stats

    base, other = (data["results"][m] for m in list(data["results"])[:2])
    out = []
    for n in sorted(int(k) for k in base[0].get("points", {})):
        b, a = seed_mean(base, test, n)[0], seed_mean(other, test, n)[0]
        common = a.index.intersection(b.index)
        s = paired_stats(a[common].to_numpy(), b[common].to_numpy())
        out.append((n, float(b.mean()), float(a.mean()), s["mean diff"], s["CI low"], s["CI high"]))
    return out


def plot(data: dict, title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tests = list(next(iter(data["results"].values()))[0]["tests"])
    models = list(data["results"])
    fig, axes = plt.subplots(len(tests), 2, figsize=(10, 3.6 * len(tests)), squeeze=False)
    for row, test in zip(axes, tests):
        points = curve_points(data, test)
        xs = [p[0] for p in points]
        for column, model in ((1, models[0]), (2, models[1])):
            row[0].plot(xs, [p[column] for p in points], marker="o", label=model)
        row[0].set(xscale="log", xlabel="training iterations", ylabel=f"{test}: mean Dice",
                   title=f"{test}: held-out Dice")
        row[0].legend(fontsize=8)
        row[1].fill_between(xs, [p[4] for p in points], [p[5] for p in points], alpha=0.3, label="paired 95% CI")
        row[1].plot(xs, [p[3] for p in points], marker="o", label=f"{models[1]} - {models[0]}")
        row[1].axhline(0.0, color="grey", lw=0.8)
        row[1].set(xscale="log", xlabel="training iterations", ylabel="Dice difference", title=f"{test}: difference")
        row[1].legend(fontsize=8)
        for ax in row:
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.minorticks_off()
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("result", type=Path, help="an accuracy.py --json file written with --score-at")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = p.parse_args(argv)
    sys.path.insert(0, str(BENCH))
    data = json.loads(args.result.read_text())
    first = next(iter(data["results"].values()))[0]
    if not first.get("points"):
        print(f"plot_curves: {args.result} has no score points (it was not written with accuracy.py --score-at)",
              file=sys.stderr)
        return 2
    a = data["args"]
    commit = (data.get("provenance") or {}).get("git_commit") or "commit not recorded"
    plot(data, f"{a['dataset']}, fold {a['fold']}, {a['epochs']} x {a['iters']} iterations (LR schedule of the "
               f"longest budget), batch {a['batch']}; {commit[:7]}", args.out)
    print(f"plot_curves: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
