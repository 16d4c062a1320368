"""harl/plot.py (also tools/plot.py) on hand-written run dirs: run discovery, seed alignment,
t-based CIs, the results table, IQM / probability of improvement / performance profiles, the
files written, and the command line once. No training."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from harl import plot

REPO = Path(__file__).resolve().parents[1]
CHEETAH, SPREAD = ("mamujoco", "HalfCheetah-2x3"), ("mpe", "simple_spread-continuous")
# Final eval return of seeds 1, 2, 3. Every run evaluates 0, then final + 1 (its best), then final.
FINALS = {
    (CHEETAH, "happo"): [1.0, 2.0, 3.0],
    (CHEETAH, "mappo"): [4.0, 5.0, 6.0],
    (SPREAD, "happo"): [6.0, 8.0, 10.0],
    (SPREAD, "mappo"): [2.0, 4.0, 6.0],
}
WIN_RATES = {"happo": [0.5, 0.6, 0.7], "mappo": [0.1, 0.2, 0.3]}  # final eval_win_rate, spread only
T_975_2 = 4.302652729911275  # t quantile 0.975 with 2 degrees of freedom (scipy.stats.t.ppf)
REPS = 200


def write_run(
    path: Path,
    env: tuple[str, str],
    algo: str,
    seed: int,
    evals: list[float],
    win_rates: list[float] | None = None,
    config: dict | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """A run dir with config.yaml and a progress.csv: an eval row every 200 env steps, with a
    train-only row (no eval) between two of them. `config`: more config.yaml entries (dotted
    keys); `overrides`: the command line run.json records."""
    path.mkdir(parents=True)
    settings = {
        "algo": {"name": algo},
        "env": {"name": env[0], "task": env[1]},
        "seed": seed,
        "n_envs": 2,
        "total_steps": 200 * len(evals),
    }
    for key, value in (config or {}).items():
        *parents, leaf = key.split(".")
        node = settings
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    (path / "config.yaml").write_text(yaml.safe_dump(settings))
    if overrides is not None:
        (path / "run.json").write_text(json.dumps({"algo": algo, "seed": seed, "overrides": overrides}))
    rows = []
    for k, value in enumerate(evals):
        row = {"env_steps": 200 * (k + 1), "wall_time": k + 1.0, "train_return": -1.0, "eval_return": value}
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
            write_run(
                root / env[0] / env[1] / algo / f"seed{seed}", env, algo, seed, [0.0, final + 1, final], rates
            )
    (root / "no_config").mkdir()
    (root / "no_config" / "progress.csv").write_text("env_steps,eval_return\n1,1\n")  # not a run
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text(
        yaml.safe_dump({"env": {"name": "mpe", "task": "x"}, "algo": {"name": "happo"}})
    )
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
    assert plot.algo_order(["vdn", "zeta", "mappo", "hasac", "happo"]) == [
        "happo",
        "hasac",
        "mappo",
        "vdn",
        "zeta",
    ]
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
    assert (
        "| mamujoco/HalfCheetah-2x3 | happo | 3 | 600 | 2.000 ± 2.484 | 3.000 ± 2.484 | — |"
        in markdown.splitlines()
    )
    md, csv = plot.write_table(table.reset_index(), markdown, tmp_path / "out" / "results.md")
    assert (md.name, csv.name) == ("results.md", "results.csv") and md.read_text() == markdown
    assert pd.read_csv(csv).shape == (4, 12)  # + env_steps_max and note


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
    reference.write_text(
        yaml.safe_dump({"mamujoco/HalfCheetah-2x3": [0, 10], "mpe/simple_spread-continuous": [-10, 10]})
    )
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
    cmd = [
        sys.executable,
        "-m",
        "harl.plot",
        str(runs_dir),
        "--out",
        str(out / "curves.png"),
        "--table",
        str(out / "results"),
        "--aggregate",
        str(out / "aggregate"),
        "--smooth",
        "2",
        "--reps",
        str(REPS),
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    names = {
        "curves.png",
        "curves.pdf",
        "results.md",
        "results.csv",
        "aggregate.md",
        "aggregate.csv",
        "aggregate.png",
        "aggregate.pdf",
    }
    assert {p.name for p in out.iterdir()} == names
    assert "| mpe/simple_spread-continuous | happo | 3 |" in done.stdout
    from tools import plot as wrapper  # tools/plot.py is a thin wrapper around the same main

    assert wrapper.main is plot.main
    with pytest.raises(SystemExit):
        plot.parse_args([str(runs_dir), "--smooth", "0"])
    with pytest.raises(SystemExit):
        plot.parse_args([str(runs_dir), "--normalise", str(tmp_path / "missing.yaml")])


# ----------------------------------------------------------------------------- groups by config
CHEETAH_PRESET = "+experiment=mamujoco/halfcheetah_2x3/happo"


def labels_and_seeds(groups: plot.Groups, task: str = "mamujoco/HalfCheetah-2x3") -> dict[str, list[int]]:
    return {label: [r.seed for r in runs] for label, runs in groups[task].items()}


def test_preset_runs_and_untuned_runs_are_separate_groups(tmp_path, capsys):
    root = tmp_path / "runs"
    untuned = dict(overrides=["env=mamujoco"])
    tuned = dict(config={"algo.lr": 0.001, "n_envs": 20}, overrides=[CHEETAH_PRESET, "seed=2"])
    write_run(root / "u1", CHEETAH, "happo", 1, [0.0, 1.0, 1.0], **untuned)
    # differs from u1 only in run-only keys (budget, device, cadences, loggers, results_dir):
    # the same config, one more seed
    write_run(
        root / "u2",
        CHEETAH,
        "happo",
        2,
        [0.0, 2.0, 2.0],
        overrides=[],
        config={
            "total_steps": 5000,
            "device": "cuda",
            "eval_interval": 7,
            "results_dir": "x",
            "logger.tensorboard": False,
            "torch_threads": 4,
            "n_workers": 1,
        },
    )
    write_run(root / "t1", CHEETAH, "happo", 1, [0.0, 5.0, 5.0], **tuned)
    write_run(root / "t2", CHEETAH, "happo", 2, [0.0, 6.0, 6.0], **tuned)
    write_run(root / "m1", CHEETAH, "mappo", 1, [0.0, 3.0, 3.0])
    groups = plot.group_runs(plot.load_runs([root]), "eval_return")
    assert labels_and_seeds(groups) == {"happo": [1, 2], "happo [preset]": [1, 2], "mappo": [1]}
    table = plot.results_table(groups, "eval_return").set_index("algo")
    assert table.loc["happo", "final_eval_return_mean"] == pytest.approx(1.5)
    assert table.loc["happo [preset]", "final_eval_return_mean"] == pytest.approx(5.5)
    assert "| mamujoco/HalfCheetah-2x3 | happo [preset] | 2 |" in plot.table_markdown(table.reset_index())
    styles = plot.algo_styles(list(groups["mamujoco/HalfCheetah-2x3"]))
    assert styles["happo"].color != styles["happo [preset]"].color
    assert styles["happo [preset]"].linestyle == "-" and styles["mappo"].linestyle == "--"
    fig = plot.draw_panels(groups, styles, "eval_return", 1, "auto", None)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["happo (2 seeds)", "happo [preset] (2 seeds)", "mappo (1 seed)"]
    plt.close(fig)
    # the old grouping (task and algorithm only) stays available
    merged = plot.group_runs(plot.load_runs([root]), "eval_return", by_config=False)
    assert labels_and_seeds(merged) == {"happo": [1, 1, 2, 2], "mappo": [1]}


def test_labels_name_what_differs(tmp_path, capsys):
    root = tmp_path / "runs"
    write_run(root / "a", CHEETAH, "happo", 1, [1.0], config={"algo.lr": 0.001})
    write_run(root / "b", CHEETAH, "happo", 1, [2.0], config={"algo.lr": 0.0005})
    # a key left out of config.yaml is the schema default: this run is the same config as b
    write_run(root / "c", CHEETAH, "happo", 2, [3.0], config={"algo.lr": 0.0005, "algo.clip_param": 0.2})
    # another task's preset used here is named; a preset with a changed key shows the key
    write_run(
        root / "d",
        CHEETAH,
        "happo",
        1,
        [4.0],
        config={"n_envs": 20},
        overrides=["+experiment=mamujoco/walker2d_6x1/happo", "env.scenario=HalfCheetah"],
    )
    write_run(root / "e", CHEETAH, "happo", 1, [5.0], config={"n_envs": 10}, overrides=[CHEETAH_PRESET])
    write_run(
        root / "f",
        CHEETAH,
        "happo",
        1,
        [6.0],
        config={"n_envs": 10, "algo.gamma": 0.9},
        overrides=[CHEETAH_PRESET, "algo.gamma=0.9"],
    )
    # the same config as e without the preset recorded: one group, which then names no preset
    write_run(root / "g", CHEETAH, "hatrpo", 1, [7.0], config={"n_envs": 10}, overrides=[CHEETAH_PRESET])
    write_run(root / "h", CHEETAH, "hatrpo", 2, [7.0], config={"n_envs": 10})
    # many differing keys: the label shows three, the rest go to stderr
    many = {"algo.lr": 0.1, "algo.gamma": 0.5, "algo.entropy_coef": 0.2, "n_envs": 4, "rollout_length": 9}
    write_run(root / "i", CHEETAH, "mappo", 1, [7.0], config=many)
    write_run(root / "j", CHEETAH, "mappo", 1, [8.0])
    groups = plot.group_runs(plot.load_runs([root]), "eval_return")
    assert labels_and_seeds(groups) == {
        "happo (algo.lr=0.0005)": [1, 2],
        "happo (algo.lr=0.001)": [1],
        "happo [preset walker2d_6x1]": [1],
        "happo [preset] (algo.gamma=0.9)": [1],
        "happo [preset] (algo.gamma=0.99)": [1],
        "hatrpo": [1, 2],
        "mappo (algo.entropy_coef=0.01, algo.gamma=0.99, algo.lr=0.0005, +2 more)": [1],
        "mappo (algo.entropy_coef=0.2, algo.gamma=0.5, algo.lr=0.1, +2 more)": [1],
    }
    err = capsys.readouterr().err
    assert (
        "mappo (algo.entropy_coef=0.2, algo.gamma=0.5, algo.lr=0.1, +2 more): algo.entropy_coef=0.2, "
        "algo.gamma=0.5, algo.lr=0.1, n_envs=4, rollout_length=9"
    ) in err


# ----------------------------------------------------------------------------- short seeds
@pytest.fixture
def short_seed_runs(tmp_path: Path) -> plot.Groups:
    """Seeds 1 and 2 evaluated at 200, 400, 600 env steps; seed 3 stopped after 400."""
    for seed, evals in ((1, [0.0, 2.0, 4.0]), (2, [0.0, 4.0, 8.0]), (3, [0.0, 6.0])):
        write_run(tmp_path / f"seed{seed}", CHEETAH, "happo", seed, evals)
    return plot.group_runs(plot.load_runs([tmp_path]), "eval_return")


def test_a_short_seed_does_not_cut_the_group(short_seed_runs):
    runs = short_seed_runs["mamujoco/HalfCheetah-2x3"]["happo"]
    style = plot.algo_styles(["happo"])["happo"]
    fig, ax = plt.subplots()
    info = plot.plot_curve(ax, runs, "eval_return", 1, style, "happo")
    x, y = ax.lines[0].get_data()
    # to the end of the longest seed; at 600 the mean of the two seeds there
    assert list(x) == [200, 400, 600] and list(y) == pytest.approx([0.0, 4.0, 6.0])
    assert ax.lines[0].get_label() == "happo (3 seeds, seed 3 ends at 400)"
    marks = [line for line in ax.lines if line.get_marker() == "x"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [400] and list(marks[0].get_ydata()) == [4.0]
    assert [(r.seed, end) for r, end in info.short] == [(3, 400.0)]
    seed3 = ax.lines[3].get_data()  # mean, then seeds 1, 2, 3: seed 3's line stops at 400
    assert list(seed3[0]) == [200, 400]
    plt.close(fig)
    table = plot.results_table(short_seed_runs, "eval_return")
    row = table.iloc[0]
    assert (row["env_steps"], row["env_steps_max"], row["note"]) == (400, 600, "seed 3 ends at 400")
    markdown = plot.table_markdown(table)
    assert "| task | algo | seeds | env steps | final eval return | best eval return | note |" in markdown
    assert "| happo | 3 | 400–600 | 6.000 ± " in markdown and markdown.rstrip().endswith(
        "| seed 3 ends at 400 |"
    )
    # the longer seeds are not cut: the old alignment (common range) is still reachable
    grid, _ = plot.align([r.series("eval_return") for r in runs])
    assert list(grid) == [200, 400]


def test_fmt_steps():
    assert [plot.fmt_steps(n) for n in (600, 45_000, 2_100_000, 10_000_000)] == ["600", "45k", "2.1M", "10M"]


# ----------------------------------------------------------------------------- few seeds
def band_range(ax: plt.Axes, step: float) -> tuple[float, float]:
    """The shaded band's lowest and highest y at x = step."""
    vertices = ax.collections[0].get_paths()[0].vertices
    ys = vertices[np.isclose(vertices[:, 0], step), 1]
    return float(ys.min()), float(ys.max())


def test_few_seeds_show_each_seed_and_their_range(tmp_path):
    for seed in range(1, 6):  # eval returns at 400 env steps: 2, 3, 4, 5, 6
        write_run(tmp_path / f"s{seed}", CHEETAH, "happo", seed, [0.0, seed + 1.0, seed + 1.0])
    runs = plot.group_runs(plot.load_runs([tmp_path]), "eval_return")["mamujoco/HalfCheetah-2x3"]["happo"]
    style = plot.algo_styles(["happo"])["happo"]
    fig, (few, many, old) = plt.subplots(1, 3)
    assert plot.plot_curve(few, runs[:3], "eval_return", 1, style, "happo").band == "minmax"
    assert len(few.lines) == 1 + 3  # the mean and one thin line per seed
    assert band_range(few, 400) == pytest.approx((2.0, 4.0))  # min-max, not 3 ± 2.48 (t, 2 dof)
    assert plot.plot_curve(many, runs, "eval_return", 1, style, "happo").band == "ci"
    assert len(many.lines) == 1  # five seeds: the mean and its t band
    half = stats.t.ppf(0.975, 4) * np.std([2, 3, 4, 5, 6], ddof=1) / math.sqrt(5)
    assert band_range(many, 400) == pytest.approx((4 - half, 4 + half))
    plot.plot_curve(old, runs[:3], "eval_return", 1, style, "happo", band=True, seeds=False)
    assert len(old.lines) == 1 and band_range(old, 400) == pytest.approx((3 - 2.484, 3 + 2.484), abs=1e-3)
    plt.close(fig)
    std = plot.seed_spread(np.array([[1.0, 2.0], [3.0, np.nan]]), "std")
    assert (
        list(std.n) == [2, 1] and std.high[0] == pytest.approx(2 + math.sqrt(2)) and math.isnan(std.high[1])
    )
    groups = {"mamujoco/HalfCheetah-2x3": {"happo": runs[:3], "mappo": runs}}
    fig = plot.draw_panels(groups, plot.algo_styles(["happo", "mappo"]), "eval_return", 1, "auto", None)
    assert " ".join(fig._suptitle.get_text().split()) == (
        "mean over seeds; shaded: min–max of the seeds (< 5 seeds), 95% t confidence band of the "
        "mean (≥ 5 seeds); thin lines: single seeds"
    )
    plt.close(fig)
    with pytest.raises(ValueError, match="band must be one of auto, ci, std, minmax, none"):
        plot.plot_curve(few, runs, "eval_return", 1, style, "happo", band="wide")


# ----------------------------------------------------------------------------- awkward task names
def test_a_task_with_a_pipe_in_tables_and_file_names(tmp_path):
    humanoid = ("mamujoco", "Humanoid-9|8")
    for seed in (1, 2):
        write_run(tmp_path / "runs" / f"s{seed}", humanoid, "happo", seed, [0.0, 1.0 * seed, 2.0 * seed])
    groups = plot.group_runs(plot.load_runs([tmp_path / "runs"]), "eval_return")
    markdown = plot.table_markdown(plot.results_table(groups, "eval_return"))
    header, _, row = markdown.splitlines()[2:5]
    assert row.startswith("| mamujoco/Humanoid-9\\|8 | happo | 2 |")
    unescaped = re.compile(r"(?<!\\)\|")  # what a Markdown renderer splits cells at
    assert len(unescaped.findall(row)) == len(unescaped.findall(header))
    written = plot.plot_curves(groups, "eval_return", tmp_path / "out" / "curves.png", per_task=True)
    assert [p.name for p in written] == [
        "curves.png",
        "curves.pdf",
        "curves-mamujoco_Humanoid-9_8.png",
        "curves-mamujoco_Humanoid-9_8.pdf",
    ]
    assert all(p.is_file() and re.fullmatch(r"[\w.+-]+", p.name) for p in written)
    assert plot.task_file_name("mpe/simple_spread-continuous") == "mpe_simple_spread-continuous"


def test_command_line_options_for_groups_and_bands(tmp_path, short_seed_runs):
    out = tmp_path / "report"
    cmd = [
        sys.executable,
        "-m",
        "harl.plot",
        str(tmp_path),
        "--out",
        str(out / "c.png"),
        "--per-task",
        "--band",
        "std",
        "--no-seeds",
        "--merge-configs",
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir()} == {
        "c.png",
        "c.pdf",
        "c-mamujoco_HalfCheetah-2x3.png",
        "c-mamujoco_HalfCheetah-2x3.pdf",
    }
    assert "| seed 3 ends at 400 |" in done.stdout
    args = plot.parse_args([str(tmp_path)])
    assert (args.band, args.seeds, args.per_task, args.merge_configs) == ("auto", None, False, False)
    assert plot.parse_args([str(tmp_path), "--seeds"]).seeds is True
    with pytest.raises(SystemExit):
        plot.parse_args([str(tmp_path), "--band", "wide"])


@pytest.mark.parametrize(
    "argv0, usage",
    [("/venv/bin/harl-plot", "usage: harl-plot"), ("/repo/harl/plot.py", "usage: python -m harl.plot")],
)
def test_usage_names_the_command_the_user_ran(monkeypatch, capsys, argv0, usage):
    monkeypatch.setattr(sys, "argv", [argv0, "--help"])
    with pytest.raises(SystemExit):
        plot.parse_args(["--help"])
    assert capsys.readouterr().out.startswith(usage)
