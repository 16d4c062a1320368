"""Learning curves from run directories: eval (or train) return vs env steps, one panel per task.

    python tools/plot.py results/mamujoco/HalfCheetah-2x3/happo --out curves.png

Arguments are run directories or folders containing them (searched recursively for
progress.csv). Runs are grouped by task and algorithm read from each run's config.yaml; each
seed is a thin line and the mean across seeds a thick one. Prints a final-return table.
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402


def find_runs(paths: list[str]) -> list[Path]:
    runs = []
    for p in map(Path, paths):
        runs += [csv.parent for csv in sorted(p.rglob("progress.csv"))] if p.is_dir() else []
    if not runs:
        raise SystemExit(f"no run directories (with progress.csv) under {', '.join(paths)}")
    return runs


def load(run: Path, metric: str) -> tuple[str, str, int, pd.DataFrame]:
    """(task, algo, seed, rows with env_steps and the metric renamed to "value")."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    progress = pd.read_csv(run / "progress.csv")
    if metric not in progress:
        raise SystemExit(f"{run}/progress.csv has no column {metric!r}; columns: {', '.join(progress)}")
    rows = progress.dropna(subset=[metric])[["env_steps", metric]].rename(columns={metric: "value"})
    return f"{cfg['env']['name']}/{cfg['env']['task']}", cfg["algo"]["name"], cfg["seed"], rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--out", default="curves.png")
    parser.add_argument("--metric", default="eval_return", help="a progress.csv column (e.g. train_return)")
    args = parser.parse_args()
    groups: dict[str, dict[str, list[tuple[int, pd.DataFrame]]]] = defaultdict(lambda: defaultdict(list))
    for run in find_runs(args.paths):
        task, algo, seed, evals = load(run, args.metric)
        groups[task][algo].append((seed, evals))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), squeeze=False)
    print(f"| task | algo | seeds | final {args.metric} (mean ± std) | best {args.metric} |")
    print("|---|---|---|---|---|")
    for ax, (task, algos) in zip(axes[0], sorted(groups.items())):
        for k, (algo, runs) in enumerate(sorted(algos.items())):
            color = f"C{k}"
            steps = np.unique(np.concatenate([e["env_steps"].to_numpy() for _, e in runs]))
            curves = np.stack([np.interp(steps, e["env_steps"], e["value"]) for _, e in runs])
            for _, e in runs:
                ax.plot(e["env_steps"], e["value"], color=color, alpha=0.3, lw=0.8)
            ax.plot(steps, curves.mean(0), color=color, lw=2, label=f"{algo} ({len(runs)} seeds)")
            finals = [e["value"].iloc[-1] for _, e in runs]
            best = [e["value"].max() for _, e in runs]
            print(f"| {task} | {algo} | {len(runs)} | {np.mean(finals):.1f} ± {np.std(finals):.1f} "
                  f"| {np.mean(best):.1f} |")
        ax.set(title=task, xlabel="env steps", ylabel=args.metric.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
