"""Learning curves, a results table and aggregate statistics from harl run directories.

    python -m harl.plot results/compare/halfcheetah_2x3 results/compare/simple_spread_continuous \\
        --out docs/curves.png --table docs/results --aggregate docs/aggregate
    python tools/plot.py results/multirun/2026-11-02_10-00-00 --metric train_return --smooth 5

Arguments are run directories or folders holding them, searched recursively for a directory
with both progress.csv and config.yaml (single runs, Hydra multiruns, tools/compare_algos.py
output). Runs are grouped by task (`env.name/env.task`) and algorithm (`algo.name`) from each
run's config.yaml; every run found is one seed of its group.

Learning curves (--out PATH: PATH.png and PATH.pdf; default curves.png)
    One panel per task, x = env steps, y = --metric (default eval_return). Each algorithm is
    the mean over its seeds with a 95 % t-based confidence band, mean ± t(0.975, n-1) · s/√n
    (s: sample std, ddof=1; no band with one seed). Seeds are aligned by linear interpolation
    onto a common grid: the union of their logged env steps within the range every seed
    covers, so a curve ends where its shortest seed ends. --smooth K replaces each seed's
    values by a trailing rolling mean over its last K logged points before aligning. Each
    algorithm keeps one colour in every panel; the HA algorithms are solid lines, the baselines
    (MAPPO, MADDPG, MATD3, QMIX, VDN) dashed.

Results table (printed; --table PATH also writes PATH.md and PATH.csv)
    One row per (task, algo): seeds, final --metric (the last logged value of each seed),
    best --metric (each seed's maximum) and, for every `eval_*_rate` column the runs have
    (e.g. eval_win_rate), its final value; each as mean ± the 95 % t-based half-width above
    (unsmoothed values; no half-width with one seed). env_steps is the smallest final env step
    of the group's seeds (lower than the budget when a seed is unfinished).

Aggregate statistics across tasks (--aggregate PREFIX: PREFIX.md, .csv, .png, .pdf)
    The field's practice (Agarwal et al., 2021, "Deep RL at the edge of the statistical
    precipice", via the `rliable` library): each run's final --metric is normalised per task,
    then per algorithm the interquartile mean (IQM: mean of the middle 50 % of all its
    normalised run scores) and the mean of the per-task means, the probability of improvement
    P(X > Y) for every pair of algorithms (per task the probability that a random run of X
    beats a random run of Y, ties counting one half, averaged over tasks), and performance
    profiles (the fraction of runs, averaged over tasks, whose score exceeds tau). Confidence
    intervals: 95 % percentile intervals of a stratified bootstrap (runs resampled with
    replacement within each task, independently per algorithm), --reps replications
    (default 2000), seeded by --seed. Only tasks on which every algorithm has runs enter.
    Normalisation (--normalise):
      minmax (default)  (x - low) / (high - low) with low and high the smallest and largest
                        --metric value logged by any run of that task (every evaluation of
                        every algorithm): 0 ~ the worst (usually untrained) performance seen,
                        1 = the best seen. Relative: adding runs can change every score.
      FILE              reference scores, a YAML mapping `env/task: [low, high]` (e.g. a
                        random policy's and an expert's return).
      none              raw values (for metrics already on a common scale, e.g. win rates).
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from scipy import stats  # noqa: E402

HA_ALGOS = ("happo", "hatrpo", "haa2c", "haddpg", "hatd3", "hasac", "had3qn")
BASELINES = ("mappo", "maddpg", "matd3", "qmix", "vdn")
RATE_COLUMN = re.compile(r"eval_.+_rate")
CONFIDENCE = 0.95
FIGURE_SUFFIXES = (".png", ".pdf")
TABLE_SUFFIXES = (".md", ".csv")

Groups = dict[str, dict[str, list["Run"]]]  # task -> algo -> runs


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------- loading runs
@dataclass(frozen=True)
class Run:
    """One run directory: its task, algorithm and seed (from config.yaml) and progress.csv."""

    path: Path
    task: str
    algo: str
    seed: int | None
    progress: pd.DataFrame

    def series(self, column: str) -> pd.Series:
        """`column` indexed by env_steps (ascending, one value per step), missing values dropped."""
        if column not in self.progress:
            return pd.Series(dtype=float)
        rows = self.progress[["env_steps", column]].dropna()
        return rows.groupby("env_steps")[column].last().astype(float)


def find_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Directories under `paths` (or `paths` themselves) holding progress.csv and config.yaml."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise SystemExit(f"no such file or directory: {path}")
        run_dir = path.parent if path.is_file() else None  # e.g. a progress.csv given by name
        candidates = [run_dir / "progress.csv"] if run_dir else sorted(path.rglob("progress.csv"))
        found += [csv.parent for csv in candidates if (csv.parent / "config.yaml").is_file()]
    return list(dict.fromkeys(found))


def load_run(path: Path) -> Run | None:
    """The run in `path`, or None (with a warning) when its files are unusable."""
    config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    env, algo = config.get("env") or {}, config.get("algo") or {}
    if not {"name", "task"} <= env.keys() or "name" not in algo:
        warn(f"{path}: config.yaml has no env.name, env.task or algo.name; skipped")
        return None
    try:
        progress = pd.read_csv(path / "progress.csv")
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        progress = pd.DataFrame()
    if "env_steps" not in progress or progress.empty:
        warn(f"{path}: progress.csv is empty; skipped")
        return None
    seed = config.get("seed")
    return Run(path, f"{env['name']}/{env['task']}", str(algo["name"]),
               None if seed is None else int(seed), progress)


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    runs = [run for path in find_run_dirs(paths) if (run := load_run(path)) is not None]
    if not runs:
        where = ", ".join(map(str, paths))
        raise SystemExit(f"no run directories (progress.csv + config.yaml) under {where}")
    return runs


def algo_order(algos: Sequence[str]) -> list[str]:
    """HA algorithms first, then the baselines (each in the order of HA_ALGOS / BASELINES),
    then any other algorithm alphabetically."""
    known = HA_ALGOS + BASELINES
    return sorted(set(algos), key=lambda a: (known.index(a) if a in known else len(known), a))


def group_runs(runs: Sequence[Run], metric: str) -> Groups:
    """task -> algo -> runs with at least one value of `metric`, sorted by task, algo and seed."""
    groups: Groups = {}
    for run in runs:
        if run.series(metric).empty:
            warn(f"{run.path}: no {metric!r} values; skipped")
            continue
        groups.setdefault(run.task, {}).setdefault(run.algo, []).append(run)
    if not groups:
        raise SystemExit(f"no run has values in column {metric!r}")
    for task, algos in groups.items():
        for algo, members in algos.items():
            seeds = [r.seed for r in members]
            if len(set(seeds)) < len(seeds):
                warn(f"{task} {algo}: several runs with the same seed "
                     f"({sorted(seeds, key=lambda s: -1 if s is None else s)}); "
                     "all are counted as seeds of one group")

    def by_seed(run: Run) -> tuple[bool, int, str]:
        return run.seed is None, run.seed or 0, str(run.path)

    return {task: {algo: sorted(groups[task][algo], key=by_seed)
                   for algo in algo_order(list(groups[task]))} for task in sorted(groups)}


# ----------------------------------------------------------------------------- statistics
def mean_and_ci(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 and the half-width of its t-based confidence interval,
    t(0.975, n-1) · s / √n with s the sample std (ddof=1); half-width NaN when n < 2."""
    values = np.asarray(values, dtype=float)
    n = values.shape[0]
    mean = values.mean(axis=0) if n else np.full(values.shape[1:], np.nan)
    if n < 2:
        return mean, np.full_like(mean, np.nan)
    t = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)
    return mean, t * values.std(axis=0, ddof=1) / math.sqrt(n)


def smooth(series: pd.Series, window: int) -> pd.Series:
    """Trailing rolling mean over `window` points (fewer at the start); window 1: unchanged."""
    return series.rolling(window, min_periods=1).mean() if window > 1 else series


def align(curves: Sequence[pd.Series]) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate curves (values indexed by env_steps) onto a common grid: the union of their
    env steps within the range all of them cover. Returns (grid, values of shape (curves, grid))."""
    start = max(c.index[0] for c in curves)
    end = min(c.index[-1] for c in curves)
    steps = np.unique(np.concatenate([c.index.to_numpy(dtype=float) for c in curves]))
    grid = steps[(steps >= start) & (steps <= end)]
    values = np.stack([np.interp(grid, c.index.to_numpy(dtype=float), c.to_numpy(dtype=float))
                       for c in curves]) if len(grid) else np.empty((len(curves), 0))
    return grid, values


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50 % of the scores (25 % cut at each end)."""
    return float(stats.trim_mean(np.ravel(scores), proportiontocut=0.25))


def probability_of_improvement(x_tasks: Sequence[np.ndarray], y_tasks: Sequence[np.ndarray]) -> float:
    """P(X > Y): per task the fraction of (run of X, run of Y) pairs where X scores higher, ties
    counting one half (the Mann-Whitney U statistic over n_x·n_y, as in rliable's
    `metrics.probability_of_improvement`, but vectorised and allowing different run counts
    per task), averaged over tasks."""
    per_task = []
    for x, y in zip(x_tasks, y_tasks):
        diff = np.ravel(x)[:, None] - np.ravel(y)[None, :]
        per_task.append(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))
    return float(np.mean(per_task))


def score_distribution(tasks: Sequence[np.ndarray], taus: np.ndarray) -> np.ndarray:
    """Performance profile: for each tau the fraction of runs scoring above it, per task,
    averaged over tasks (each task weighs the same whatever its number of runs)."""
    return np.mean([(np.ravel(t)[:, None] > taus[None, :]).mean(axis=0) for t in tasks], axis=0)


@contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator for the block and restore its state afterwards:
    rliable's stratified bootstrap draws its indices from np.random directly."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


K = TypeVar("K", bound=Hashable)


def stratified_bootstrap(samples: dict[K, list[np.ndarray]], statistic: Callable[..., np.ndarray],
                         reps: int, seed: int) -> dict[K, tuple[np.ndarray, np.ndarray]]:
    """Point estimate and 95 % percentile CI (lower row, upper row) of `statistic` per key.

    samples[key] is a list of 1-D arrays (one per stratum, e.g. the runs of one algorithm on one
    task); `statistic(*arrays)` returns a 1-D array. Each array is resampled with replacement
    independently (rliable's StratifiedIndependentBootstrap), so strata may differ in size."""
    from rliable import library as rly  # imports arch and statsmodels: ~1 s, only when needed

    with seeded_numpy(seed):
        points, intervals = rly.get_interval_estimates(
            samples, statistic, method="percentile", reps=reps, confidence_interval_size=CONFIDENCE)
    return {key: (np.atleast_1d(points[key]), np.asarray(intervals[key]).reshape(2, -1))
            for key in samples}


# ----------------------------------------------------------------------------- learning curves
@dataclass(frozen=True)
class Style:
    color: tuple[float, ...]
    linestyle: str


def algo_styles(algos: Sequence[str]) -> dict[str, Style]:
    """One colour per algorithm (same in every panel and figure of one call); HA algorithms
    solid, baselines dashed, others dash-dotted."""
    ordered = algo_order(algos)
    # tab10/tab20 are ListedColormaps (a `colors` list of RGB tuples); get_cmap is typed as their base
    palette = plt.get_cmap("tab10" if len(ordered) <= 10 else "tab20").colors  # type: ignore[attr-defined]
    return {algo: Style(palette[k % len(palette)],
                        "-" if algo in HA_ALGOS else "--" if algo in BASELINES else "-.")
            for k, algo in enumerate(ordered)}


def output_paths(path: str | Path, suffixes: Sequence[str], replace: Sequence[str] = ()) -> list[Path]:
    """`path` with each suffix; a suffix of `path` among `suffixes` or `replace` is replaced,
    not doubled (curves.png -> curves.png, curves.pdf)."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (*suffixes, *replace) else path
    base.parent.mkdir(parents=True, exist_ok=True)
    return [base.with_name(base.name + suffix) for suffix in suffixes]


def save_figure(fig: plt.Figure, path: str | Path, replace: Sequence[str] = ()) -> list[Path]:
    """Write the figure as PNG and PDF; returns the files written."""
    written = output_paths(path, FIGURE_SUFFIXES, replace)
    for out in written:
        fig.savefig(out, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return written


def plot_curve(ax: plt.Axes, runs: Sequence[Run], metric: str, window: int, style: Style,
               label: str, band: bool = True, seeds: bool = False) -> None:
    """Mean over the runs' aligned (and smoothed) curves with its confidence band (`band`)
    and/or a thin line per seed (`seeds`)."""
    grid, values = align([smooth(run.series(metric), window) for run in runs])
    if not len(grid):
        warn(f"{label}: the seeds share no env-step range; not plotted")
        return
    mean, half = mean_and_ci(values)
    ax.plot(grid, mean, color=style.color, linestyle=style.linestyle, lw=1.8,
            marker="o" if len(grid) == 1 else None, label=f"{label} ({plural(len(runs), 'seed')})")
    if band and len(runs) > 1:
        ax.fill_between(grid, mean - half, mean + half, color=style.color, alpha=0.2, lw=0)
    if seeds:
        for seed_values in values:
            ax.plot(grid, seed_values, color=style.color, linestyle=style.linestyle, lw=0.8, alpha=0.35)


def plot_curves(groups: Groups, metric: str, out: str | Path, window: int = 1, band: bool = True,
                seeds: bool = False) -> list[Path]:
    """One panel per task; returns the PNG and PDF written."""
    styles = algo_styles([algo for algos in groups.values() for algo in algos])
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
    ylabel = metric.replace("_", " ") + (f" (rolling mean of {window})" if window > 1 else "")
    for ax, (task, algos) in zip(axes[0], groups.items()):
        for algo, runs in algos.items():
            plot_curve(ax, runs, metric, window, styles[algo], algo, band, seeds)
        ax.set(title=task, xlabel="env steps", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    what = [f"{CONFIDENCE:.0%} t confidence band"] * band + ["thin lines: seeds"] * seeds
    fig.suptitle(", ".join(["mean over seeds", *what]), fontsize="small")
    fig.tight_layout()
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- results table
def rate_columns(runs: Sequence[Run]) -> list[str]:
    """The eval_*_rate columns (win rate, score rate, ...) found in any run."""
    return sorted({c for run in runs for c in run.progress.columns if RATE_COLUMN.fullmatch(c)})


def final_values(runs: Sequence[Run], column: str) -> np.ndarray:
    """The last logged value of `column` in each run that has one."""
    return np.array([s.iloc[-1] for run in runs if not (s := run.series(column)).empty])


def best_values(runs: Sequence[Run], column: str) -> np.ndarray:
    return np.array([s.max() for run in runs if not (s := run.series(column)).empty])


def results_table(groups: Groups, metric: str) -> pd.DataFrame:
    """One row per (task, algo): seeds, env_steps and mean/ci95 (half-width) of the final and
    best `metric` and of the final value of every eval_*_rate column."""
    rates = [c for c in rate_columns([r for a in groups.values() for rs in a.values() for r in rs])
             if c != metric]
    rows = []
    for task, algos in groups.items():
        for algo, runs in algos.items():
            row = {"task": task, "algo": algo, "seeds": len(runs),
                   "env_steps": min(run.progress["env_steps"].max() for run in runs)}
            columns = [(f"final_{metric}", final_values(runs, metric)),
                       (f"best_{metric}", best_values(runs, metric)),
                       *((f"final_{rate}", final_values(runs, rate)) for rate in rates)]
            for name, values in columns:
                mean, half = mean_and_ci(values)
                row[f"{name}_mean"], row[f"{name}_ci95"] = float(mean), float(half)
            rows.append(row)
    return pd.DataFrame(rows)


def fmt_number(x: float, scale: float | None = None) -> str:
    """A number with decimals suited to `scale` (default: its own magnitude)."""
    magnitude = abs(x if scale is None else scale)
    return f"{x:,.0f}" if magnitude >= 1000 else f"{x:.1f}" if magnitude >= 10 else f"{x:.3f}"


def fmt_mean_ci(mean: float, half: float) -> str:
    if math.isnan(mean):
        return "—"
    if math.isnan(half):
        return fmt_number(mean)
    return f"{fmt_number(mean)} ± {fmt_number(half, scale=mean)}"


def table_markdown(table: pd.DataFrame) -> str:
    """The results table as Markdown: each mean/ci95 column pair as `mean ± half-width`."""
    stats_columns = [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]
    names = " | ".join(c.replace("_", " ") for c in stats_columns)
    lines = [(f"Mean ± {CONFIDENCE:.0%} t-based CI half-width over seeds (none with one seed); "
              "final = last logged value of each seed, best = its maximum."), "",
             f"| task | algo | seeds | env steps | {names} |",
             "|---|---|---|---|" + "---|" * len(stats_columns)]
    for row in table.to_dict("records"):
        cells = [fmt_mean_ci(row[f"{c}_mean"], row[f"{c}_ci95"]) for c in stats_columns]
        lines.append(f"| {row['task']} | {row['algo']} | {row['seeds']} | {row['env_steps']:,.0f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, markdown: str, path: str | Path,
                replace: Sequence[str] = ()) -> list[Path]:
    """Write PATH.md and PATH.csv; returns them."""
    md, csv = output_paths(path, TABLE_SUFFIXES, replace)
    md.write_text(markdown)
    table.to_csv(csv, index=False)
    return [md, csv]


# ----------------------------------------------------------------------------- aggregate
@dataclass
class Aggregate:
    """Aggregate statistics over `tasks`. table: one row per statistic (iqm, mean per algo;
    probability_of_improvement per pair) with estimate, ci_low, ci_high; profiles: algo ->
    (profile over taus, CI of shape (2, len(taus)))."""

    tasks: list[str]
    normalisation: str
    table: pd.DataFrame
    taus: np.ndarray
    profiles: dict[str, tuple[np.ndarray, np.ndarray]]


def normalisation_ranges(groups: Groups, metric: str, normalise: str) -> dict[str, tuple[float, float]]:
    """task -> (low, high) mapped to (0, 1): see the module docstring for the choices."""
    if normalise == "none":
        return {task: (0.0, 1.0) for task in groups}
    if normalise == "minmax":
        ranges = {}
        for task, algos in groups.items():
            runs = [run for members in algos.values() for run in members]
            values = np.concatenate([run.series(metric).to_numpy() for run in runs])
            ranges[task] = (float(values.min()), float(values.max()))
        return ranges
    reference = yaml.safe_load(Path(normalise).read_text()) or {}
    if missing := [task for task in groups if task not in reference]:
        raise SystemExit(f"{normalise} has no reference scores for {', '.join(missing)}")
    return {task: (float(reference[task][0]), float(reference[task][1])) for task in groups}


def normalise_scores(scores: np.ndarray, low: float, high: float) -> np.ndarray:
    """(scores - low) / (high - low); all zeros when high == low (nothing to tell apart)."""
    return (scores - low) / (high - low) if high != low else np.zeros_like(scores)


def common_tasks(groups: Groups) -> tuple[list[str], list[str]]:
    """(algorithms, the tasks every one of them has runs on), warning about tasks left out."""
    algos = algo_order([algo for algos in groups.values() for algo in algos])
    tasks = [task for task, have in groups.items() if set(algos) <= set(have)]
    if left_out := [task for task in groups if task not in tasks]:
        warn(f"aggregate: left out {', '.join(left_out)} (not every algorithm has runs there)")
    if not tasks:
        raise SystemExit("aggregate: no task on which every algorithm has runs; pass fewer runs")
    return algos, tasks


def normalised_final_scores(groups: Groups, metric: str,
                            normalise: str) -> tuple[list[str], dict[str, list[np.ndarray]]]:
    """(tasks, algo -> one array of normalised final scores per task, runs as entries)."""
    algos, tasks = common_tasks(groups)
    ranges = normalisation_ranges({task: groups[task] for task in tasks}, metric, normalise)
    scores = {algo: [normalise_scores(final_values(groups[task][algo], metric), *ranges[task])
                     for task in tasks] for algo in algos}
    return tasks, scores


def profile_taus(scores: dict[str, list[np.ndarray]], normalised: bool) -> np.ndarray:
    """101 thresholds spanning the scores (and at least [0, 1] for normalised scores)."""
    pooled = np.concatenate([s for tasks in scores.values() for s in tasks])
    low, high = float(pooled.min()), float(pooled.max())
    if normalised:
        low, high = min(low, 0.0), max(high, 1.0)
    return np.linspace(low, high, 101)


def interval_row(statistic: str, algo: str, other: str, tasks: int, runs: int,
                 point: np.ndarray, ci: np.ndarray, k: int = 0) -> dict:
    """One row of the aggregate table from entry k of a bootstrap estimate."""
    return {"statistic": statistic, "algo": algo, "other": other, "tasks": tasks, "runs": runs,
            "estimate": float(point[k]), "ci_low": float(ci[0, k]), "ci_high": float(ci[1, k])}


def iqm_and_mean(*tasks: np.ndarray) -> np.ndarray:
    """[IQM of all runs' scores, mean over tasks of the per-task mean score]."""
    return np.array([iqm(np.concatenate(tasks)), np.mean([t.mean() for t in tasks])])


def aggregate(groups: Groups, metric: str, normalise: str = "minmax", reps: int = 2000,
              seed: int = 0) -> Aggregate:
    """IQM and mean per algorithm, probability of improvement per pair and performance profiles
    of the normalised final `metric`, with stratified bootstrap CIs."""
    tasks, scores = normalised_final_scores(groups, metric, normalise)
    n = len(tasks)
    runs = {algo: sum(len(s) for s in per_task) for algo, per_task in scores.items()}
    rows = [interval_row(statistic, algo, "", n, runs[algo], point, ci, k)
            for algo, (point, ci) in stratified_bootstrap(scores, iqm_and_mean, reps, seed).items()
            for k, statistic in enumerate(("iqm", "mean"))]

    def improvement(*t: np.ndarray) -> np.ndarray:  # t: X's tasks, then Y's
        return np.array([probability_of_improvement(t[:n], t[n:])])

    pairs = {(x, y): scores[x] + scores[y] for x, y in combinations(scores, 2)}
    rows += [interval_row("probability_of_improvement", x, y, n, runs[x] + runs[y], point, ci)
             for (x, y), (point, ci) in stratified_bootstrap(pairs, improvement, reps, seed).items()]
    taus = profile_taus(scores, normalise != "none")
    profiles = stratified_bootstrap(scores, lambda *t: score_distribution(t, taus), reps, seed)
    return Aggregate(tasks, normalise, pd.DataFrame(rows), taus, profiles)


def aggregate_markdown(result: Aggregate, metric: str, reps: int) -> str:
    """The aggregate table and the probability-of-improvement table as Markdown."""
    how = {"minmax": "min-max per task over every logged value of every run",
           "none": "none"}.get(result.normalisation, f"reference scores from {result.normalisation}")
    table = result.table

    def cell(row: pd.Series) -> str:
        return f"{row.estimate:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]"

    tasks = f"{plural(len(result.tasks), 'task')}: {', '.join(result.tasks)}"
    lines = [f"Final {metric}, normalised ({how}), over {tasks}.",
             (f"Point estimate [{CONFIDENCE:.0%} stratified bootstrap CI, percentile, "
              f"{reps} replications]."),
             "",
             "| algo | tasks | runs | IQM | mean |", "|---|---|---|---|---|"]
    for algo, rows in table[table.statistic != "probability_of_improvement"].groupby("algo", sort=False):
        by = rows.set_index("statistic")
        lines.append(f"| {algo} | {by.loc['iqm', 'tasks']} | {by.loc['iqm', 'runs']} | "
                     f"{cell(by.loc['iqm'])} | {cell(by.loc['mean'])} |")
    poi = table[table.statistic == "probability_of_improvement"]
    if len(poi):
        lines += ["", "| X | Y | P(X > Y) |", "|---|---|---|"]
        lines += [f"| {row.algo} | {row.other} | {cell(row)} |" for row in poi.itertuples()]
    return "\n".join(lines) + "\n"


def plot_aggregate(result: Aggregate, metric: str, out: str | Path) -> list[Path]:
    """IQM with its CI per algorithm (left) and performance profiles with CI bands (right)."""
    styles = algo_styles(list(result.profiles))
    iqms = result.table[result.table.statistic == "iqm"].reset_index(drop=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.6]})
    for k, row in iqms.iterrows():
        left.errorbar(row.estimate, k, xerr=[[row.estimate - row.ci_low], [row.ci_high - row.estimate]],
                      fmt="o", color=styles[row.algo].color, capsize=4)
    left.set(yticks=range(len(iqms)), yticklabels=iqms.algo, xlabel="IQM of normalised score",
             title=f"IQM ({CONFIDENCE:.0%} CI)")
    left.invert_yaxis()
    left.grid(alpha=0.3, axis="x")
    for algo, (profile, ci) in result.profiles.items():
        style = styles[algo]
        right.plot(result.taus, profile, color=style.color, linestyle=style.linestyle, label=algo)
        right.fill_between(result.taus, ci[0], ci[1], color=style.color, alpha=0.2, lw=0)
    right.set(xlabel=r"normalised score $\tau$", ylabel=r"fraction of runs with score > $\tau$",
              title="performance profile", ylim=(0, 1.02))
    right.grid(alpha=0.3)
    right.legend(fontsize="small")
    title = f"final {metric.replace('_', ' ')}, {plural(len(result.tasks), 'task')}"
    fig.suptitle(title, fontsize="small")
    fig.tight_layout()
    return save_figure(fig, out, replace=TABLE_SUFFIXES)


def write_aggregate(result: Aggregate, metric: str, reps: int, prefix: str | Path) -> list[Path]:
    """PREFIX.md, PREFIX.csv (the long table), PREFIX.png and PREFIX.pdf; returns them."""
    markdown = aggregate_markdown(result, metric, reps)
    written = write_table(result.table, markdown, prefix, replace=FIGURE_SUFFIXES)
    return written + plot_aggregate(result, metric, prefix)


# ----------------------------------------------------------------------------- CLI
def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harl.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="run directories or folders containing them")
    parser.add_argument("--out", default="curves.png",
                        help="learning curves: writes OUT.png and OUT.pdf (default curves.png)")
    parser.add_argument("--metric", default="eval_return",
                        help="a progress.csv column (e.g. train_return, eval_win_rate)")
    parser.add_argument("--smooth", type=positive_int, default=1, metavar="K",
                        help="trailing rolling mean over K logged points (curves only; default 1: none)")
    parser.add_argument("--band", choices=("ci", "none"), default="ci",
                        help="ci: 95%% t confidence band of the mean (default); none: no band")
    parser.add_argument("--seeds", action="store_true",
                        help="also draw each seed as a thin line (useful with few seeds)")
    parser.add_argument("--table", metavar="PATH",
                        help="also write the results table to PATH.md and PATH.csv")
    parser.add_argument("--aggregate", metavar="PREFIX",
                        help="aggregate statistics: PREFIX.md, .csv and the figure PREFIX.png, .pdf")
    parser.add_argument("--normalise", default="minmax", metavar="minmax|none|FILE",
                        help="per-task score normalisation for --aggregate (default minmax)")
    parser.add_argument("--reps", type=positive_int, default=2000,
                        help="bootstrap replications (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = parser.parse_args(argv)
    if args.normalise not in ("minmax", "none") and not Path(args.normalise).is_file():
        parser.error(f"--normalise: minmax, none or a YAML file of reference scores, "
                     f"not {args.normalise}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    groups = group_runs(load_runs(args.paths), args.metric)
    written = plot_curves(groups, args.metric, args.out, args.smooth, args.band == "ci", args.seeds)
    table = results_table(groups, args.metric)
    markdown = table_markdown(table)
    print(markdown)
    if args.table:
        written += write_table(table, markdown, args.table)
    if args.aggregate:
        result = aggregate(groups, args.metric, args.normalise, args.reps, args.seed)
        print(aggregate_markdown(result, args.metric, args.reps))
        written += write_aggregate(result, args.metric, args.reps, args.aggregate)
    print("wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
