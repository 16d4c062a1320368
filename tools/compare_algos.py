"""Compare algorithms on one task and budget: train each (algo, seed), then tabulate the runs.

    python tools/compare_algos.py --algos happo,hatrpo,haa2c,mappo --seeds 1,2 --steps 1000000 \\
        --out results/compare/halfcheetah_2x3 -- env=mamujoco env.scenario=HalfCheetah env.agent_conf=2x3
    python tools/compare_algos.py --report results/compare/halfcheetah_2x3   # re-read runs, print table
    python tools/compare_algos.py --algos hatd3,hasac --seeds 1,2 --steps 300000 \
        --out results/compare/offpolicy -- +experiment=mamujoco/halfcheetah_2x3/{algo}  # tuned presets

Each run is `python -m harl.train algo=<algo> seed=<s> total_steps=<steps>
hydra.run.dir=<out>/<algo>/seed<s> <overrides after -->`, its stdout/stderr in that dir's
stdout.log. A run whose progress.csv already reaches the budget (and whose last launch, if this
tool made it, exited 0) is skipped, so re-running the same command continues an interrupted
comparison; any other existing run dir is deleted and trained again from scratch (--force:
every run). The comparison's settings are kept in <out>/compare.json.

What it measures, one row per algo over its finished seeds (failed, unfinished and missing
runs are named in the notes column and left out of the numbers):
  final eval return  eval_return of the last progress.csv row that has one, mean ± std
  best eval return   the highest eval_return of the run, mean ± std
  env-steps/s        env_steps / wall_time of the last row, mean (wall_time: training incl.
                     periodic evaluation, without process start-up and the final evaluation)
  wall time per run  wall_time of the last row, mean
std is the sample standard deviation over seeds (ddof=1; none with one seed). Rows are sorted
by final eval return, best first. The table is printed and written to <out>/summary.md and
<out>/summary.csv.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harl.common.cli import reserved_overrides, split_overrides  # noqa: E402
from harl.common.jobs import error_line, fmt_duration, run_logged, run_pool, say  # noqa: E402

MANIFEST = "compare.json"
STATUS = "compare_status.json"  # written into a run dir by this tool after each launch
LOG = "stdout.log"
RESERVED = ("algo", "seed", "total_steps", "hydra.run.dir", "resume")  # set by this tool


# ----------------------------------------------------------------------------- reading runs
@dataclass
class Run:
    """What one (algo, seed) run dir holds. status: finished | failed | incomplete | missing."""

    algo: str
    seed: int
    path: Path
    status: str
    detail: str = ""
    task: str | None = None
    env_steps: float = math.nan
    wall_time: float = math.nan
    final_eval: float = math.nan
    best_eval: float = math.nan

    @property
    def fps(self) -> float:
        return self.env_steps / self.wall_time if self.wall_time > 0 else math.nan


def run_dir(out: Path, algo: str, seed: int) -> Path:
    return out / algo / f"seed{seed}"


def read_progress(path: Path) -> pd.DataFrame | None:
    """progress.csv of a run dir, or None when absent, empty or unreadable."""
    try:
        progress = pd.read_csv(path / "progress.csv")
    except (FileNotFoundError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return None
    return progress if "env_steps" in progress and len(progress) else None


def read_config(path: Path) -> dict:
    try:
        return yaml.safe_load((path / "config.yaml").read_text()) or {}
    except (FileNotFoundError, yaml.YAMLError):
        return {}


def task_of(config: dict) -> str | None:
    env = config.get("env") or {}
    return f"{env['name']}/{env['task']}" if "name" in env and "task" in env else None


def read_status(path: Path) -> dict | None:
    try:
        return json.loads((path / STATUS).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def inspect_run(out: Path, algo: str, seed: int, steps: int | None) -> Run:
    """Classify a run dir; `steps` None means the budget in the run's own config.yaml."""
    path = run_dir(out, algo, seed)
    if not path.is_dir():
        return Run(algo, seed, path, "missing", "not run")
    config, progress, launch = read_config(path), read_progress(path), read_status(path)
    run = Run(algo, seed, path, "incomplete", task=task_of(config))
    budget = steps if steps is not None else config.get("total_steps")
    if progress is not None:
        last = progress.iloc[-1]
        run.env_steps = float(last["env_steps"])
        run.wall_time = float(last.get("wall_time", math.nan))
        evals = progress["eval_return"].dropna() if "eval_return" in progress else pd.Series(dtype=float)
        if len(evals):
            run.final_eval, run.best_eval = float(evals.iloc[-1]), float(evals.max())
    if launch is not None and launch.get("returncode") != 0:
        run.status, run.detail = "failed", f"exit {launch.get('returncode')}"
    elif budget is not None and run.env_steps >= budget:
        run.status = "finished"
    else:
        done = 0 if math.isnan(run.env_steps) else int(run.env_steps)
        run.detail = f"{done:,}/{budget:,} steps" if budget is not None else "no budget known"
    return run


def is_finished(out: Path, algo: str, seed: int, steps: int) -> bool:
    return inspect_run(out, algo, seed, steps).status == "finished"


# ----------------------------------------------------------------------------- summary
def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1) over seeds; std is NaN with fewer than two values."""
    s = pd.Series(values, dtype=float).dropna()
    return (float(s.mean()), float(s.std(ddof=1))) if len(s) else (math.nan, math.nan)


def summarize(runs: list[Run]) -> pd.DataFrame:
    """One row per algo (finished seeds only), sorted by final eval mean, best first."""
    rows = []
    for algo in dict.fromkeys(r.algo for r in runs):
        mine = [r for r in runs if r.algo == algo]
        done = [r for r in mine if r.status == "finished"]
        final, final_std = mean_std([r.final_eval for r in done])
        best, best_std = mean_std([r.best_eval for r in done])
        rows.append(
            {
                "algo": algo,
                "seeds_finished": len(done),
                "seeds": len(mine),
                "final_eval_mean": final,
                "final_eval_std": final_std,
                "best_eval_mean": best,
                "best_eval_std": best_std,
                "env_steps_per_s": mean_std([r.fps for r in done])[0],
                "wall_time_s": mean_std([r.wall_time for r in done])[0],
                "notes": ", ".join(
                    f"seed{r.seed} {r.status}" + (f" ({r.detail})" if r.detail else "")
                    for r in mine
                    if r.status != "finished"
                ),
            }
        )
    table = pd.DataFrame(
        rows,
        columns=[
            "algo",
            "seeds_finished",
            "seeds",
            "final_eval_mean",
            "final_eval_std",
            "best_eval_mean",
            "best_eval_std",
            "env_steps_per_s",
            "wall_time_s",
            "notes",
        ],
    )
    return table.sort_values(
        ["final_eval_mean", "algo"], ascending=[False, True], na_position="last", kind="stable"
    ).reset_index(drop=True)


def fmt_pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def markdown_table(summary: pd.DataFrame) -> str:
    lines = [
        "| algo | seeds finished | final eval return | best eval return | env-steps/s | "
        + "wall time per run | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples():
        fps = "—" if math.isnan(r.env_steps_per_s) else f"{r.env_steps_per_s:,.0f}"
        lines.append(
            f"| {r.algo} | {r.seeds_finished}/{r.seeds} "
            f"| {fmt_pm(r.final_eval_mean, r.final_eval_std)} "
            f"| {fmt_pm(r.best_eval_mean, r.best_eval_std)} | {fps} "
            f"| {fmt_duration(r.wall_time_s)} | {r.notes} |"
        )
    return "\n".join(lines)


def header(runs: list[Run], steps: int | None, seeds: list[int], overrides: list[str]) -> str:
    tasks = sorted({r.task for r in runs if r.task})
    task = ", ".join(tasks) if tasks else "unknown (no run wrote config.yaml)"
    budget = f"{steps:,} env steps per run" if steps is not None else "each run's total_steps"
    lines = [f"Task: {task} | budget: {budget} | seeds: {', '.join(map(str, seeds))}"]
    if overrides:
        lines.append(f"Overrides: {' '.join(overrides)}")
    lines.append(
        "final/best eval return: mean ± std over finished seeds (std ddof=1); "
        "env-steps/s and wall time: mean per run"
    )
    return "\n".join(lines)


def report(out: Path, algos: list[str], seeds: list[int], steps: int | None, overrides: list[str]) -> str:
    """Read every (algo, seed) run dir, write summary.md/summary.csv, return the text."""
    runs = [inspect_run(out, a, s, steps) for a in algos for s in seeds]
    summary = summarize(runs)
    text = header(runs, steps, seeds, overrides) + "\n\n" + markdown_table(summary) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text)
    summary.to_csv(out / "summary.csv", index=False)
    return text


# ----------------------------------------------------------------------------- manifest
def discover(out: Path) -> tuple[list[str], list[int]]:
    """Algos and seeds from existing <out>/<algo>/seed<N> dirs."""
    algos, seeds = [], set()
    for d in sorted(p for p in out.glob("*/seed*") if p.is_dir()):
        if m := re.fullmatch(r"seed(-?\d+)", d.name):
            algos.append(d.parent.name)
            seeds.add(int(m.group(1)))
    return list(dict.fromkeys(algos)), sorted(seeds)


def load_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def merge_manifest(
    out: Path, algos: list[str], seeds: list[int], steps: int, overrides: list[str], force: bool
) -> dict:
    """Record this comparison in <out>/compare.json; refuse to mix budgets or overrides
    with finished runs of an earlier launch (unless --force retrains everything)."""
    old = load_manifest(out)
    if old and (old.get("steps") != steps or old.get("overrides") != overrides):
        if force:
            old = None  # a new comparison replaces the old one
        else:
            raise SystemExit(
                f"{out} holds a comparison with --steps {old.get('steps')} and overrides "
                f"{' '.join(old.get('overrides', [])) or '(none)'}; use another --out, the same "
                "settings, or --force to retrain every run"
            )
    merged = {
        "algos": list(dict.fromkeys((old or {}).get("algos", []) + algos)),
        "seeds": sorted(set((old or {}).get("seeds", [])) | set(seeds)),
        "steps": steps,
        "overrides": overrides,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(merged, indent=2) + "\n")
    return merged


# ----------------------------------------------------------------------------- launching
def hydra_value(value: str) -> str:
    """Quote a value for a Hydra override when it has characters the grammar would misread."""
    return value if re.fullmatch(r"[\w./+:-]+", value) else "'" + value.replace("'", "\\'") + "'"


def build_command(algo: str, seed: int, steps: int, path: Path, overrides: list[str]) -> list[str]:
    """`{algo}` in an override is replaced by the run's algorithm (e.g. to pick each
    algorithm's tuned preset: +experiment=mamujoco/halfcheetah_2x3/{algo})."""
    return [
        sys.executable,
        "-m",
        "harl.train",
        f"algo={algo}",
        f"seed={seed}",
        f"total_steps={steps}",
        f"hydra.run.dir={hydra_value(str(path.resolve()))}",
        *(o.replace("{algo}", algo) for o in overrides),
    ]


def launch(cmd: list[str], path: Path, label: str) -> int:
    """Train one run into a fresh `path`; returns the exit status (also saved in the run dir)."""
    if path.exists():
        shutil.rmtree(path)  # a stale or unfinished run: harl would append to its progress.csv
    path.mkdir(parents=True)
    say(f"{label}: started, log {path / LOG}")
    rc, wall = run_logged(cmd, path / LOG)
    (path / STATUS).write_text(
        json.dumps({"returncode": rc, "wall_s": round(wall, 2), "command": cmd}, indent=2) + "\n"
    )
    outcome = "finished" if rc == 0 else "FAILED"
    why = "" if rc == 0 else f": {error_line(path / LOG)}"
    say(f"{label}: {outcome} in {fmt_duration(wall)}, exit status {rc}{why}")
    return rc


def run_all(
    out: Path,
    algos: list[str],
    seeds: list[int],
    steps: int,
    overrides: list[str],
    jobs: int = 1,
    force: bool = False,
) -> dict[tuple[str, int], int | None]:
    """Train every (algo, seed) not already finished; exit status per run (None: skipped)."""
    pairs = [(a, s) for a in algos for s in seeds]
    results: dict[tuple[str, int], int | None] = {}
    todo = []
    for k, (algo, seed) in enumerate(pairs, 1):
        label = f"[{k}/{len(pairs)}] {algo} seed {seed}"
        if not force and is_finished(out, algo, seed, steps):
            say(f"{label}: already finished ({steps:,} env steps), skipped (--force to retrain)")
            results[(algo, seed)] = None
        else:
            todo.append((algo, seed, label))

    def one(item: tuple[str, int, str]) -> int:
        algo, seed, label = item
        path = run_dir(out, algo, seed)
        return launch(build_command(algo, seed, steps, path, overrides), path, label)

    for (algo, seed, _), rc in zip(todo, run_pool(todo, one, jobs)):
        results[(algo, seed)] = rc
    return results


# ----------------------------------------------------------------------------- CLI
def split_list(text: str, kind: type = str) -> list:
    return [kind(x.strip()) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Options before `--`, Hydra overrides for every run after it."""
    argv, overrides = split_overrides(argv)
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s (--algos A,B --steps N --out DIR [options] [-- overrides...] | --report DIR)",
    )
    parser.add_argument("--algos", help="comma-separated algo names (conf/algo/*.yaml)")
    parser.add_argument("--seeds", default="1", help="comma-separated seeds (default: 1)")
    parser.add_argument("--steps", type=int, help="total_steps (env steps) of every run")
    parser.add_argument("--out", help="comparison dir; runs go to <out>/<algo>/seed<s>")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once (default 1: sequential). Parallel runs share the CPU: "
        "on a 2-core machine they slow each other down and distort the "
        "env-steps/s and wall-time columns",
    )
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    parser.add_argument(
        "--report", metavar="DIR", help="train nothing: re-read the runs under DIR and print the table"
    )
    args = parser.parse_args(argv)
    if args.report:
        if overrides or args.out:
            parser.error("--report takes only the comparison dir")
        return args, overrides
    if not (args.algos and args.steps and args.out):
        parser.error("--algos, --steps and --out are required (or --report DIR)")
    if args.steps <= 0 or args.jobs <= 0:
        parser.error("--steps and --jobs must be positive")
    if bad := reserved_overrides(overrides, RESERVED):
        parser.error(f"set by this tool, not as an override: {' '.join(bad)}")
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    if args.report:
        out = Path(args.report).resolve()
        manifest = load_manifest(out) or {}  # without one (runs made by hand): what is there
        algos, seeds = (manifest["algos"], manifest["seeds"]) if manifest else discover(out)
        if not algos:
            raise SystemExit(f"no runs under {out} (expected <algo>/seed<N> dirs)")
        print(report(out, algos, seeds, manifest.get("steps"), manifest.get("overrides", [])))
        return 0
    out = Path(args.out).resolve()
    algos, seeds = split_list(args.algos), split_list(args.seeds, int)
    manifest = merge_manifest(out, algos, seeds, args.steps, overrides, args.force)
    try:
        statuses = run_all(out, algos, seeds, args.steps, overrides, args.jobs, args.force)
    except KeyboardInterrupt:
        say("interrupted; run the same command again to continue (finished runs are skipped)")
        return 130
    print()
    print(report(out, manifest["algos"], manifest["seeds"], args.steps, overrides))
    print(f"wrote {out / 'summary.md'} and {out / 'summary.csv'}")
    return 1 if any(rc not in (None, 0) for rc in statuses.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
