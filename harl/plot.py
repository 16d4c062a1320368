"""Learning curves, a results table and aggregate statistics from harl run directories.

    python -m harl.plot results/compare/halfcheetah_2x3 results/compare/simple_spread_continuous \\
        --out docs/curves.png --table docs/results --aggregate docs/aggregate
    python tools/plot.py results/multirun/2026-11-02_10-00-00 --metric train_return --smooth 5

Arguments are run directories or folders holding them, searched recursively for a directory
with both progress.csv and config.yaml (single runs, Hydra multiruns, tools/compare_algos.py
output). Every run found is one seed of its group.

Groups
    Runs are grouped by task (`env.name/env.task`), algorithm (`algo.name`) and config: runs
    whose config.yaml differ in anything but the run-only keys (seed, resume, results_dir,
    logger.*, and what a resume may change: total_steps, device, torch_threads, cpu_matmul,
    n_workers, trainer_block, the eval/log/save intervals, eval_episodes, n_eval_envs,
    algo.save_replay_buffer, algo.critic_in_parallel, algo.critic_beside_rollout,
    algo.actor_threads, algo.targets_in_parallel) are separate
    groups; keys a config.yaml lacks count as their schema default. One config per algorithm and
    task: the label is the algorithm. Several: each label says what differs, `happo [preset]`
    for a run started from the task's own `+experiment=` preset (from run.json or
    .hydra/overrides.yaml; `[preset walker2d_6x1]` for another task's), then the keys whose
    values differ among the groups with the same preset (or none), e.g. `happo (algo.lr=0.001)`;
    past 3 keys `+N more`, the full list printed to stderr. Labels are decided per task.
    --merge-configs: task and algorithm only.

Learning curves (--out PATH: PATH.png and PATH.pdf; default curves.png)
    One panel per task, x = env steps, y = --metric (default eval_return); --per-task also
    writes one figure per task, PATH-<task>.png/.pdf (the task with every character but
    letters, digits and `._+-` replaced by `_`: `mamujoco/Humanoid-9|8` ->
    `mamujoco_Humanoid-9_8`). Each group is the mean over its seeds. Seeds are aligned by
    linear interpolation onto the union of their logged env steps, and at each step the mean
    (and band) is over the seeds logged there, up to the end of the longest seed: a seed that
    ends earlier (unfinished, interrupted) cuts nothing; it is named in the legend (`seed 3
    ends at 2.1M`) and an x on the mean marks where it ends. The band (--band):
      auto (default)  with fewer than 5 seeds: the min-max range of the seeds, and each seed
                      as a thin line (a t band is useless there: t(0.975, 1) = 12.7 for two
                      seeds); with 5 or more: ci
      ci              95 % t-based confidence band of the mean, mean ± t(0.975, n-1) · s/√n
                      (s: sample std, ddof=1)
      std             mean ± s
      minmax, none
    No band where fewer than two seeds are logged. --seeds / --no-seeds: thin seed lines for
    every group / none. The figure's title says which band and lines are drawn. --smooth K
    replaces each seed's values by a trailing rolling mean over its last K logged points
    before aligning. Each group keeps one colour in every panel; the HA algorithms are solid
    lines, the baselines (MAPPO, MADDPG, MATD3, QMIX, VDN) dashed.

Results table (printed; --table PATH also writes PATH.md and PATH.csv)
    One row per (task, group): seeds, final --metric (the last logged value of each seed),
    best --metric (each seed's maximum) and, for every `eval_*_rate` column the runs have
    (e.g. eval_win_rate), its final value; each as mean ± the 95 % t-based half-width above
    (unsmoothed values; no half-width with one seed). env_steps is the smallest final env step
    of the group's seeds, env_steps_max the largest (Markdown: `400–600` when they differ),
    and `note` names the seeds that end before the longest (their final value is from there).
    A `|` in a task or label is escaped as `\\|` in Markdown.

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
    (default 2000), seeded by --seed. "Algorithm" here is a group label, matched across tasks
    (`happo [preset]` on every task is one entry); only tasks on which every label has runs
    enter.
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
import functools
import json
import math
import re
import sys
import textwrap
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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

from harl.common.cli import command_name, positive_int  # noqa: E402
from harl.config import RESUMABLE_OVERRIDES, path_safe  # noqa: E402

HA_ALGOS = ("happo", "hatrpo", "haa2c", "haddpg", "hatd3", "hasac", "had3qn")
BASELINES = ("mappo", "maddpg", "matd3", "qmix", "vdn")
RATE_COLUMN = re.compile(r"eval_.+_rate")
CONFIDENCE = 0.95
FIGURE_SUFFIXES = (".png", ".pdf")
BANDS = ("auto", "ci", "std", "minmax", "none")
BAND_TEXT = {
    "ci": f"{CONFIDENCE:.0%} t confidence band of the mean",
    "std": "mean ± 1 std of the seeds",
    "minmax": "min–max of the seeds",
}
TABLE_SUFFIXES = (".md", ".csv")

# Seeds below which a curve shows every seed and their min-max range, not a t-based band
FEW_SEEDS = 5
# Keys of config.yaml that do not change what a run learns, so runs differing only in them are
# seeds of one group: the seed, where a run writes, and what a resume may change (budget,
# device, threads, workers, log/eval/save cadences, loggers: harl.config.RESUMABLE_OVERRIDES).
RUN_ONLY_KEYS = ("seed", "resume", "results_dir", *RESUMABLE_OVERRIDES)
RUN_ONLY_PREFIXES = ("logger.", "hydra.")
LABEL_KEYS = 3  # differing keys a group label shows before "+N more"

Groups = dict[str, dict[str, list["Run"]]]  # task -> label (algorithm, or algorithm + config) -> runs


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------- loading runs
@dataclass(frozen=True)
class Run:
    """One run directory: its task, algorithm and seed (from config.yaml) and progress.csv;
    `config` is its config.yaml as loaded and `preset` the `+experiment=` preset it was started
    with (from run.json or .hydra/overrides.yaml), both optional (runs built by hand have none)."""

    path: Path
    task: str
    algo: str
    seed: int | None
    progress: pd.DataFrame
    config: dict = field(default_factory=dict, repr=False, compare=False)
    preset: str | None = None

    def series(self, column: str) -> pd.Series:
        """`column` indexed by env_steps (ascending, one value per step), missing values dropped."""
        if column not in self.progress:
            return pd.Series(dtype=float)
        rows = self.progress[["env_steps", column]].dropna()
        return rows.groupby("env_steps")[column].last().astype(float)

    @property
    def name(self) -> str:
        """`seed N`, or the run directory's name for a run without a seed."""
        return f"seed {self.seed}" if self.seed is not None else self.path.name


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


def recorded_preset(path: Path) -> str | None:
    """The `+experiment=<preset>` a run was started with: from run.json's `overrides` (harl's
    record of the command line), else Hydra's .hydra/overrides.yaml; None without either."""
    overrides: list = []
    try:
        if (path / "run.json").is_file():
            overrides = json.loads((path / "run.json").read_text()).get("overrides") or []
        elif (path / ".hydra" / "overrides.yaml").is_file():
            overrides = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, ValueError, yaml.YAMLError, AttributeError):
        return None
    for override in overrides:
        key, sep, value = str(override).partition("=")
        if sep and key.lstrip("+~") == "experiment":
            return value
    return None


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
    return Run(
        path,
        f"{env['name']}/{env['task']}",
        str(algo["name"]),
        None if seed is None else int(seed),
        progress,
        config,
        recorded_preset(path),
    )


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    runs = [run for path in find_run_dirs(paths) if (run := load_run(path)) is not None]
    if not runs:
        where = ", ".join(map(str, paths))
        raise SystemExit(f"no run directories (progress.csv + config.yaml) under {where}")
    return runs


def base_algo(label: str) -> str:
    """The algorithm a group label starts with (`happo [preset]` -> `happo`)."""
    return label.split(" ", 1)[0]


def algo_order(algos: Sequence[str]) -> list[str]:
    """HA algorithms first, then the baselines (each in the order of HA_ALGOS / BASELINES),
    then any other algorithm alphabetically. Group labels (`happo (algo.lr=0.001)`) sort by
    their algorithm, the plain algorithm name first."""
    known = HA_ALGOS + BASELINES

    def key(label: str) -> tuple[int, str, bool, str]:
        algo = base_algo(label)
        return known.index(algo) if algo in known else len(known), algo, label != algo, label

    return sorted(set(algos), key=key)


# ----------------------------------------------------------------------------- grouping by config
def is_run_only_key(key: str) -> bool:
    """Keys of config.yaml that do not change what a run learns (RUN_ONLY_KEYS, logger.*)."""
    return key in RUN_ONLY_KEYS or key.startswith(RUN_ONLY_PREFIXES)


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """Dotted keys -> leaf values of a nested mapping."""
    out: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@functools.cache
def _schema(algo: str, env: str):  # the typed defaults of one algorithm/env pair
    from harl.config import schema_for

    return schema_for(algo, env)


def with_schema_defaults(config: dict) -> dict:
    """A run's config with the schema's defaults for keys it lacks (a run saved before a key
    existed compares equal to one that has the key at its default); the config as it is when
    it does not fit today's schema."""
    from omegaconf import OmegaConf

    try:
        merged = OmegaConf.merge(_schema(str(config["algo"]["name"]), str(config["env"]["name"])), config)
        container = OmegaConf.to_container(merged, resolve=True)
    except Exception:  # an unknown algorithm, a key since removed, a foreign file: compare as is
        return config
    return container if isinstance(container, dict) else config


def learning_config(run: Run) -> dict[str, object]:
    """Dotted key -> value of the settings that change what `run` learns: its config.yaml
    (schema defaults filled in) without the run-only keys."""
    if not run.config:
        return {}
    return {
        key: value
        for key, value in flatten(with_schema_defaults(run.config)).items()
        if not is_run_only_key(key)
    }


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


MISSING_KEY = object()  # a key that one config of a comparison lacks


def show_value(value: object) -> str:
    """A config value as one writes it on the command line (`0.001`, `[256, 256]`, `relu`)."""
    if value is MISSING_KEY:
        return "(unset)"
    return value if isinstance(value, str) else canonical(value)


def differing_keys(configs: Sequence[dict[str, object]]) -> list[str]:
    """Keys whose value is not the same in every config (a key some lack counts as differing)."""
    keys = sorted(set().union(*configs))
    return [key for key in keys if len({canonical(c[key]) if key in c else "(unset)" for c in configs}) > 1]


def preset_for_task(preset: str, task: str, algo: str) -> str | None:
    """The preset name to show in a label: None when it is this task's own preset for this
    algorithm (`mamujoco/halfcheetah_2x3/happo` on mamujoco/HalfCheetah-2x3), else the preset
    without the env and algorithm parts it shares with the run (`halfcheetah_2x3`)."""
    env, _, task_name = task.partition("/")
    parts = preset.split("/")
    if len(parts) > 1 and parts[-1] == algo:
        parts = parts[:-1]
    if len(parts) > 1 and parts[0] == env:
        parts = parts[1:]
    shown = "/".join(parts)
    return None if shown == path_safe(task_name).lower().replace("-", "_") else shown


def variant_labels(
    algo: str, task: str, variants: Sequence[tuple[str | None, dict[str, object]]], max_keys: int = LABEL_KEYS
) -> tuple[list[str], list[str]]:
    """Labels for the config variants (preset, learning config) of one algorithm on one task,
    and the full differences of the labels that show only the first `max_keys` of them.

    A variant started from a preset says so (`happo [preset]`, `happo [preset walker2d_6x1]`
    for another task's preset); the keys shown are those whose values differ among the
    variants with the same preset (or none), so an untuned run beside a preset one stays
    `happo`, and two untuned runs read `happo (algo.lr=0.0005)` and `happo (algo.lr=0.001)`."""
    labels, details = [], []
    for preset, config in variants:
        peers = [c for p, c in variants if p == preset]
        keys = differing_keys(peers)
        label = algo
        if preset is not None:
            other = preset_for_task(preset, task, algo)
            label += " [preset]" if other is None else f" [preset {other}]"
        if keys:
            shown = [f"{key}={show_value(config.get(key, MISSING_KEY))}" for key in keys]
            more = f", +{len(shown) - max_keys} more" if len(shown) > max_keys else ""
            label += f" ({', '.join(shown[:max_keys])}{more})"
            if more:
                details.append(f"{label}: {', '.join(shown)}")
        while label in labels:  # equal up to the keys left out: number them
            label += "'"
        labels.append(label)
    return labels, details


def config_variants(task: str, algo: str, runs: Sequence[Run]) -> dict[str, list[Run]]:
    """The runs of one algorithm on one task split by learning config: label -> runs (the
    plain algorithm name when they all share one config)."""
    by_config: dict[str, list[Run]] = {}
    configs: dict[str, dict[str, object]] = {}
    for run in runs:
        config = learning_config(run)
        key = canonical(config)
        by_config.setdefault(key, []).append(run)
        configs.setdefault(key, config)
    if len(by_config) == 1:
        return {algo: list(runs)}
    variants = []
    for key, members in by_config.items():
        presets = {run.preset for run in members}
        variants.append((presets.pop() if len(presets) == 1 else None, configs[key]))
    labels, details = variant_labels(algo, task, variants)
    for line in details:
        print(f"{task}: {line}", file=sys.stderr)
    return dict(zip(labels, by_config.values()))


def group_runs(runs: Sequence[Run], metric: str, by_config: bool = True) -> Groups:
    """task -> label -> runs with at least one value of `metric`, sorted by task, algorithm and
    seed. Runs of one algorithm on one task whose learning configs differ (anything but the
    run-only keys: seed, paths, logging, speed, cadences) are separate groups, labelled by
    what differs (`variant_labels`); `by_config=False` groups by task and algorithm only."""
    by_algo: dict[str, dict[str, list[Run]]] = {}
    for run in runs:
        if run.series(metric).empty:
            warn(f"{run.path}: no {metric!r} values; skipped")
            continue
        by_algo.setdefault(run.task, {}).setdefault(run.algo, []).append(run)
    if not by_algo:
        raise SystemExit(f"no run has values in column {metric!r}")
    groups: Groups = {}
    for task, algos in by_algo.items():
        for algo, members in algos.items():
            variants = config_variants(task, algo, members) if by_config else {algo: members}
            groups.setdefault(task, {}).update(variants)
    for task, labels in groups.items():
        for label, members in labels.items():
            seeds = [r.seed for r in members]
            if len(set(seeds)) < len(seeds):
                warn(
                    f"{task} {label}: several runs with the same seed "
                    f"({sorted(seeds, key=lambda s: -1 if s is None else s)}); "
                    "all are counted as seeds of one group"
                )

    def by_seed(run: Run) -> tuple[bool, int, str]:
        return run.seed is None, run.seed or 0, str(run.path)

    return {
        task: {label: sorted(groups[task][label], key=by_seed) for label in algo_order(list(groups[task]))}
        for task in sorted(groups)
    }


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
    env steps within the range all of them cover. Returns (grid, values of shape (curves, grid)).
    (The curves use `align_all`, which does not cut the longer curves.)"""
    start = max(c.index[0] for c in curves)
    end = min(c.index[-1] for c in curves)
    steps = np.unique(np.concatenate([c.index.to_numpy(dtype=float) for c in curves]))
    grid = steps[(steps >= start) & (steps <= end)]
    values = (
        np.stack([np.interp(grid, c.index.to_numpy(dtype=float), c.to_numpy(dtype=float)) for c in curves])
        if len(grid)
        else np.empty((len(curves), 0))
    )
    return grid, values


def align_all(curves: Sequence[pd.Series]) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate curves onto the union of their env steps, from the first step of any to the
    last step of any. Returns (grid, values of shape (curves, grid)), NaN where a curve has no
    value (before its first or after its last logged step): a shorter curve cuts nothing."""
    if not curves:
        return np.empty(0), np.empty((0, 0))
    grid = np.unique(np.concatenate([c.index.to_numpy(dtype=float) for c in curves]))
    rows = []
    for curve in curves:
        x, y = curve.index.to_numpy(dtype=float), curve.to_numpy(dtype=float)
        row = np.interp(grid, x, y) if len(x) else np.full(len(grid), np.nan)
        if len(x):
            row[(grid < x[0]) | (grid > x[-1])] = np.nan
        rows.append(row)
    return grid, np.stack(rows)


@dataclass
class Spread:
    """Per grid point over the seeds that have a value there: their number `n`, the mean, and
    the band's `low` and `high` (NaN where it is undefined, e.g. with one seed)."""

    n: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def seed_spread(values: np.ndarray, band: str) -> Spread:
    """Mean over axis 0 of `values` (seeds x grid, NaN = no value) and the band around it:
    `ci` mean ± t(0.975, n-1) · s/√n, `std` mean ± s (s: sample std, ddof=1), `minmax` the
    smallest and largest seed, `none` no band; each over the n >= 2 seeds present per point."""
    values = np.asarray(values, dtype=float)
    present = ~np.isnan(values)
    n = present.sum(axis=0)
    filled = np.where(present, values, 0.0)
    mean = filled.sum(axis=0) / np.maximum(n, 1)
    mean[n == 0] = np.nan
    several = n >= 2
    nan = np.full_like(mean, np.nan)
    if band in ("ci", "std"):
        var = np.where(present, (values - mean) ** 2, 0.0).sum(axis=0) / np.maximum(n - 1, 1)
        half = np.sqrt(var)
        if band == "ci":
            half = half * stats.t.ppf(0.5 + CONFIDENCE / 2, np.maximum(n - 1, 1)) / np.sqrt(np.maximum(n, 1))
        half = np.where(several, half, np.nan)
        return Spread(n, mean, mean - half, mean + half)
    if band == "minmax":
        low = np.where(present, values, np.inf).min(axis=0)
        high = np.where(present, values, -np.inf).max(axis=0)
        return Spread(n, mean, np.where(several, low, np.nan), np.where(several, high, np.nan))
    if band == "none":
        return Spread(n, mean, nan, nan.copy())
    raise ValueError(f"band must be one of {', '.join(BANDS)}, not {band!r}")


def short_seeds(runs: Sequence[Run], metric: str) -> list[tuple[Run, float]]:
    """(run, its last env step with a `metric` value) for the runs that end before the
    group's longest one (an unfinished or interrupted seed)."""
    ends = [(run, float(series.index[-1])) for run in runs if not (series := run.series(metric)).empty]
    if not ends:
        return []
    last = max(end for _, end in ends)
    return [(run, end) for run, end in ends if end < last]


def fmt_steps(steps: float) -> str:
    """Env steps in short form: 2.1M, 450k, 600."""
    steps = float(steps)
    if abs(steps) >= 1e6:
        return f"{steps / 1e6:.3g}M"
    if abs(steps) >= 1e4:
        return f"{steps / 1e3:.3g}k"
    return f"{steps:,.0f}"


def short_seed_note(runs: Sequence[Run], metric: str) -> str:
    """`seed 3 ends at 2.1M` for each seed shorter than the group's longest ('' if none)."""
    return ", ".join(f"{run.name} ends at {fmt_steps(end)}" for run, end in short_seeds(runs, metric))


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


def stratified_bootstrap(
    samples: dict[K, list[np.ndarray]], statistic: Callable[..., np.ndarray], reps: int, seed: int
) -> dict[K, tuple[np.ndarray, np.ndarray]]:
    """Point estimate and 95 % percentile CI (lower row, upper row) of `statistic` per key.

    samples[key] is a list of 1-D arrays (one per stratum, e.g. the runs of one algorithm on one
    task); `statistic(*arrays)` returns a 1-D array. Each array is resampled with replacement
    independently (rliable's StratifiedIndependentBootstrap), so strata may differ in size."""
    from rliable import library as rly  # imports arch and statsmodels: ~1 s, only when needed

    with seeded_numpy(seed):
        points, intervals = rly.get_interval_estimates(
            samples, statistic, method="percentile", reps=reps, confidence_interval_size=CONFIDENCE
        )
    return {key: (np.atleast_1d(points[key]), np.asarray(intervals[key]).reshape(2, -1)) for key in samples}


# ----------------------------------------------------------------------------- learning curves
@dataclass(frozen=True)
class Style:
    color: tuple[float, ...]
    linestyle: str


def algo_styles(algos: Sequence[str]) -> dict[str, Style]:
    """One colour per algorithm or group label (same in every panel and figure of one call);
    HA algorithms solid, baselines dashed, others dash-dotted (a label by its algorithm)."""
    ordered = algo_order(algos)
    # tab10/tab20 are ListedColormaps (a `colors` list of RGB tuples); get_cmap is typed as their base
    palette = plt.get_cmap("tab10" if len(ordered) <= 10 else "tab20").colors  # type: ignore[attr-defined]

    def linestyle(label: str) -> str:
        algo = base_algo(label)
        return "-" if algo in HA_ALGOS else "--" if algo in BASELINES else "-."

    return {label: Style(palette[k % len(palette)], linestyle(label)) for k, label in enumerate(ordered)}


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


def band_kind(band: bool | str, n_seeds: int) -> str:
    """The band a group of `n_seeds` seeds gets: `auto` is min-max below FEW_SEEDS seeds and
    the t-based CI from FEW_SEEDS on; True means `ci` and False `none` (the older flags)."""
    if band is True:
        return "ci"
    if band is False or band is None:
        return "none"
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}, not {band!r}")
    if band == "auto":
        return "minmax" if n_seeds < FEW_SEEDS else "ci"
    return band


@dataclass
class CurveInfo:
    """What `plot_curve` drew: the band kind, whether seeds have lines, the short seeds."""

    band: str
    seeds: bool
    short: list[tuple[Run, float]]


def plot_curve(
    ax: plt.Axes,
    runs: Sequence[Run],
    metric: str,
    window: int,
    style: Style,
    label: str,
    band: bool | str = "auto",
    seeds: bool | None = None,
) -> CurveInfo | None:
    """The mean over the runs' (smoothed) curves, a band around it and, with `seeds`, a thin
    line per seed. Seeds are interpolated onto the union of their env steps; at each step the
    mean and band are over the seeds logged there, up to the end of the longest seed. A seed
    that ends earlier is named in the legend (`seed 3 ends at 2.1M`) and marked with an x on
    the mean where it ends.

    band: `auto` (default): min-max over seeds below FEW_SEEDS seeds, else `ci`; `ci`: the
    95 % t-based confidence band of the mean (also True); `std`: mean ± 1 sample std;
    `minmax`; `none` (also False). seeds: None (default) draws seed lines below FEW_SEEDS
    seeds. Returns what was drawn (None when there is nothing to draw)."""
    curves = [smooth(run.series(metric), window) for run in runs]
    grid, values = align_all([c for c in curves if not c.empty])
    if not len(grid):
        warn(f"{label}: no {metric!r} values; not plotted")
        return None
    kind = band_kind(band, len(runs))
    draw_seeds = (len(runs) < FEW_SEEDS if seeds is None else bool(seeds)) and len(values) > 1
    spread = seed_spread(values, kind)
    short = short_seeds(runs, metric)
    note = "".join(f", {run.name} ends at {fmt_steps(end)}" for run, end in short)
    ax.plot(
        grid,
        spread.mean,
        color=style.color,
        linestyle=style.linestyle,
        lw=1.8,
        marker="o" if len(grid) == 1 else None,
        label=f"{label} ({plural(len(runs), 'seed')}{note})",
    )
    if kind != "none" and (spread.n >= 2).any():
        ax.fill_between(grid, spread.low, spread.high, color=style.color, alpha=0.2, lw=0)
    if draw_seeds:
        for seed_values in values:
            present = ~np.isnan(seed_values)
            ax.plot(
                grid[present],
                seed_values[present],
                color=style.color,
                linestyle=style.linestyle,
                lw=0.8,
                alpha=0.35,
            )
    for _, end in short:
        k = int(np.searchsorted(grid, end))
        ax.plot(
            [grid[k]],
            [spread.mean[k]],
            color=style.color,
            marker="x",
            markersize=8,
            markeredgewidth=2,
            linestyle="none",
        )
    return CurveInfo(kind, draw_seeds, short)


def curves_title(infos: Sequence[CurveInfo], band: bool | str, width: int = 100) -> str:
    """The figure title: what the line, the band, the thin lines and the x marks are (wrapped
    at `width` characters)."""
    parts = ["mean over seeds"]
    shaded = []
    for kind in dict.fromkeys(info.band for info in infos if info.band != "none"):
        qualifier = (
            ""
            if band != "auto"
            else f" (<\u00a0{FEW_SEEDS}\u00a0seeds)"
            if kind == "minmax"
            else f" (≥\u00a0{FEW_SEEDS}\u00a0seeds)"
        )
        shaded.append(BAND_TEXT[kind] + qualifier)
    if shaded:
        parts.append("shaded: " + ", ".join(shaded))
    if any(info.seeds for info in infos):
        parts.append("thin lines: single seeds")
    if any(info.short for info in infos):
        parts.append("×: where a shorter seed ends")
    return textwrap.fill("; ".join(parts), width=width)


def task_file_name(task: str) -> str:
    """A task (`mamujoco/Humanoid-9|8`) as part of a file name (`mamujoco_Humanoid-9_8`):
    only letters, digits and `._+-`, so that it needs no quoting in a shell."""
    return path_safe(task)


def draw_panels(
    groups: Groups, styles: dict[str, Style], metric: str, window: int, band: bool | str, seeds: bool | None
) -> plt.Figure:
    """One panel per task of `groups`, titled by what the curves show."""
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
    ylabel = metric.replace("_", " ") + (f" (rolling mean of {window})" if window > 1 else "")
    infos = []
    for ax, (task, labels) in zip(axes[0], groups.items()):
        for label, runs in labels.items():
            if info := plot_curve(ax, runs, metric, window, styles[label], label, band, seeds):
                infos.append(info)
        ax.set(title=task, xlabel="env steps", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(curves_title(infos, band, width=85 * len(groups)), fontsize="small")
    fig.tight_layout()
    return fig


def plot_curves(
    groups: Groups,
    metric: str,
    out: str | Path,
    window: int = 1,
    band: bool | str = "auto",
    seeds: bool | None = None,
    per_task: bool = False,
) -> list[Path]:
    """One panel per task in OUT.png and OUT.pdf (`band`, `seeds`: as in `plot_curve`); with
    `per_task` also one figure per task, OUT-<task>.png/.pdf (the task made safe for file
    names by `task_file_name`). Returns the files written."""
    styles = algo_styles([label for labels in groups.values() for label in labels])
    written = save_figure(draw_panels(groups, styles, metric, window, band, seeds), out)
    if per_task:
        base = Path(out).with_suffix("") if Path(out).suffix in FIGURE_SUFFIXES else Path(out)
        for task, labels in groups.items():
            fig = draw_panels({task: labels}, styles, metric, window, band, seeds)
            written += save_figure(fig, base.with_name(f"{base.name}-{task_file_name(task)}"))
    return written


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
    """One row per (task, group label): seeds, env_steps (the smallest final env step of the
    group's seeds) and env_steps_max (the largest), mean/ci95 (half-width) of the final and
    best `metric` and of the final value of every eval_*_rate column, and `note`: the seeds
    that end before the longest one (`seed 3 ends at 2.1M`; their final value is from there)."""
    rates = [
        c for c in rate_columns([r for a in groups.values() for rs in a.values() for r in rs]) if c != metric
    ]
    rows = []
    for task, algos in groups.items():
        for algo, runs in algos.items():
            ends = [run.progress["env_steps"].max() for run in runs]
            row = {
                "task": task,
                "algo": algo,
                "seeds": len(runs),
                "env_steps": min(ends),
                "env_steps_max": max(ends),
            }
            columns = [
                (f"final_{metric}", final_values(runs, metric)),
                (f"best_{metric}", best_values(runs, metric)),
                *((f"final_{rate}", final_values(runs, rate)) for rate in rates),
            ]
            for name, values in columns:
                mean, half = mean_and_ci(values)
                row[f"{name}_mean"], row[f"{name}_ci95"] = float(mean), float(half)
            row["note"] = short_seed_note(runs, metric)
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


def md_cell(value: object) -> str:
    """Text for one Markdown table cell: `|` escaped (MaMuJoCo's task `Humanoid-9|8` would
    otherwise split the cell), line breaks as spaces."""
    return " ".join(str(value).splitlines()).replace("|", "\\|")


def fmt_env_steps(row: dict) -> str:
    """`600`, or `400–600` when the group's seeds end at different env steps."""
    low, high = row["env_steps"], row.get("env_steps_max", row["env_steps"])
    if pd.isna(high) or high == low:
        return f"{low:,.0f}"
    return f"{low:,.0f}–{high:,.0f}"


def table_markdown(table: pd.DataFrame) -> str:
    """The results table as Markdown: each mean/ci95 column pair as `mean ± half-width`, and a
    note column when a group has seeds shorter than its longest."""
    stats_columns = [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]
    names = " | ".join(c.replace("_", " ") for c in stats_columns)
    notes = bool("note" in table and table["note"].fillna("").astype(bool).any())
    lines = [
        (
            f"Mean ± {CONFIDENCE:.0%} t-based CI half-width over seeds (none with one seed); "
            "final = last logged value of each seed, best = its maximum."
        ),
        "",
        f"| task | algo | seeds | env steps | {names} |" + " note |" * notes,
        "|---|---|---|---|" + "---|" * (len(stats_columns) + notes),
    ]
    for row in table.to_dict("records"):
        cells = [fmt_mean_ci(row[f"{c}_mean"], row[f"{c}_ci95"]) for c in stats_columns]
        if notes:
            cells.append(md_cell(row["note"] if isinstance(row["note"], str) else ""))
        lines.append(
            f"| {md_cell(row['task'])} | {md_cell(row['algo'])} | {row['seeds']} | "
            f"{fmt_env_steps(row)} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def write_table(
    table: pd.DataFrame, markdown: str, path: str | Path, replace: Sequence[str] = ()
) -> list[Path]:
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


def normalised_final_scores(
    groups: Groups, metric: str, normalise: str
) -> tuple[list[str], dict[str, list[np.ndarray]]]:
    """(tasks, algo -> one array of normalised final scores per task, runs as entries)."""
    algos, tasks = common_tasks(groups)
    ranges = normalisation_ranges({task: groups[task] for task in tasks}, metric, normalise)
    scores = {
        algo: [normalise_scores(final_values(groups[task][algo], metric), *ranges[task]) for task in tasks]
        for algo in algos
    }
    return tasks, scores


def profile_taus(scores: dict[str, list[np.ndarray]], normalised: bool) -> np.ndarray:
    """101 thresholds spanning the scores (and at least [0, 1] for normalised scores)."""
    pooled = np.concatenate([s for tasks in scores.values() for s in tasks])
    low, high = float(pooled.min()), float(pooled.max())
    if normalised:
        low, high = min(low, 0.0), max(high, 1.0)
    return np.linspace(low, high, 101)


def interval_row(
    statistic: str,
    algo: str,
    other: str,
    tasks: int,
    runs: int,
    point: np.ndarray,
    ci: np.ndarray,
    k: int = 0,
) -> dict:
    """One row of the aggregate table from entry k of a bootstrap estimate."""
    return {
        "statistic": statistic,
        "algo": algo,
        "other": other,
        "tasks": tasks,
        "runs": runs,
        "estimate": float(point[k]),
        "ci_low": float(ci[0, k]),
        "ci_high": float(ci[1, k]),
    }


def iqm_and_mean(*tasks: np.ndarray) -> np.ndarray:
    """[IQM of all runs' scores, mean over tasks of the per-task mean score]."""
    return np.array([iqm(np.concatenate(tasks)), np.mean([t.mean() for t in tasks])])


def aggregate(
    groups: Groups, metric: str, normalise: str = "minmax", reps: int = 2000, seed: int = 0
) -> Aggregate:
    """IQM and mean per algorithm, probability of improvement per pair and performance profiles
    of the normalised final `metric`, with stratified bootstrap CIs."""
    tasks, scores = normalised_final_scores(groups, metric, normalise)
    n = len(tasks)
    runs = {algo: sum(len(s) for s in per_task) for algo, per_task in scores.items()}
    rows = [
        interval_row(statistic, algo, "", n, runs[algo], point, ci, k)
        for algo, (point, ci) in stratified_bootstrap(scores, iqm_and_mean, reps, seed).items()
        for k, statistic in enumerate(("iqm", "mean"))
    ]

    def improvement(*t: np.ndarray) -> np.ndarray:  # t: X's tasks, then Y's
        return np.array([probability_of_improvement(t[:n], t[n:])])

    pairs = {(x, y): scores[x] + scores[y] for x, y in combinations(scores, 2)}
    rows += [
        interval_row("probability_of_improvement", x, y, n, runs[x] + runs[y], point, ci)
        for (x, y), (point, ci) in stratified_bootstrap(pairs, improvement, reps, seed).items()
    ]
    taus = profile_taus(scores, normalise != "none")
    profiles = stratified_bootstrap(scores, lambda *t: score_distribution(t, taus), reps, seed)
    return Aggregate(tasks, normalise, pd.DataFrame(rows), taus, profiles)


def aggregate_markdown(result: Aggregate, metric: str, reps: int) -> str:
    """The aggregate table and the probability-of-improvement table as Markdown."""
    how = {"minmax": "min-max per task over every logged value of every run", "none": "none"}.get(
        result.normalisation, f"reference scores from {result.normalisation}"
    )
    table = result.table

    def cell(row: pd.Series) -> str:
        return f"{row.estimate:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]"

    tasks = f"{plural(len(result.tasks), 'task')}: {', '.join(result.tasks)}"
    lines = [
        f"Final {metric}, normalised ({how}), over {tasks}.",
        (f"Point estimate [{CONFIDENCE:.0%} stratified bootstrap CI, percentile, {reps} replications]."),
        "",
        "| algo | tasks | runs | IQM | mean |",
        "|---|---|---|---|---|",
    ]
    for algo, rows in table[table.statistic != "probability_of_improvement"].groupby("algo", sort=False):
        by = rows.set_index("statistic")
        lines.append(
            f"| {md_cell(algo)} | {by.loc['iqm', 'tasks']} | {by.loc['iqm', 'runs']} | "
            f"{cell(by.loc['iqm'])} | {cell(by.loc['mean'])} |"
        )
    poi = table[table.statistic == "probability_of_improvement"]
    if len(poi):
        lines += ["", "| X | Y | P(X > Y) |", "|---|---|---|"]
        lines += [f"| {md_cell(row.algo)} | {md_cell(row.other)} | {cell(row)} |" for row in poi.itertuples()]
    return "\n".join(lines) + "\n"


def plot_aggregate(result: Aggregate, metric: str, out: str | Path) -> list[Path]:
    """IQM with its CI per algorithm (left) and performance profiles with CI bands (right)."""
    styles = algo_styles(list(result.profiles))
    iqms = result.table[result.table.statistic == "iqm"].reset_index(drop=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.6]})
    for k, row in iqms.iterrows():
        left.errorbar(
            row.estimate,
            k,
            xerr=[[row.estimate - row.ci_low], [row.ci_high - row.estimate]],
            fmt="o",
            color=styles[row.algo].color,
            capsize=4,
        )
    left.set(
        yticks=range(len(iqms)),
        yticklabels=iqms.algo,
        xlabel="IQM of normalised score",
        title=f"IQM ({CONFIDENCE:.0%} CI)",
    )
    left.invert_yaxis()
    left.grid(alpha=0.3, axis="x")
    for algo, (profile, ci) in result.profiles.items():
        style = styles[algo]
        right.plot(result.taus, profile, color=style.color, linestyle=style.linestyle, label=algo)
        right.fill_between(result.taus, ci[0], ci[1], color=style.color, alpha=0.2, lw=0)
    right.set(
        xlabel=r"normalised score $\tau$",
        ylabel=r"fraction of runs with score > $\tau$",
        title="performance profile",
        ylim=(0, 1.02),
    )
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
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=command_name("harl-plot", "harl.plot"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", help="run directories or folders containing them")
    parser.add_argument(
        "--out", default="curves.png", help="learning curves: writes OUT.png and OUT.pdf (default curves.png)"
    )
    parser.add_argument(
        "--metric", default="eval_return", help="a progress.csv column (e.g. train_return, eval_win_rate)"
    )
    parser.add_argument(
        "--smooth",
        type=positive_int,
        default=1,
        metavar="K",
        help="trailing rolling mean over K logged points (curves only; default 1: none)",
    )
    parser.add_argument(
        "--band",
        choices=BANDS,
        default="auto",
        help=(
            f"auto (default): min-max over seeds for groups of fewer than {FEW_SEEDS} "
            "seeds, else ci; ci: 95%% t confidence band of the mean; std: mean ± 1 "
            "std over seeds; minmax; none: no band"
        ),
    )
    parser.add_argument(
        "--seeds",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            f"draw (--seeds) or not (--no-seeds) each seed as a thin line; default: "
            f"for groups of fewer than {FEW_SEEDS} seeds"
        ),
    )
    parser.add_argument(
        "--per-task", action="store_true", help="also one figure per task: OUT-<task>.png and .pdf"
    )
    parser.add_argument(
        "--merge-configs",
        action="store_true",
        help=(
            "group runs by task and algorithm only, also when their configs "
            "differ (default: one group per config)"
        ),
    )
    parser.add_argument(
        "--table", metavar="PATH", help="also write the results table to PATH.md and PATH.csv"
    )
    parser.add_argument(
        "--aggregate",
        metavar="PREFIX",
        help="aggregate statistics: PREFIX.md, .csv and the figure PREFIX.png, .pdf",
    )
    parser.add_argument(
        "--normalise",
        default="minmax",
        metavar="minmax|none|FILE",
        help="per-task score normalisation for --aggregate (default minmax)",
    )
    parser.add_argument(
        "--reps", type=positive_int, default=2000, help="bootstrap replications (default 2000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = parser.parse_args(argv)
    if args.normalise not in ("minmax", "none") and not Path(args.normalise).is_file():
        parser.error(f"--normalise: minmax, none or a YAML file of reference scores, not {args.normalise}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    groups = group_runs(load_runs(args.paths), args.metric, by_config=not args.merge_configs)
    written = plot_curves(
        groups, args.metric, args.out, args.smooth, args.band, args.seeds, per_task=args.per_task
    )
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
