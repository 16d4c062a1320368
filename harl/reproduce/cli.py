"""Command line of harl.reproduce.

    python -m harl.reproduce mamujoco-onpolicy                     # train the whole suite, then report
    python -m harl.reproduce mamujoco-onpolicy --only halfcheetah_2x3/happo,halfcheetah_2x3/mappo
    python -m harl.reproduce mpe --only 'simple_spread_*' --seeds 1,2,3 --jobs 2
    python -m harl.reproduce mamujoco-offpolicy --only halfcheetah_2x3 --budget 1000000
    python -m harl.reproduce mamujoco-onpolicy --report            # no training: the report only
    python -m harl.reproduce --list                                # suites, cells, budgets, paper values

Each run is `python -m harl.train +experiment=<preset> seed=<s> total_steps=<budget>
hydra.run.dir=<out>/<suite>/<task>/<algo>/seed<s> [overrides after --]` (plus
algo.save_replay_buffer=true for learners with a replay buffer, so that a continued run has its
buffer), its console output appended to stdout.log in its run dir. A run that reached its budget
is skipped; any other run dir is continued: harl started in a run dir with checkpoints/latest.pt
resumes that run, so running the same command again after an interruption (Ctrl-C, a reboot, a
kill) picks up every run where its last checkpoint left it, and a larger --budget extends
finished runs. Runs whose dir has logs but no checkpoint start over.

The report (`docs/reproduction/<suite>.md`, .csv, -curves.png/.pdf, -aggregate.*) is written
after training, from whatever runs exist (finished runs give the numbers, unfinished ones are
listed), and again by --report. Each run's record (progress.csv, config.yaml, metrics.json,
run.json, reproduce.json, posture.json: no checkpoints) is kept in
docs/reproduction/runs/<suite>/<task>/<algo>/seed<s> when the run finishes and when a report is
written; a run whose run dir is not on this machine
(trained on another one, a fresh clone) is read from its record, and is skipped by training when
its record says it finished. A report is not replaced by one that would count fewer finished runs
for a cell (runs whose dirs and records are not on this machine): the tool says so and exits
with status 1, unless --overwrite-report.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from harl.common.cli import command_name, positive_int, reserved_overrides, split_overrides
from harl.common.jobs import say
from harl.reproduce import report, runs
from harl.reproduce.suites import load_suite, select, suite_names

RESERVED = ("seed", "total_steps", "hydra.run.dir", "resume", "experiment")  # set by this tool
RECORDS = "runs"  # the runs' kept records: <docs>/runs/<suite>/<task>/<algo>/seed<s>


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return list(dict.fromkeys(seeds))


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Options before `--`, Hydra overrides for every run after it."""
    argv, overrides = split_overrides(argv)
    parser = argparse.ArgumentParser(
        prog=command_name("harl-reproduce", "harl.reproduce"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("suite", nargs="?", help=f"one of: {', '.join(suite_names())}")
    parser.add_argument("--seeds", type=seed_list, help="comma-separated seeds (default: the suite's)")
    parser.add_argument(
        "--budget",
        type=positive_int,
        help="env steps per run for every cell (default: the suite's, per algorithm)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated cells to train: task/algo, task or algo, shell wildcards "
        "allowed (the report always covers the whole suite)",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="runs at once (default: the number of cores, %(default)s here); a run "
        "uses torch_threads + n_workers cores",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results") / "reproduce",
        help="runs go to OUT/<suite>/<task>/<algo>/seed<s> (default: %(default)s)",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=Path("docs") / "reproduction",
        help="where the report is written (default: %(default)s)",
    )
    parser.add_argument(
        "--reps",
        type=positive_int,
        default=2000,
        help="bootstrap replications of the aggregate statistics (default: %(default)s)",
    )
    parser.add_argument("--report", action="store_true", help="train nothing; write the report")
    parser.add_argument(
        "--overwrite-report",
        action="store_true",
        help="write the report even where the one it replaces counts finished runs that this "
        "machine has neither the run dirs nor the records of (they would be left out)",
    )
    parser.add_argument("--no-report", action="store_true", help="train; write no report")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print each run's state and command; train nothing, write nothing",
    )
    parser.add_argument("--list", action="store_true", help="list the suites and their cells")
    args = parser.parse_args(argv)
    if not args.list and not args.suite:
        parser.error(f"name a suite ({', '.join(suite_names())}) or use --list")
    if args.report and args.no_report:
        parser.error("--report and --no-report exclude each other")
    if bad := reserved_overrides(overrides, RESERVED):
        parser.error(f"set by this tool, not as an override: {' '.join(bad)}")
    return args, overrides


def list_suites(names: list[str]) -> str:
    lines = []
    for name in names:
        suite = load_suite(name)
        lines.append(
            f"{name}: {len(suite.cells)} cells x {len(suite.seeds)} seeds "
            f"({', '.join(map(str, suite.seeds))})"
        )
        for cell in suite.cells:
            lines.append(
                f"  {cell.key:45s} {cell.budget:>12,} steps  paper {report.fmt_paper(cell)}"
                f"  (+experiment={cell.preset})"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, overrides = parse_args(argv)
    if args.list:
        print(list_suites([args.suite] if args.suite else suite_names()))
        return 0
    suite = load_suite(args.suite)
    if args.budget:
        suite = dataclasses.replace(
            suite, cells=tuple(dataclasses.replace(c, budget=args.budget) for c in suite.cells)
        )
    seeds = args.seeds or list(suite.seeds)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    chosen = select(suite.cells, only)
    out = args.out.resolve()
    records = args.docs.resolve() / RECORDS
    everything = runs.jobs_for(out, suite.name, list(suite.cells), seeds, records)
    todo = runs.jobs_for(out, suite.name, chosen, seeds, records)
    if args.dry_run:
        for job in todo:
            state = runs.current_state(job)
            print(f"{job.label}: {state.status} {state.detail}".rstrip())
            print("  " + " ".join(runs.command(job, overrides)))
        return 0
    status = 0
    docs = args.docs.resolve()
    writes_report = not args.no_report and not args.overwrite_report
    if not args.report and writes_report and (dropped := report.runs_it_would_drop(suite, everything, docs)):
        say(  # before hours of training, not only after them
            f"note: {docs / suite.name}.md counts finished runs that are not on this machine (no run "
            f"dir, no record): {'; '.join(dropped)}. It will not be replaced while they are "
            "missing (--overwrite-report replaces it anyway)"
        )
    if not args.report:
        say(f"{suite.name}: {len(chosen)} cells x {len(seeds)} seeds, runs in {out / suite.name}")
        try:
            exits = runs.train_all(todo, overrides, args.jobs)
        except KeyboardInterrupt:
            say(
                "interrupted: no new run started, and the runs that were running saved a checkpoint "
                "or finished; run the same command again to continue"
            )
            return 130
        if failed := [job.label for job, rc in exits.items() if rc not in (None, 0)]:
            say(f"{len(failed)} run(s) stopped early: {', '.join(failed)} (see their stdout.log)")
            status = 1
    if writes_report and (dropped := report.runs_it_would_drop(suite, everything, docs)):
        say(
            f"report not written: {docs / suite.name}.md counts finished runs that this machine "
            f"cannot read: {'; '.join(dropped)}. Bring their run dirs (--out) or records "
            f"({docs / RECORDS}), or pass --overwrite-report to leave them out"
        )
        return 1
    if not args.no_report:
        written = report.write_report(suite, everything, docs, argv, reps=args.reps)
        say("report: " + ", ".join(str(p) for p in written))
    return status
