"""tools/compare_algos.py on hand-written run dirs: summary numbers, ordering, failed and
missing runs, skipping finished runs. No training (one `python -c` subprocess for launch)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tools import compare_algos as ca

STEPS = 1000
NAN = math.nan
# (env_steps, wall_time, eval_return) rows per (algo, seed); NaN eval = a row without evaluation
RUNS = {
    ("happo", 1): [(500, 5.0, 10.0), (800, 8.0, NAN), (1000, 10.0, 30.0)],  # final 30 best 30 fps 100
    ("happo", 2): [(500, 2.0, 40.0), (900, 6.0, 20.0), (1000, 8.0, NAN)],  # final 20 best 40 fps 125
    ("mappo", 1): [(500, 10.0, 60.0), (1000, 20.0, 50.0)],  # final 50 best 60 fps 50
    ("mappo", 2): [(500, 5.0, 30.0), (1000, 10.0, 70.0)],  # final 70 best 70 fps 100
    ("haa2c", 1): [(1000, 4.0, 10.0)],  # final 10 best 10 fps 250
    ("haa2c", 2): [(500, 2.0, 99.0)],  # unfinished: ignored
    ("hatrpo", 1): [(500, 1.0, 99.0)],  # crashed, exit 1
}  # hatrpo seed 2: missing


def write_run(
    out: Path, algo: str, seed: int, rows: list[tuple[float, float, float]], returncode: int | None = None
) -> Path:
    path = ca.run_dir(out, algo, seed)
    path.mkdir(parents=True)
    config = {
        "algo": {"name": algo},
        "env": {"name": "mamujoco", "task": "HalfCheetah-2x3"},
        "seed": seed,
        "total_steps": STEPS,
    }
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    lines = ["env_steps,iteration,wall_time,fps,train_return,eval_return,eval_return_std"]
    for k, (steps, wall, ret) in enumerate(rows, 1):
        lines.append(f"{steps},{k},{wall},{steps / wall},-1.5,{'' if math.isnan(ret) else ret},")
    (path / "progress.csv").write_text("\n".join(lines) + "\n")
    if returncode is not None:
        (path / ca.STATUS).write_text(json.dumps({"returncode": returncode}))
    return path


@pytest.fixture
def comparison(tmp_path: Path) -> Path:
    for (algo, seed), rows in RUNS.items():
        write_run(tmp_path, algo, seed, rows, returncode=1 if algo == "hatrpo" else None)
    return tmp_path


def _report(out: Path) -> tuple[pd.DataFrame, str]:
    text = ca.report(out, ["happo", "mappo", "haa2c", "hatrpo"], [1, 2], STEPS, ["env=mamujoco"])
    return pd.read_csv(out / "summary.csv").set_index("algo"), text


def test_summary_numbers_and_order(comparison):
    summary, text = _report(comparison)
    assert list(summary.index) == ["mappo", "happo", "haa2c", "hatrpo"]  # final eval mean, desc
    s = 2**0.5 * 5  # sample std (ddof=1) of two values 10 apart
    expected = {
        "happo": (2, 25.0, s, 35.0, s, 112.5, 9.0),
        "mappo": (2, 60.0, 2 * s, 65.0, s, 75.0, 15.0),
        "haa2c": (1, 10.0, NAN, 10.0, NAN, 250.0, 4.0),
    }
    columns = [
        "seeds_finished",
        "final_eval_mean",
        "final_eval_std",
        "best_eval_mean",
        "best_eval_std",
        "env_steps_per_s",
        "wall_time_s",
    ]
    for algo, values in expected.items():
        assert summary.loc[algo, columns].tolist() == pytest.approx(values, nan_ok=True), algo
    assert (summary["seeds"] == 2).all()
    assert text == (comparison / "summary.md").read_text()
    lines = text.splitlines()
    assert lines[0] == "Task: mamujoco/HalfCheetah-2x3 | budget: 1,000 env steps per run | seeds: 1, 2"
    assert lines[1] == "Overrides: env=mamujoco"
    assert "| mappo | 2/2 | 60.0 ± 14.1 | 65.0 ± 7.1 | 75 | 0:00:15 |  |" in lines
    assert "| happo | 2/2 | 25.0 ± 7.1 | 35.0 ± 7.1 | 112 | 0:00:09 |  |" in lines


def test_failed_unfinished_and_missing_runs_are_reported(comparison):
    summary, text = _report(comparison)
    assert summary.loc["hatrpo", "seeds_finished"] == 0
    assert math.isnan(summary.loc["hatrpo", "final_eval_mean"])
    assert "| hatrpo | 0/2 | — | — | — | — | seed1 failed (exit 1), seed2 missing (not run) |" in text
    assert "| haa2c | 1/2 | 10.0 | 10.0 | 250 | 0:00:04 | seed2 incomplete (500/1,000 steps) |" in text
    # a run dir with an empty or garbled progress.csv is unfinished, not an error
    (ca.run_dir(comparison, "haa2c", 2) / "progress.csv").write_text("")
    assert ca.inspect_run(comparison, "haa2c", 2, STEPS).status == "incomplete"
    # every run failed before writing anything: still a table
    out = comparison / "allfailed"
    (ca.run_dir(out, "mappo", 1)).mkdir(parents=True)
    (ca.run_dir(out, "mappo", 1) / ca.STATUS).write_text('{"returncode": 1}')
    text = ca.report(out, ["mappo"], [1], STEPS, [])
    assert text.startswith("Task: unknown") and "| mappo | 0/1 | — |" in text


def test_skip_finished_runs(comparison, monkeypatch):
    finished = {key for key in RUNS if ca.is_finished(comparison, *key, STEPS)}
    assert finished == {("happo", 1), ("happo", 2), ("mappo", 1), ("mappo", 2), ("haa2c", 1)}
    assert not ca.is_finished(comparison, "hatrpo", 2, STEPS)  # missing
    assert not ca.is_finished(comparison, "happo", 1, 2 * STEPS)  # bigger budget
    write_run(comparison, "mappo", 3, RUNS[("mappo", 1)], returncode=1)
    assert not ca.is_finished(comparison, "mappo", 3, STEPS)  # reached budget, then crashed

    launched = []
    monkeypatch.setattr(ca, "launch", lambda cmd, path, label: launched.append(path) or 0)
    algos = ["happo", "haa2c", "hatrpo"]
    status = ca.run_all(comparison, algos, [1, 2], STEPS, [])
    assert launched == [ca.run_dir(comparison, *key) for key in [("haa2c", 2), ("hatrpo", 1), ("hatrpo", 2)]]
    assert status[("happo", 1)] is None and status[("hatrpo", 2)] == 0
    launched.clear()
    ca.run_all(comparison, algos, [1, 2], STEPS, [], jobs=2, force=True)
    assert sorted(launched) == sorted(ca.run_dir(comparison, a, s) for a in algos for s in (1, 2))


def test_launch_logs_output_and_exit_status(tmp_path, capsys):
    path = write_run(tmp_path, "happo", 1, [(500, 1.0, 5.0)])  # stale partial run: replaced
    cmd = [sys.executable, "-c", "print('hello'); raise SystemExit('ValueError: boom')"]
    assert ca.launch(cmd, path, "[1/1] happo seed 1") == 1
    assert not (path / "progress.csv").exists()
    assert "hello" in (path / ca.LOG).read_text()
    assert json.loads((path / ca.STATUS).read_text())["returncode"] == 1
    run = ca.inspect_run(tmp_path, "happo", 1, STEPS)
    assert (run.status, run.detail) == ("failed", "exit 1")
    console = capsys.readouterr().out.splitlines()
    assert console[0].startswith("[1/1] happo seed 1: started")
    assert "FAILED" in console[1] and "exit status 1: ValueError: boom" in console[1]


def test_command_line(tmp_path):
    cmd = ca.build_command("mappo", 3, 400, tmp_path / "a b", ["env=mpe"])
    assert cmd[1:] == [
        "-m",
        "harl.train",
        "algo=mappo",
        "seed=3",
        "total_steps=400",
        f"hydra.run.dir='{(tmp_path / 'a b').resolve()}'",
        "env=mpe",
    ]
    args, overrides = ca.parse_args(
        [
            "--algos",
            "happo,mappo",
            "--seeds",
            "1,2",
            "--steps",
            "10",
            "--out",
            "x",
            "--",
            "env=mpe",
            "n_envs=2",
        ]
    )
    assert (ca.split_list(args.algos), ca.split_list(args.seeds, int)) == (["happo", "mappo"], [1, 2])
    assert overrides == ["env=mpe", "n_envs=2"]
    with pytest.raises(SystemExit):
        ca.parse_args(["--algos", "happo", "--steps", "10", "--out", "x", "--", "seed=3"])
    with pytest.raises(SystemExit):
        ca.parse_args(["--algos", "happo", "--out", "x"])  # no --steps


def test_report_mode_and_manifest(comparison, capsys):
    # without compare.json the report covers the <algo>/seed<N> dirs found, budgets from config.yaml
    assert ca.main(["--report", str(comparison)]) == 0
    out = capsys.readouterr().out
    assert "budget: each run's total_steps" in out and out.index("| mappo") < out.index("| happo")
    # a second launch with another budget or other overrides is refused
    ca.merge_manifest(comparison, ["happo"], [1, 2], STEPS, ["env=mpe"], force=False)
    merged = ca.merge_manifest(comparison, ["mappo"], [3], STEPS, ["env=mpe"], force=False)
    assert (merged["algos"], merged["seeds"]) == (["happo", "mappo"], [1, 2, 3])
    with pytest.raises(SystemExit, match="another --out"):
        ca.merge_manifest(comparison, ["happo"], [1], 2 * STEPS, ["env=mpe"], force=False)
    assert ca.main(["--report", str(comparison)]) == 0
    out = capsys.readouterr().out
    assert "| happo | 2/3 |" in out and "seed3 missing (not run)" in out
