"""The report of a reproduction suite: `docs/reproduction/<suite>.md` with our numbers beside the
paper's, learning curves with the paper's final values marked, and the aggregate statistics."""

from __future__ import annotations

import math
import shlex
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harl import plot
from harl.common.jobs import fmt_duration
from harl.logging.marl_eval import ABSOLUTE, METRICS_FILE
from harl.reproduce.runs import (
    LAUNCHES,
    RECORD_FILES,
    Job,
    RunState,
    inspect,
    keep_record,
    read_json,
    readable,
)
from harl.reproduce.suites import Cell, Suite


@dataclass
class CellResult:
    """A cell's runs: every seed's state, and the finished runs the numbers are computed from."""

    cell: Cell
    states: list[RunState]
    runs: list[plot.Run] = field(default_factory=list)  # finished runs
    unfinished: list[plot.Run] = field(default_factory=list)  # started, not finished

    def finals(self, metric: str) -> np.ndarray:
        return plot.final_values(self.runs, metric)

    def bests(self, metric: str) -> np.ndarray:
        return plot.best_values(self.runs, metric)

    def absolutes(self) -> np.ndarray:
        return np.array([v for run in self.runs if (v := absolute_return(run.path)) is not None])

    def wall_times(self) -> np.ndarray:
        return np.array([s.wall_time for s in self.states if s.status == "finished"], dtype=float)


def absolute_return(path: Path) -> float | None:
    """Mean return of the best checkpoint re-evaluated at the end of the run (metrics.json)."""
    node = read_json(path / METRICS_FILE)
    while isinstance(node, dict) and ABSOLUTE not in node and len(node) == 1:
        node = next(iter(node.values()))  # env -> task -> algo -> seed
    absolute = node.get(ABSOLUTE) if isinstance(node, dict) else None
    returns = absolute.get("return") if isinstance(absolute, dict) else None
    return float(np.mean(returns)) if returns else None


def collect(jobs: list[Job]) -> list[CellResult]:
    """One CellResult per cell, in the suite's order."""
    results: dict[Cell, CellResult] = {}
    for job in jobs:
        state = inspect(job)
        result = results.setdefault(job.cell, CellResult(job.cell, []))
        result.states.append(state)
        if state.status != "missing" and (run := _load(job.path)) is not None:
            (result.runs if state.status == "finished" else result.unfinished).append(run)
    return list(results.values())


def _load(path: Path) -> plot.Run | None:
    if not ((path / "progress.csv").is_file() and (path / "config.yaml").is_file()):
        return None
    return plot.load_run(path)


# ----------------------------------------------------------------------------- formatting
def paper_mid(cell: Cell) -> float | None:
    return None if cell.paper_value is None else sum(cell.paper_value) / 2


def fmt_paper(cell: Cell) -> str:
    if cell.paper_value is None:
        return "—"
    low, high = (f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:g}" for v in cell.paper_value)
    return f"≈ {low}" if low == high else f"≈ {low} to {high}"


def vs_paper(ours: float, cell: Cell) -> str:
    """ours / paper for positive paper values; ours - paper for negative ones (a ratio of two
    negative returns reads backwards)."""
    mid = paper_mid(cell)
    if mid is None or math.isnan(ours):
        return "—"
    if mid > 0:
        return f"{ours / mid:.2f}x"
    return f"{ours - mid:+.1f}"


def fmt_ci(values: np.ndarray) -> str:
    mean, half = plot.mean_and_ci(values) if len(values) else (math.nan, math.nan)
    return plot.fmt_mean_ci(float(mean), float(half))


def fmt_steps(steps: float) -> str:
    if math.isnan(steps):
        return "—"
    return f"{steps / 1e6:g}M" if steps >= 1e6 and steps % 1e5 == 0 else f"{steps:,.0f}"


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell (MaMuJoCo task names may hold `|`)."""
    return text.replace("|", "\\|")


# ----------------------------------------------------------------------------- tables
def results_rows(results: list[CellResult], metric: str) -> list[dict]:
    rows = []
    for r in results:
        finals, bests, absolutes = r.finals(metric), r.bests(metric), r.absolutes()
        final_mean = float(np.mean(finals)) if len(finals) else math.nan
        walls = r.wall_times()
        fps = [s.env_steps / s.wall_time for s in r.states if s.status == "finished" and s.wall_time > 0]
        final_half = plot.mean_and_ci(finals)[1] if len(finals) else math.nan
        rows.append(
            {
                "task": r.cell.task,
                "title": r.cell.title,
                "algo": r.cell.algo,
                "seeds_finished": len(r.runs),
                "seeds": len(r.states),
                "budget": r.cell.budget,
                "final_mean": final_mean,
                "final_ci95": float(final_half),
                "final": fmt_ci(finals),
                "best": fmt_ci(bests),
                "best_checkpoint": fmt_ci(absolutes),
                "paper_low": None if r.cell.paper_value is None else r.cell.paper_value[0],
                "paper_high": None if r.cell.paper_value is None else r.cell.paper_value[1],
                "paper": fmt_paper(r.cell),
                "vs_paper": vs_paper(final_mean, r.cell),
                "wall_time_s": float(np.mean(walls)) if len(walls) else math.nan,
                "env_steps_per_s": float(np.mean(fps)) if fps else math.nan,
            }
        )
    return rows


def results_markdown(rows: list[dict]) -> str:
    lines = [
        "| task | algo | seeds done | budget | final | best | best checkpoint | paper | vs paper "
        "| wall time per run | env steps/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        fps = "—" if math.isnan(row["env_steps_per_s"]) else f"{row['env_steps_per_s']:,.0f}"
        lines.append(
            f"| {md_cell(row['title'])} | {row['algo']} | {row['seeds_finished']}/{row['seeds']} "
            f"| {fmt_steps(row['budget'])} | {row['final']} | {row['best']} "
            f"| {row['best_checkpoint']} | {row['paper']} | {row['vs_paper']} "
            f"| {fmt_duration(row['wall_time_s'])} | {fps} |"
        )
    return "\n".join(lines)


def ordering(results: list[CellResult], metric: str) -> list[dict]:
    """Per task: the algorithms ranked by the paper and by our final mean, and in how many of the
    pairs the paper separates (both with a value here) our order agrees."""
    rows = []
    for task in dict.fromkeys(r.cell.task for r in results):
        mine = [r for r in results if r.cell.task == task]
        ours = {r.cell.algo: float(np.mean(f)) for r in mine if len(f := r.finals(metric))}
        paper = {r.cell.algo: mid for r in mine if (mid := paper_mid(r.cell)) is not None}
        both = [a for a in paper if a in ours]
        pairs = [(x, y) for x, y in combinations(both, 2) if paper[x] != paper[y]]
        agree = sum((paper[x] > paper[y]) == (ours[x] > ours[y]) for x, y in pairs)
        rows.append(
            {
                "task": mine[0].cell.title,
                "paper": rank_text(paper),
                "ours": rank_text(ours),
                "pairs": len(pairs),
                "agree": agree,
            }
        )
    return rows


def rank_text(values: dict[str, float]) -> str:
    if not values:
        return "—"
    ranked = sorted(values.items(), key=lambda kv: -kv[1])
    text = ranked[0][0]
    for (_, prev), (algo, value) in zip(ranked, ranked[1:]):
        text += (" = " if value == prev else " > ") + algo
    return text


def ordering_markdown(rows: list[dict]) -> str:
    lines = [
        "| task | paper's order | our order (final mean) | pairs in the paper's order |",
        "|---|---|---|---|",
    ]
    for row in rows:
        agree = f"{row['agree']} of {row['pairs']}" if row["pairs"] else "—"
        lines.append(f"| {md_cell(row['task'])} | {row['paper']} | {row['ours']} | {agree} |")
    return "\n".join(lines)


def postures(results: list[CellResult]) -> dict[Path, str]:
    """Run dir -> its latest checkpoint's share of upside-down steps (`harl.posture`), for the
    runs of planar MaMuJoCo robots; a run it cannot measure says why."""
    from harl.posture import run_posture

    shown: dict[Path, str] = {}
    for r in results:
        for s in r.states:
            if s.status == "missing":
                continue
            try:
                measured = run_posture(s.job.path)
            except Exception as exc:  # a report lists what it could not measure and goes on
                shown[s.job.path] = f"not measured ({type(exc).__name__})"
                continue
            if measured is not None:
                shown[s.job.path] = f"{measured['upside_down']:.0%}"
    return shown


def runs_markdown(results: list[CellResult], metric: str, upside_down: dict[Path, str] | None = None) -> str:
    """Every run's row; an "upside down" column where `upside_down` (default: `postures`) has any."""
    if upside_down is None:
        upside_down = postures(results)
    extra = " upside down |" if upside_down else ""
    lines = [
        "| task | algo | seed | status | env steps | final | best | best checkpoint | wall time "
        "| trained on |" + extra,
        "|---|---|---|---|---|---|---|---|---|---|" + "---|" * bool(upside_down),
    ]
    for r in results:
        loaded = {run.path: run for run in r.runs + r.unfinished}
        for s in r.states:
            run = loaded.get(s.job.path)
            final = plot.final_values([run], metric) if run else np.array([])
            best = plot.best_values([run], metric) if run else np.array([])
            absolute = absolute_return(s.job.path) if s.status == "finished" else None
            where = "; ".join(trained_on(s.job.path)) or "—"
            lines.append(
                f"| {md_cell(r.cell.title)} | {r.cell.algo} | {s.job.seed} | {s.status} "
                f"| {fmt_steps(s.env_steps)} | {fmt_ci(final)} | {fmt_ci(best)} "
                f"| {'—' if absolute is None else plot.fmt_number(absolute)} "
                f"| {fmt_duration(s.wall_time)} | {md_cell(where)} |"
                + (f" {upside_down.get(s.job.path, '—')} |" if upside_down else "")
            )
    return "\n".join(lines)


def trained_on(path: Path, with_commit: bool = True) -> list[str]:
    """The machine(s) a run was trained on, in launch order: from harl.reproduce's launch
    records (with the harl commit of each launch), else the host in run.json."""
    launches = read_json(path / LAUNCHES).get("launches") or []
    machines = dict.fromkeys(
        f"{e.get('host')} ({e.get('cpu')}, {e.get('cores')} cores, torch {e.get('torch')}"
        + (f", harl {e.get('harl_commit')})" if with_commit else ")")
        for e in launches
        if e.get("host")
    )
    if machines:
        return list(machines)
    host = read_json(path / "run.json").get("host")
    return [str(host)] if host else []


def harl_commits(path: Path) -> list[str]:
    """The harl commits a run's launches started with, in launch order."""
    launches = read_json(path / LAUNCHES).get("launches") or []
    return list(dict.fromkeys(str(e["harl_commit"]) for e in launches if e.get("harl_commit")))


# ----------------------------------------------------------------------------- figures
def plot_curves(results: list[CellResult], metric: str, out: Path) -> list[Path]:
    """One panel per task with runs: each algorithm's mean over its finished seeds (thin lines: the
    seeds; band: as harl.plot's `auto`) or, while none is finished, over its unfinished ones
    (labelled so); the paper's final value as a star at the budget."""
    tasks = list(dict.fromkeys(r.cell.task for r in results if r.runs or r.unfinished))
    styles = plot.algo_styles([r.cell.algo for r in results])
    columns = min(3, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(tasks) :]:
        ax.set_visible(False)
    for ax, task in zip(axes.flat, tasks):
        mine = [r for r in results if r.cell.task == task]
        for r in mine:
            style = styles[r.cell.algo]
            runs = r.runs or r.unfinished
            if runs:
                label = r.cell.algo + ("" if r.runs else " (unfinished)")
                plot.plot_curve(ax, runs, metric, 1, style, label, band="auto", seeds=True)
            else:  # no curve: a legend entry still names the colour of its paper star
                ax.plot(
                    [], [], color=style.color, linestyle=style.linestyle, label=f"{r.cell.algo} (no runs)"
                )
            if (mid := paper_mid(r.cell)) is not None:
                low, high = r.cell.paper_value or (mid, mid)
                ax.errorbar(
                    [r.cell.budget],
                    [mid],
                    yerr=[[mid - low], [high - mid]],
                    marker="*",
                    markersize=11,
                    color=style.color,
                    capsize=3,
                    linestyle="none",
                )
        ax.set(
            title=mine[0].cell.title,
            xlabel="env steps",
            ylabel=metric.replace("_", " "),
            xlim=(0, 1.04 * max(r.cell.budget for r in mine)),
        )
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    fig.suptitle(
        f"mean over finished seeds; thin lines: seeds; band: their min-max below "
        f"{plot.FEW_SEEDS} seeds, else the 95 % t CI; stars: the paper's final values",
        fontsize="small",
    )
    fig.tight_layout()
    return plot.save_figure(fig, out)


def aggregate(results: list[CellResult], metric: str, prefix: Path, reps: int) -> tuple[str, list[Path]]:
    """rliable aggregates over the tasks where every algorithm has finished runs."""
    groups: plot.Groups = {}
    for r in results:
        if r.runs:
            groups.setdefault(r.cell.task, {})[r.cell.algo] = r.runs
    algos = {algo for per_task in groups.values() for algo in per_task}
    if len(algos) < 2:
        return "Needs finished runs of at least two algorithms.", []
    try:
        result = plot.aggregate(groups, metric, "minmax", reps=reps, seed=0)
    except SystemExit as why:  # e.g. no task on which every algorithm has finished runs
        return f"Not computed: {why}", []
    return plot.aggregate_markdown(result, metric, reps), plot.write_aggregate(result, metric, reps, prefix)


# ----------------------------------------------------------------------------- the report
def runs_it_would_drop(suite: Suite, jobs: list[Job], docs: Path) -> list[str]:
    """Per cell, where the report now in `docs` counts more finished runs than this machine can
    read (from run dirs or kept records): a new report would leave those runs out."""
    try:
        before = pd.read_csv(docs / f"{suite.name}.csv", dtype={"task": str, "algo": str})
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return []
    if not {"task", "title", "algo", "seeds_finished"} <= set(before.columns):
        return []
    here = Counter((j.cell.task, j.cell.algo) for j in jobs if inspect(readable(j)).status == "finished")
    return [
        f"{row.title} {row.algo}: {int(row.seeds_finished)} in the report, {here[(row.task, row.algo)]} here"
        for row in before.itertuples(index=False)
        if int(row.seeds_finished) > here[(row.task, row.algo)]
    ]


def write_report(suite: Suite, jobs: list[Job], docs: Path, argv: list[str], reps: int = 2000) -> list[Path]:
    """`docs/<suite>.md`, `<suite>.csv`, `<suite>-curves.{png,pdf}` and `<suite>-aggregate.*`;
    returns them."""
    docs.mkdir(parents=True, exist_ok=True)
    for stale in [*docs.glob(f"{suite.name}-curves.*"), *docs.glob(f"{suite.name}-aggregate.*")]:
        stale.unlink()  # figures of an earlier report that this one may not draw again
    jobs = [readable(job) for job in jobs]  # runs trained elsewhere: from their kept records
    results = collect(jobs)
    metric = suite.metric
    rows = results_rows(results, metric)
    table = docs / f"{suite.name}.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    written = [table]
    have_runs = any(r.runs or r.unfinished for r in results)  # else no curves to draw
    if have_runs:
        written += plot_curves(results, metric, docs / f"{suite.name}-curves.png")
    aggregate_text, aggregate_files = aggregate(results, metric, docs / f"{suite.name}-aggregate", reps)
    written += aggregate_files
    budgets = sorted({cell.budget for cell in suite.cells} | {j.cell.budget for j in jobs})
    seeds = sorted({j.seed for j in jobs})
    finished = sum(s.status == "finished" for r in results for s in r.states)
    trained = [s.job.path for r in results for s in r.states if s.status != "missing"]
    machines = list(dict.fromkeys(m for path in trained for m in trained_on(path, with_commit=False)))
    commits = list(dict.fromkeys(c for path in trained for c in harl_commits(path)))
    lines = [
        f"# Reproduction: {suite.name}",
        "",
        suite.description,
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `python -m harl.reproduce "
        f"{shlex.join(argv)}`; {finished} of {len(jobs)} runs finished. "
        "Run it again to continue the unfinished runs and regenerate this page.",
        "",
        f"- **Paper values**: {suite.paper}",
        f"- **Budget**: {', '.join(f'{b:,}' for b in budgets)} env steps per run; **seeds**: "
        f"{', '.join(map(str, seeds))}; **metric**: `{metric}` (the mean return of the run's "
        "deterministic evaluation episodes at each evaluation).",
        f"- **Machines**: {'; '.join(machines) if machines else '—'}; **harl commits**: "
        f"{', '.join(commits) if commits else '—'} (each run's launches: the table of runs below).",
        *(f"- {note}" for note in suite.notes),
        "",
        "## Results",
        "",
        f"Mean ± {plot.CONFIDENCE:.0%} t-based CI half-width over finished seeds (none with one seed). "
        "**final**: each run's last evaluation; **best**: its highest evaluation; **best checkpoint**: "
        "`best.pt` re-evaluated at the end of the run on 10 x eval_episodes episodes (metrics.json); "
        "**vs paper**: final mean / the paper's value (a range: its midpoint), or final mean - the "
        "paper's value where the paper's value is negative; **wall time**: training time per run "
        "(progress.csv, with periodic evaluations); **env steps/s**: budget / wall time.",
        "",
        results_markdown(rows),
        "",
    ]
    started = [
        f"{md_cell(r.cell.title)} {r.cell.algo} seed {s.job.seed} ({s.status}, {s.detail})"
        for r in results
        for s in r.states
        if s.status in ("unfinished", "failed")
    ]
    missing = sum(s.status == "missing" for r in results for s in r.states)
    if started or missing:
        lines += [
            "Not finished: " + "; ".join(started + [f"{missing} run(s) not started"] * bool(missing)) + ".",
            "",
        ]
    lines += [
        "## Orderings",
        "",
        "Per task, the algorithms ranked by the paper's value and by our final mean; the last "
        "column counts the pairs the paper separates that we rank the same way.",
        "",
        ordering_markdown(ordering(results, metric)),
        "",
    ]
    if have_runs:
        lines += ["## Learning curves", "", f"![learning curves]({suite.name}-curves.png)", ""]
    lines += ["## Aggregate statistics", "", aggregate_text, ""]
    if aggregate_files:
        lines += [f"![aggregate]({suite.name}-aggregate.png)", ""]
    upside_down = postures(results)
    lines += ["## Runs", ""]
    if upside_down:
        lines += [
            "**upside down**: the share of steps the robot's torso spends upside down in 3 "
            "deterministic episodes of the run's latest checkpoint (`python -m harl.posture`). "
            "A HalfCheetah on its back is a known poor local optimum: such a run's return is a "
            "fraction of an upright one's.",
            "",
        ]
    lines += [runs_markdown(results, metric, upside_down), ""]
    elsewhere = sum(job.from_record for job in jobs)
    kept = [job for job in jobs if keep_record(job)]  # after postures: their posture.json too
    if kept or elsewhere:
        lines += [
            f"Each run's record ({', '.join(RECORD_FILES)}; no checkpoints) is kept in `runs/`, "
            "beside this page, so that the report can be regenerated on another machine. "
            + (
                f"{elsewhere} run(s) above were read from their records: their run directories "
                "(with checkpoints) are not on the machine that wrote this page."
                if elsewhere
                else ""
            ),
            "",
        ]
    page = docs / f"{suite.name}.md"
    page.write_text("\n".join(lines))
    return [page, *written]
