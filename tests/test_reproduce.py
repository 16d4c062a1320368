"""harl.reproduce: suites load and validate, cells select, the report's numbers on hand-built run
dirs, and the real command end to end (train, skip finished runs, continue runs to a larger
budget, a failing run)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from harl.reproduce import cli, report, runs, suites
from harl.reproduce.suites import Cell, Suite
from tests.conftest import TINY as CONFTEST_TINY

REPO = Path(__file__).resolve().parents[1]
NAN = math.nan


# ----------------------------------------------------------------------------- suites
@pytest.mark.parametrize("name", suites.suite_names())
def test_every_shipped_suite_loads_and_names_existing_presets(name):
    suite = suites.load_suite(name)
    assert suite.cells and suite.seeds
    for cell in suite.cells:
        assert (REPO / "conf" / "experiment" / f"{cell.preset}.yaml").is_file()
        assert cell.algo in cell.preset


def test_the_issues_suites_exist_with_the_papers_budgets():
    assert {"mamujoco-onpolicy", "mamujoco-offpolicy", "mpe"} <= set(suites.suite_names())
    onpolicy = {c.key: c for c in suites.load_suite("mamujoco-onpolicy").cells}
    assert onpolicy["halfcheetah_2x3/happo"].budget == 10_000_000
    assert onpolicy["halfcheetah_2x3/happo"].paper_value == (7000.0, 7000.0)
    assert onpolicy["hopper_3x1/haa2c"].paper_value == (1800.0, 2000.0)
    mpe = {c.key: c for c in suites.load_suite("mpe").cells}
    assert mpe["simple_spread_continuous/hatd3"].budget == 5_000_000  # budget_by_algo
    assert mpe["simple_spread_continuous/happo"].budget == 10_000_000
    assert mpe["simple_speaker_listener_discrete/haa2c"].paper_value is None


def write_suite(folder: Path, name: str, body: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(body))


GOOD = {
    "description": "d",
    "budget": 1000,
    "seeds": [1, 2],
    "tasks": {
        "spread": {
            "preset": "mpe/simple_spread_continuous/{algo}",
            "algos": ["happo", "mappo"],
            "paper_values": {"happo": -60, "mappo": [-70, -64]},
        }
    },
}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"budgets": 5}, "unknown key(s) budgets"),
        ({"budget": 0}, "budget must be a positive integer"),
        ({"seeds": []}, "no seeds"),
        (
            {"tasks": {"spread": {**GOOD["tasks"]["spread"], "algos": ["happo", "mappo", "qmix"]}}},
            "no preset conf/experiment/mpe/simple_spread_continuous/qmix.yaml",
        ),
        (
            {"tasks": {"spread": {**GOOD["tasks"]["spread"], "paper_values": {"hasac": 1}}}},
            "names algorithms it does not run",
        ),
        (
            {"tasks": {"spread": {**GOOD["tasks"]["spread"], "paper_values": {"happo": [3, 1]}}}},
            "must be a number or a [low, high] range",
        ),
    ],
)
def test_bad_suites_are_refused_naming_the_problem(tmp_path, monkeypatch, change, message):
    monkeypatch.setattr(suites, "SUITES_DIR", tmp_path)
    write_suite(tmp_path, "bad", {**GOOD, **change})
    with pytest.raises(SystemExit, match=re.escape(message)):
        suites.load_suite("bad")


def test_unknown_suite_names_the_valid_ones():
    with pytest.raises(SystemExit, match="unknown suite 'mujoco'; valid suites: mamujoco-offpolicy"):
        suites.load_suite("mujoco")


def test_select_by_cell_task_algo_and_wildcards():
    cells = suites.load_suite("mamujoco-onpolicy").cells
    keys = lambda patterns: [c.key for c in suites.select(cells, patterns)]  # noqa: E731
    assert keys(["halfcheetah_2x3/happo"]) == ["halfcheetah_2x3/happo"]
    assert keys(["humanoid_17x1"]) == ["humanoid_17x1/happo", "humanoid_17x1/mappo"]
    assert len(keys(["haa2c"])) == 5
    assert keys(["walker2d_*/mappo"]) == ["walker2d_2x3/mappo", "walker2d_6x1/mappo"]
    assert len(keys([])) == len(cells)
    with pytest.raises(SystemExit, match="matches none of the suite's cells: halfcheetah_2x3/happo"):
        suites.select(cells, ["cheetah"])


def test_jobs_are_seed_major_and_laid_out_by_suite_task_algo_seed(tmp_path):
    cells = suites.select(
        suites.load_suite("mamujoco-onpolicy").cells, ["halfcheetah_2x3/happo", "halfcheetah_2x3/mappo"]
    )
    jobs = runs.jobs_for(tmp_path, "s", cells, [1, 2])
    assert [(j.cell.algo, j.seed) for j in jobs] == [("happo", 1), ("mappo", 1), ("happo", 2), ("mappo", 2)]
    assert jobs[1].path == tmp_path / "s" / "halfcheetah_2x3" / "mappo" / "seed1"
    cmd = runs.command(jobs[1], ["n_envs=2"])
    assert cmd[1:] == [
        "-m",
        "harl.train",
        "+experiment=mamujoco/halfcheetah_2x3/mappo",
        "seed=1",
        "total_steps=10000000",
        f"hydra.run.dir={jobs[1].path}",
        "n_envs=2",
    ]


@pytest.mark.parametrize("suite", ["mamujoco-offpolicy", "mpe"])
def test_runs_with_a_replay_buffer_keep_it_in_their_checkpoints(tmp_path, suite):
    """An interrupted off-policy (or QMIX) run continues with the buffer it had, not an empty one."""
    for job in runs.jobs_for(tmp_path, "s", suites.load_suite(suite).cells, [1]):
        cmd = runs.command(job, ["algo.save_replay_buffer=false"])  # the command line still wins
        keeps_replay = job.cell.algo not in ("happo", "hatrpo", "haa2c", "mappo")
        assert ("algo.save_replay_buffer=true" in cmd) == keeps_replay, job.cell.algo
        assert cmd[-1] == "algo.save_replay_buffer=false"


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "name a suite"),
        (["mpe", "--budget", "0"], "expected a positive integer"),
        (["mpe", "--seeds", "a"], "expected comma-separated integers"),
        (["mpe", "--", "seed=4"], "set by this tool, not as an override: seed=4"),
        (["mpe", "--", "+experiment=mpe/x"], "set by this tool"),
        (["mpe", "--report", "--no-report"], "exclude each other"),
    ],
)
def test_bad_command_lines_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(argv)
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------- the report
def cell(task: str, algo: str, paper: tuple[float, float] | None, budget: int = 1000) -> Cell:
    return Cell(
        task, task.replace("_", " ").title(), algo, f"mpe/simple_spread_continuous/{algo}", budget, paper
    )


def write_run(
    path: Path,
    task: str,
    algo: str,
    seed: int,
    rows: list[tuple[int, float, float]],
    absolute: list[float] | None = None,
) -> None:
    """A run dir with (env_steps, wall_time, eval_return) rows; NaN eval: a row without one."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(
        yaml.safe_dump({"env": {"name": "mpe", "task": task}, "algo": {"name": algo}, "seed": seed})
    )
    lines = ["env_steps,iteration,wall_time,fps,eval_return"]
    lines += [f"{s},{k},{w},0,{'' if math.isnan(r) else r}" for k, (s, w, r) in enumerate(rows, 1)]
    (path / "progress.csv").write_text("\n".join(lines) + "\n")
    entry = {"step_0": {"step_count": rows[-1][0], "return": [rows[-1][2]]}}
    if absolute is not None:
        entry["absolute_metrics"] = {"return": absolute}
    (path / "metrics.json").write_text(json.dumps({"mpe": {task: {algo: {f"seed_{seed}": entry}}}}))
    (path / "run.json").write_text(json.dumps({"host": "testhost"}))


@pytest.fixture
def fake_suite(tmp_path: Path) -> tuple[Suite, list[runs.Job]]:
    """Task a|b (a `|` in its title): happo (paper 100) seeds 1-3 finished, final 90/100/110,
    best 95/120/110; mappo (paper 50) seed 1 finished (final 60), seed 2 unfinished, seed 3
    missing. Task neg: happo (paper -60) final -56/-62; mappo (paper [-70, -64]) final -69/-71."""
    cells = (
        cell("a|b", "happo", (100.0, 100.0)),
        cell("a|b", "mappo", (50.0, 50.0)),
        cell("neg", "happo", (-60.0, -60.0)),
        cell("neg", "mappo", (-70.0, -64.0)),
    )
    suite = Suite("fake", "a fake suite", "made up", (1, 2, 3), "eval_return", cells, ("a note",))
    jobs = runs.jobs_for(tmp_path / "runs", "fake", list(cells), [1, 2, 3])
    by = {(j.cell.task, j.cell.algo, j.seed): j.path for j in jobs}
    for seed, (final, best) in enumerate([(90, 95), (100, 120), (110, 110)], 1):
        write_run(
            by[("a|b", "happo", seed)],
            "a|b",
            "happo",
            seed,
            [(500, 5.0, best if best != final else NAN), (600, 6.0, best), (1000, 10.0, final)],
            absolute=[final + 1.0, final + 3.0],
        )
    write_run(by[("a|b", "mappo", 1)], "a|b", "mappo", 1, [(1000, 20.0, 60.0)])
    write_run(by[("a|b", "mappo", 2)], "a|b", "mappo", 2, [(400, 4.0, 99.0)])
    for seed, final in enumerate([-56, -62], 1):
        write_run(by[("neg", "happo", seed)], "neg", "happo", seed, [(1000, 1.0, final)])
    for seed, final in enumerate([-69, -71], 1):
        write_run(by[("neg", "mappo", seed)], "neg", "mappo", seed, [(1000, 1.0, final)])
    return suite, jobs


def test_run_states(fake_suite):
    _, jobs = fake_suite
    states = {(j.cell.task, j.cell.algo, j.seed): runs.inspect(j) for j in jobs}
    assert states[("a|b", "happo", 1)].status == "finished"
    assert states[("a|b", "mappo", 2)].status == "unfinished"
    assert states[("a|b", "mappo", 2)].detail == "400/1,000 steps"
    assert states[("a|b", "mappo", 3)].status == "missing"
    path = states[("a|b", "mappo", 2)].job.path
    runs.record_launch(path, {"returncode": 1})
    assert runs.inspect(states[("a|b", "mappo", 2)].job).status == "failed"
    runs.record_launch(path, {"returncode": 0})  # the last launch decides
    assert runs.inspect(states[("a|b", "mappo", 2)].job).status == "unfinished"
    # stopped by a signal (harl.train saved): unfinished, not failed
    for code, name in [(130, "SIGINT"), (143, "SIGTERM"), (140, "SIGUSR2")]:
        runs.record_launch(path, {"returncode": code})
        stopped = runs.inspect(states[("a|b", "mappo", 2)].job)
        assert (stopped.status, stopped.detail) == ("unfinished", f"400/1,000 steps, stopped by {name}")
    runs.record_launch(path, {"returncode": 137})  # SIGKILL: harl.train saved nothing at the end
    assert runs.inspect(states[("a|b", "mappo", 2)].job).status == "failed"


def test_report_numbers(fake_suite):
    suite, jobs = fake_suite
    results = report.collect(jobs)
    rows = {(r["task"], r["algo"]): r for r in report.results_rows(results, "eval_return")}
    happo = rows[("a|b", "happo")]
    half = 4.302652729911275 * 10 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(3), s = 10
    assert happo["seeds_finished"] == 3 and happo["final_mean"] == pytest.approx(100.0)
    assert happo["final_ci95"] == pytest.approx(half)
    assert happo["final"] == f"100.0 ± {half:.1f}"
    assert happo["best"].startswith("108.3 ± ")  # (95 + 120 + 110) / 3
    assert happo["best_checkpoint"].startswith("102.0 ± ")  # absolute metrics: final + 2
    assert happo["vs_paper"] == "1.00x"
    assert happo["wall_time_s"] == pytest.approx(10.0) and happo["env_steps_per_s"] == pytest.approx(100.0)
    mappo = rows[("a|b", "mappo")]
    assert (mappo["seeds_finished"], mappo["seeds"]) == (1, 3)
    assert (mappo["final"], mappo["vs_paper"]) == ("60.0", "1.20x")
    assert rows[("neg", "happo")]["vs_paper"] == "+1.0"  # -59 - (-60)
    assert rows[("neg", "mappo")]["vs_paper"] == "-3.0"  # -70 - the midpoint -67
    assert rows[("neg", "mappo")]["paper"] == "≈ -70 to -64"


def test_orderings_count_the_pairs_in_the_papers_order(fake_suite, tmp_path):
    suite, jobs = fake_suite
    results = report.collect(jobs)
    by_task = {row["task"]: row for row in report.ordering(results, "eval_return")}
    assert by_task["A|B"]["paper"] == "happo > mappo" and by_task["A|B"]["ours"] == "happo > mappo"
    assert (by_task["A|B"]["agree"], by_task["A|B"]["pairs"]) == (1, 1)
    assert by_task["Neg"]["paper"] == "happo > mappo" and by_task["Neg"]["ours"] == "happo > mappo"
    assert report.rank_text({"x": 1.0, "y": 1.0, "z": 3.0}) == "z > x = y"


def test_report_page(fake_suite, tmp_path):
    suite, jobs = fake_suite
    where = {"host": "vm", "cpu": "EPYC", "cores": 2, "torch": "2.13.0"}
    # two runs with launch records: one started, stopped and continued on a later commit
    (jobs[0].path / runs.LAUNCHES).write_text(
        json.dumps({"launches": [{**where, "harl_commit": "aaa"}, {**where, "harl_commit": "bbb"}]})
    )
    (jobs[1].path / runs.LAUNCHES).write_text(json.dumps({"launches": [{**where, "harl_commit": "bbb"}]}))
    written = report.write_report(suite, jobs, tmp_path / "docs", ["fake", "--report"], reps=50)
    page = (tmp_path / "docs" / "fake.md").read_text()
    assert {p.name for p in written} >= {
        "fake.md",
        "fake.csv",
        "fake-curves.png",
        "fake-curves.pdf",
        "fake-aggregate.md",
        "fake-aggregate.png",
    }
    assert "`python -m harl.reproduce fake --report`" in page
    assert "| A\\|B | happo | 3/3 | 1,000 |" in page  # the task's `|` escaped in the table
    assert "A\\|B mappo seed 2 (unfinished, 400/1,000 steps)" in page and "3 run(s) not started" in page
    # each machine once, the commits once each in launch order; per run, its own launches
    assert (
        "a note" in page
        and "- **Machines**: vm (EPYC, 2 cores, torch 2.13.0); testhost; **harl commits**: aaa, bbb (" in page
    )
    assert (
        "| vm (EPYC, 2 cores, torch 2.13.0, harl aaa); vm (EPYC, 2 cores, torch 2.13.0, harl bbb) |" in page
    )
    table = pd.read_csv(tmp_path / "docs" / "fake.csv")
    assert list(table.algo) == ["happo", "mappo", "happo", "mappo"]
    aggregate = (tmp_path / "docs" / "fake-aggregate.md").read_text()
    assert "2 tasks: a|b, neg" in aggregate


def test_a_report_keeps_run_records_and_rebuilds_from_them_on_another_machine(fake_suite, tmp_path, capsys):
    suite, jobs = fake_suite
    docs = tmp_path / "docs"
    kept = [
        dataclasses.replace(j, record=docs / "runs" / j.path.relative_to(tmp_path / "runs")) for j in jobs
    ]
    first_run = kept[0].path
    (first_run / "posture.json").write_text(json.dumps({"upside_down": 0.5}))
    (first_run / "checkpoints").mkdir()
    (first_run / "checkpoints" / "latest.pt").write_bytes(b"not a record")
    report.write_report(suite, kept, docs, ["fake", "--report"], reps=20)
    page = (docs / "fake.md").read_text()
    table = (docs / "fake.csv").read_text()
    assert "| a\\|b | happo | 1 | finished | 1,000 | 90.0 |" in page.replace("A\\|B", "a\\|b")
    assert sorted(p.name for p in kept[0].record.iterdir()) == sorted(
        n for n in runs.RECORD_FILES if n != runs.LAUNCHES
    )  # the record files the run dir has; no checkpoints
    assert not any(j.record.exists() for j in kept if not j.path.exists())  # nothing for missing runs
    assert "read from their records" not in page

    shutil.rmtree(tmp_path / "runs")  # a fresh clone: no run dirs, only the kept records
    report.write_report(suite, kept, docs, ["fake", "--report"], reps=20)
    again = (docs / "fake.md").read_text()
    assert (docs / "fake.csv").read_text() == table  # the same numbers
    assert "9 run(s) above were read from their records" in again
    assert "| A\\|B | happo | 1 | finished |" in again and " 50% |" in again  # kept posture
    assert "A\\|B mappo seed 2 (unfinished, 400/1,000 steps)" in again

    # training skips a run whose record says it finished (no run dir here), not one unfinished
    exits = runs.train_all([kept[0]], [], parallel=1)
    assert exits == {kept[0]: None}
    assert "finished already (1,000 env steps on another machine" in capsys.readouterr().out
    unfinished = next(j for j in kept if (j.cell.algo, j.seed) == ("mappo", 2) and j.cell.task == "a|b")
    assert runs.inspect(runs.readable(unfinished)).status == "unfinished"
    assert runs.inspect(unfinished).status == "missing"  # so it trains in its run dir from the start


def test_posture_of_a_run_without_checkpoints_is_its_kept_one(tmp_path):
    from harl.posture import CACHE_FILE, run_posture

    assert CACHE_FILE in runs.RECORD_FILES
    assert run_posture(tmp_path) is None
    (tmp_path / CACHE_FILE).write_text(json.dumps({"upside_down": 0.25, "env_steps": 10}))
    assert run_posture(tmp_path) == {"upside_down": 0.25, "env_steps": 10}


def test_a_report_leaves_no_figures_of_an_earlier_one(fake_suite, tmp_path):
    suite, jobs = fake_suite
    docs = tmp_path / "docs"
    report.write_report(suite, jobs, docs, ["fake", "--report"], reps=20)
    assert (docs / "fake-aggregate.png").is_file()
    happo_only = [j for j in jobs if j.cell.algo == "happo"]  # one algorithm: no aggregates
    report.write_report(suite, happo_only, docs, ["fake", "--report"], reps=20)
    assert not list(docs.glob("fake-aggregate.*"))
    assert "Needs finished runs of at least two algorithms." in (docs / "fake.md").read_text()
    assert (docs / "fake-curves.png").is_file()


def test_absolute_return_reads_the_best_checkpoint_evaluation(tmp_path):
    write_run(tmp_path / "r", "t", "happo", 1, [(10, 1.0, 5.0)], absolute=[1.0, 2.0, 6.0])
    assert report.absolute_return(tmp_path / "r") == pytest.approx(3.0)
    write_run(tmp_path / "s", "t", "happo", 1, [(10, 1.0, 5.0)])
    assert report.absolute_return(tmp_path / "s") is None


# ----------------------------------------------------------------------------- end to end
TINY = [o for o in CONFTEST_TINY if not o.startswith("total_steps=")]  # harl.reproduce sets the budget


def reproduce(tmp_path: Path, *args: str, overrides: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "harl.reproduce",
        "mpe",
        "--only",
        "simple_spread_continuous/happo",
        "--seeds",
        "1,2",
        "--jobs",
        "2",
        "--out",
        str(tmp_path / "runs"),
        "--docs",
        str(tmp_path / "docs"),
        "--reps",
        "20",
        *args,
        "--",
        *TINY,
        *overrides,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_command_trains_skips_and_continues_runs(tmp_path):
    first = reproduce(tmp_path, "--budget", "80", "--no-report")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 of 2 runs to train" in first.stdout
    seed1 = tmp_path / "runs" / "mpe" / "simple_spread_continuous" / "happo" / "seed1"
    assert pd.read_csv(seed1 / "progress.csv").env_steps.iloc[-1] == 80
    # a finished run's record is kept when it finishes, report or not
    record = tmp_path / "docs" / "runs" / "mpe" / "simple_spread_continuous" / "happo" / "seed1"
    assert (record / "progress.csv").read_text() == (seed1 / "progress.csv").read_text()
    assert not (tmp_path / "docs" / "mpe.md").exists()

    again = reproduce(tmp_path, "--budget", "80")
    assert again.returncode == 0 and "0 of 2 runs to train" in again.stdout
    page = (tmp_path / "docs" / "mpe.md").read_text()
    assert "| simple_spread, continuous | happo | 2/2 | 80 |" in page
    assert len(json.loads((seed1 / runs.LAUNCHES).read_text())["launches"]) == 1

    (tmp_path / "runs").rename(tmp_path / "elsewhere")  # as on a fresh clone: only the records
    dry = reproduce(tmp_path, "--budget", "80", "--dry-run")
    assert f"seed 1: finished on another machine, its record: {record}" in dry.stdout
    (tmp_path / "elsewhere").rename(tmp_path / "runs")

    longer = reproduce(tmp_path, "--budget", "160")  # continues both runs from their checkpoints
    assert longer.returncode == 0, longer.stdout + longer.stderr
    assert "continuing (80/160 steps)" in longer.stdout
    launches = json.loads((seed1 / runs.LAUNCHES).read_text())["launches"]
    assert [(e["env_steps_before"], e["env_steps_after"]) for e in launches] == [(None, 80), (80, 160)]
    steps = pd.read_csv(seed1 / "progress.csv").env_steps
    assert steps.is_monotonic_increasing and steps.is_unique and steps.iloc[-1] == 160
    assert json.loads((seed1 / "run.json").read_text())["status"] == "complete"


def test_a_failing_run_is_reported_and_the_command_fails(tmp_path):
    result = reproduce(tmp_path, "--budget", "80", "--no-report", overrides=("algo.lr=-1",))
    assert result.returncode == 1
    assert "run(s) stopped early" in result.stdout
    assert "simple_spread_continuous/happo seed 1" in result.stdout
    job = runs.jobs_for(
        tmp_path / "runs",
        "mpe",
        [c for c in suites.load_suite("mpe").cells if c.key == "simple_spread_continuous/happo"],
        [1],
    )[0]
    assert runs.inspect(job).status == "failed"
    assert not (tmp_path / "docs").exists()


def test_list_and_dry_run_train_nothing(tmp_path):
    listing = subprocess.run(
        [sys.executable, "-m", "harl.reproduce", "--list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "halfcheetah_2x3/happo" in listing.stdout and "≈ 7,000" in listing.stdout
    dry = reproduce(tmp_path, "--dry-run")
    assert dry.returncode == 0 and "missing not started" in dry.stdout
    assert "+experiment=mpe/simple_spread_continuous/happo seed=2 total_steps=10000000" in dry.stdout
    assert not (tmp_path / "runs").exists()


def test_fmt_helpers():
    c = cell("t", "happo", (600.0, 600.0))
    assert report.fmt_paper(c) == "≈ 600"
    assert report.fmt_paper(cell("t", "happo", None)) == "—"
    assert report.vs_paper(300.0, c) == "0.50x" and report.vs_paper(NAN, c) == "—"
    assert report.fmt_steps(10_000_000) == "10M" and report.fmt_steps(1500) == "1,500"
    assert np.isnan(report.CellResult(c, []).wall_times()).all()


def test_a_launch_records_the_code_it_started_with(tmp_path, monkeypatch):
    # the commit is read before the run starts: a commit made while it trains is not its code
    events = []
    monkeypatch.setattr(
        runs, "machine", lambda: events.append("machine") or {"harl_commit": f"c{len(events)}"}
    )
    monkeypatch.setattr(runs, "run_logged", lambda *a, **k: events.append("run") or (1, 0.5))
    cell = [c for c in suites.load_suite("mpe").cells if c.key == "simple_spread_continuous/happo"][0]
    job = runs.jobs_for(tmp_path, "mpe", [cell], [1])[0]
    runs.train(job, [], "[1/1]")
    assert events == ["machine", "run"]
    launch = json.loads((job.path / runs.LAUNCHES).read_text())["launches"][0]
    assert launch["harl_commit"] == "c1" and launch["returncode"] == 1


def test_the_recorded_commit_says_when_the_checkout_had_uncommitted_changes():
    commit = runs.machine()["harl_commit"]
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
    ).stdout
    if commit == "unknown":
        pytest.skip("not a git checkout")
    assert commit.endswith("-dirty") == bool(status.strip())


def test_a_report_that_would_leave_out_finished_runs_is_noticed(fake_suite, tmp_path):
    suite, jobs = fake_suite
    docs = tmp_path / "docs"
    report.write_report(suite, jobs, docs, ["fake", "--report"], reps=20)
    assert report.runs_it_would_drop(suite, jobs, docs) == []
    shutil.rmtree(jobs[0].path)  # a|b happo seed 1, finished; no record was kept
    assert report.runs_it_would_drop(suite, jobs, docs) == ["A|B happo: 3 in the report, 2 here"]


def test_the_command_does_not_replace_a_report_with_one_that_leaves_out_finished_runs(tmp_path, capsys):
    docs, out = tmp_path / "docs", tmp_path / "runs"
    docs.mkdir()
    # a report that counted 3 finished runs of one cell (the columns the check reads)
    (docs / "mpe.csv").write_text(
        'task,title,algo,seeds_finished\nsimple_spread_continuous,"simple_spread, continuous",happo,3\n'
    )
    base = ["mpe", "--report", "--docs", str(docs), "--out", str(out), "--reps", "20"]
    assert cli.main(base) == 1
    said = capsys.readouterr().out
    assert "report not written" in said and "simple_spread, continuous happo: 3 in the report, 0 here" in said
    assert "--overwrite-report" in said and not (docs / "mpe.md").exists()
    assert cli.main([*base, "--overwrite-report"]) == 0
    assert "0 of 108 runs finished" in (docs / "mpe.md").read_text()
