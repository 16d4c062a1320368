"""harl/plot.py (also tools/plot.py) on hand-written run dirs: run discovery, seed alignment,
t-based CIs, the results table, IQM / probability of improvement / performance profiles, the
files written, and the command line once. No training."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from harl import plot

REPO = Path(__file__).resolve().parents[1]
CHEETAH, SPREAD = ("mamujoco", "HalfCheetah-2x3"), ("mpe", "simple_spread-continuous")
# Final eval return of seeds 1, 2, 3. Every run evaluates 0, then final + 1 (its best), then final.
FINALS = {(CHEETAH, "happo"): [1.0, 2.0, 3.0], (CHEETAH, "mappo"): [4.0, 5.0, 6.0],
          (SPREAD, "happo"): [6.0, 8.0, 10.0], (SPREAD, "mappo"): [2.0, 4.0, 6.0]}
WIN_RATES = {"happo": [0.5, 0.6, 0.7], "mappo": [0.1, 0.2, 0.3]}  # final eval_win_rate, spread only
T_975_2 = 4.302652729911275  # t quantile 0.975 with 2 degrees of freedom (scipy.stats.t.ppf)
REPS = 200


def write_run(path: Path, env: tuple[str, str], algo: str, seed: int, evals: list[float],
              win_rates: list[float] | None = None) -> Path:
    """A run dir with config.yaml and a progress.csv: an eval row every 200 env steps, with a
    train-only row (no eval) between two of them."""
    path.mkdir(parents=True)
    config = {"algo": {"name": algo}, "env": {"name": env[0], "task": env[1]}, "seed": seed,
              "n_envs": 2, "total_steps": 200 * len(evals)}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    rows = []
    for k, value in enumerate(evals):
        row = {"env_steps": 200 * (k + 1), "wall_time": k + 1.0, "train_return": -1.0,
               "eval_return": value}
        if win_rates is not None:
            row["eval_win_rate"] = win_rates[k]
        rows.append(row)
        if k == 0:
            rows.append({"env_steps": 300, "wall_time": 1.5, "train_return": -0.5})
    pd.DataFrame(rows).to_csv(path / "progress.csv", index=False)
    return path


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """2 tasks x 2 algos x 3 seeds laid out like a Hydra multirun, plus noise to ignore."""
    root = tmp_path / "multirun" / "2026-11-02_10-00-00"
    for (env, algo), finals in FINALS.items():
        for seed, final in enumerate(finals, 1):
            rate = WIN_RATES[algo][seed - 1]
            rates = [0.0, rate, rate] if env == SPREAD else None
            write_run(root / env[0] / env[1] / algo / f"seed{seed}", env, algo, seed,
                      [0.0, final + 1, final], rates)
    (root / "no_config").mkdir()
    (root / "no_config" / "progress.csv").write_text("env_steps,eval_return\n1,1\n")  # not a run
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text(yaml.safe_dump({"env": {"name": "mpe", "task": "x"},
                                                        "algo": {"name": "happo"}}))
    (broken / "progress.csv").write_text("")  # a run that died before logging: skipped
    return tmp_path / "multirun"


@pytest.fixture
def groups(runs_dir: Path) -> plot.Groups:
    return plot.group_runs(plot.load_runs([runs_dir]), "eval_return")


def test_discovery_and_grouping(runs_dir, capsys):
    runs = plot.load_runs([runs_dir])  # 12 runs; no_config/ is not a run, broken/ is skipped
    assert len(runs) == 12 and "broken: progress.csv is empty; skipped" in capsys.readouterr().err
    groups = plot.group_runs(runs, "eval_return")
    assert list(groups) == ["mamujoco/HalfCheetah-2x3", "mpe/simple_spread-continuous"]
    for algos in groups.values():
        assert list(algos) == ["happo", "mappo"]  # HA algorithms before baselines
        assert all([r.seed for r in runs] == [1, 2, 3] for runs in algos.values())
    one = plot.load_runs([runs_dir / "2026-11-02_10-00-00/mpe/simple_spread-continuous/happo/seed2"])
    assert [(r.task, r.algo, r.seed) for r in one] == [("mpe/simple_spread-continuous", "happo", 2)]
    series = one[0].series("eval_return")  # the train-only row has no eval value
    assert list(series.index) == [200, 400, 600] and list(series) == [0.0, 9.0, 8.0]
    assert (plot.algo_order(["vdn", "zeta", "mappo", "hasac", "happo"])
            == ["happo", "hasac", "mappo", "vdn", "zeta"])
    styles = plot.algo_styles(["mappo", "happo"])
    assert styles["happo"].linestyle == "-" and styles["mappo"].linestyle == "--"
    assert styles["happo"].color != styles["mappo"].color


def test_t_confidence_interval_known_case():
    mean, half = plot.mean_and_ci(np.array([1.0, 2.0, 3.0]))
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(T_975_2 * 1.0 / math.sqrt(3)) and half == pytest.approx(2.484, abs=1e-3)
    mean, half = plot.mean_and_ci(np.array([[1.0, 10.0], [3.0, 10.0]]))  # per column
    assert list(mean) == [2.0, 10.0] and half[1] == 0.0
    mean, half = plot.mean_and_ci(np.array([5.0]))  # one seed: no interval
    assert mean == 5.0 and math.isnan(half)


def test_align_and_smooth():
    a = pd.Series([0.0, 10.0, 20.0], index=[0, 100, 200])
    b = pd.Series([0.0, 30.0, 60.0, 90.0], index=[50, 150, 250, 350])
    grid, values = plot.align([a, b])
    assert list(grid) == [50, 100, 150, 200]  # union of steps, within the range both cover
    assert values.tolist() == [[5.0, 10.0, 15.0, 20.0], [0.0, 15.0, 30.0, 45.0]]
    assert plot.smooth(a, 2).tolist() == [0.0, 5.0, 15.0]
    assert plot.smooth(a, 1) is a


def test_curve_band_only_with_several_seeds(groups):
    runs = groups["mamujoco/HalfCheetah-2x3"]["happo"]
    style = plot.algo_styles(["happo"])["happo"]
    fig, (ax3, ax1) = plt.subplots(1, 2)
    plot.plot_curve(ax3, runs, "eval_return", 1, style, "happo")
    plot.plot_curve(ax1, runs[:1], "eval_return", 1, style, "happo")
    x, y = ax3.lines[0].get_data()
    assert list(x) == [200, 400, 600] and list(y) == pytest.approx([0.0, 3.0, 2.0])  # mean of seeds
    assert len(ax3.collections) == 1 and len(ax1.collections) == 0  # the band; none for one seed
    plt.close(fig)


def test_results_table(groups, tmp_path):
    table = plot.results_table(groups, "eval_return").set_index(["task", "algo"])
    half = T_975_2 / math.sqrt(3)  # sample std of [1, 2, 3] is 1; of [2, 4, 6] is 2
    row = table.loc[("mamujoco/HalfCheetah-2x3", "happo")]
    assert row["seeds"] == 3 and row["env_steps"] == 600
    assert (row["final_eval_return_mean"], row["final_eval_return_ci95"]) == pytest.approx((2.0, half))
    assert (row["best_eval_return_mean"], row["best_eval_return_ci95"]) == pytest.approx((3.0, half))
    assert math.isnan(row["final_eval_win_rate_mean"])  # no win-rate column on this task
    row = table.loc[("mpe/simple_spread-continuous", "mappo")]
    assert row["final_eval_return_mean"] == pytest.approx(4.0)
    assert row["final_eval_return_ci95"] == pytest.approx(2 * half)
    assert row["final_eval_win_rate_mean"] == pytest.approx(0.2)
    assert row["final_eval_win_rate_ci95"] == pytest.approx(0.1 * half)
    markdown = plot.table_markdown(table.reset_index())
    assert ("| mamujoco/HalfCheetah-2x3 | happo | 3 | 600 | 2.000 ± 2.484 | 3.000 ± 2.484 | — |"
            in markdown.splitlines())
    md, csv = plot.write_table(table.reset_index(), markdown, tmp_path / "out" / "results.md")
    assert (md.name, csv.name) == ("results.md", "results.csv") and md.read_text() == markdown
    assert pd.read_csv(csv).shape == (4, 10)


def test_aggregate_known_case(groups):
    result = plot.aggregate(groups, "eval_return", reps=REPS, seed=1)
    # min-max per task over every logged eval: 0 .. 7 on HalfCheetah (best 6 + 1), 0 .. 11 on spread
    happo = np.array([1, 2, 3]) / 7, np.array([6, 8, 10]) / 11
    mappo = np.array([4, 5, 6]) / 7, np.array([2, 4, 6]) / 11

    def interquartile_mean(tasks):  # 6 scores: drop the lowest and the highest (25 % of 6 -> 1)
        return np.sort(np.concatenate(tasks))[1:-1].mean()

    table = result.table.set_index(["statistic", "algo"])
    for algo, tasks in (("happo", happo), ("mappo", mappo)):
        iqm = table.loc[("iqm", algo)]
        assert iqm["estimate"] == pytest.approx(interquartile_mean(tasks))
        assert iqm["ci_low"] <= iqm["estimate"] <= iqm["ci_high"] and iqm["runs"] == 6
        assert table.loc[("mean", algo), "estimate"] == pytest.approx(np.mean([t.mean() for t in tasks]))
    assert plot.iqm(np.arange(8.0)) == pytest.approx(3.5)  # mean of 2, 3, 4, 5
    # P(happo > mappo): 0 on HalfCheetah; on spread 8.5 of 9 pairs ([6,8,10] vs [2,4,6], a tie)
    poi = table.loc[("probability_of_improvement", "happo")]
    assert poi["other"] == "mappo" and poi["estimate"] == pytest.approx((0 + 8.5 / 9) / 2)
    assert 0 <= poi["ci_low"] <= poi["estimate"] <= poi["ci_high"] <= 1
    profile, ci = result.profiles["happo"]
    assert profile[0] == 1.0 and profile[-1] == 0.0 and ci.shape == (2, len(result.taus))
    assert result.taus[0] == 0.0 and result.taus[-1] == 1.0
    # seeded: the same call gives the same intervals
    again = plot.aggregate(groups, "eval_return", reps=REPS, seed=1)
    pd.testing.assert_frame_equal(result.table, again.table)


def mean_of(result: plot.Aggregate, algo: str) -> float:
    return result.table.set_index(["statistic", "algo"]).loc[("mean", algo), "estimate"]


def test_aggregate_normalisation_choices(groups, tmp_path):
    raw = plot.aggregate(groups, "eval_return", normalise="none", reps=REPS)
    assert mean_of(raw, "happo") == pytest.approx(5.0)  # of [2, 8]
    reference = tmp_path / "reference.yaml"
    reference.write_text(yaml.safe_dump({"mamujoco/HalfCheetah-2x3": [0, 10],
                                         "mpe/simple_spread-continuous": [-10, 10]}))
    scaled = plot.aggregate(groups, "eval_return", normalise=str(reference), reps=REPS)
    expected = np.mean([np.mean([1, 2, 3]) / 10, (np.mean([6, 8, 10]) + 10) / 20])
    assert mean_of(scaled, "happo") == pytest.approx(expected)
    reference.write_text(yaml.safe_dump({"mamujoco/HalfCheetah-2x3": [0, 10]}))
    with pytest.raises(SystemExit, match="simple_spread"):
        plot.aggregate(groups, "eval_return", normalise=str(reference), reps=REPS)


def test_files_written(groups, tmp_path):
    curves = plot.plot_curves(groups, "eval_return", tmp_path / "figs" / "curves.png", window=2)
    assert [p.name for p in curves] == ["curves.png", "curves.pdf"]
    result = plot.aggregate(groups, "eval_return", reps=REPS)
    written = plot.write_aggregate(result, "eval_return", REPS, tmp_path / "agg.md")
    assert [p.name for p in written] == ["agg.md", "agg.csv", "agg.png", "agg.pdf"]
    assert all(p.stat().st_size > 0 for p in curves + written)
    text = written[0].read_text()
    assert "| happo | mappo | " in text and "IQM" in text


def test_command_line(runs_dir, tmp_path):
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "harl.plot", str(runs_dir), "--out", str(out / "curves.png"),
           "--table", str(out / "results"), "--aggregate", str(out / "aggregate"), "--smooth", "2",
           "--reps", str(REPS)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    names = {"curves.png", "curves.pdf", "results.md", "results.csv",
             "aggregate.md", "aggregate.csv", "aggregate.png", "aggregate.pdf"}
    assert {p.name for p in out.iterdir()} == names
    assert "| mpe/simple_spread-continuous | happo | 3 |" in done.stdout
    from tools import plot as wrapper  # tools/plot.py is a thin wrapper around the same main
    assert wrapper.main is plot.main
    with pytest.raises(SystemExit):
        plot.parse_args([str(runs_dir), "--smooth", "0"])
    with pytest.raises(SystemExit):
        plot.parse_args([str(runs_dir), "--normalise", str(tmp_path / "missing.yaml")])
