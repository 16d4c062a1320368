"""metrics.json in marl-eval's raw-data format: what tiny real runs write (on- and off-policy),
resume, the writer's atomicity and bookkeeping, and evaluating saved weights in place."""

from __future__ import annotations

import json
import math

import pytest
import torch

from harl.config import compose_config
from harl.logging.marl_eval import ABSOLUTE, MarlEvalLog, episode_metrics
from harl.train import run
from runners.base import ABSOLUTE_EPISODES_FACTOR, saved_weights
from tests.conftest import TINY_MPE
from tests.test_off_policy import TINY_OFF

EVAL_EPISODES = 2  # TINY and TINY_OFF


def check_marl_eval_schema(data: dict) -> dict[tuple[str, str, str, str], dict]:
    """marl-eval's raw format: {env: {task: {algo: {run: {"step_<k>": {"step_count": int,
    metric: [numbers]}, ..., "absolute_metrics": {metric: [numbers]}}}}}}, with the same
    metrics at every step and in the absolute metrics, and absolute_metrics last. Returns
    the runs by (env, task, algo, run)."""
    runs = {}
    assert isinstance(data, dict) and data
    for env, tasks in data.items():
        for task, algos in tasks.items():
            for algo, seeds in algos.items():
                for seed, entries in seeds.items():
                    assert seed.startswith("seed_") and seed[5:].isdigit(), seed
                    keys = list(entries)
                    steps = [k for k in keys if k != ABSOLUTE]
                    assert steps == [f"step_{i}" for i in range(len(steps))], keys
                    metric_names = None
                    for key in steps:
                        step = entries[key]
                        count = step["step_count"]
                        assert isinstance(count, int) and not isinstance(count, bool)
                        metrics = {k: v for k, v in step.items() if k != "step_count"}
                        assert metrics, key
                        for name, values in metrics.items():
                            assert isinstance(values, list) and values, (key, name)
                            assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
                        metric_names = metric_names or set(metrics)
                        assert set(metrics) == metric_names, key
                    counts = [entries[k]["step_count"] for k in steps]
                    assert counts == sorted(set(counts)), counts  # strictly increasing
                    if ABSOLUTE in entries:
                        assert keys[-1] == ABSOLUTE  # marl-eval reads a run's last entry as these
                        assert set(entries[ABSOLUTE]) == metric_names
                        assert all(isinstance(v, list) and v for v in entries[ABSOLUTE].values())
                    runs[env, task, algo, seed] = entries
    return runs


def _read(run_dir):
    return check_marl_eval_schema(json.loads((run_dir / "metrics.json").read_text()))


def _steps(entries):
    return [v for k, v in entries.items() if k != ABSOLUTE]


def test_on_policy_run_writes_metrics_and_resume_appends(tmp_path):
    run(compose_config(*TINY_MPE, "seed=3"), tmp_path)
    runs = _read(tmp_path)
    assert list(runs) == [("mpe", "simple_spread-continuous", "happo", "seed_3")]
    first = runs["mpe", "simple_spread-continuous", "happo", "seed_3"]
    assert [s["step_count"] for s in _steps(first)] == [40, 80]
    for step in _steps(first):
        assert len(step["return"]) == len(step["episode_length"]) == EVAL_EPISODES
        assert step["episode_length"] == [25] * EVAL_EPISODES
    absolute = first[ABSOLUTE]
    assert (
        len(absolute["return"]) == len(absolute["episode_length"]) == ABSOLUTE_EPISODES_FACTOR * EVAL_EPISODES
    )

    # the per-episode lists are the ones behind progress.csv's eval columns
    import pandas as pd

    progress = pd.read_csv(tmp_path / "progress.csv")
    means = [sum(s["return"]) / EVAL_EPISODES for s in _steps(first)]
    assert progress["eval_return"].tolist() == pytest.approx(means, rel=1e-5)

    resume = ["total_steps=160", f"resume={tmp_path}"]
    run(compose_config(*TINY_MPE, "seed=3", *resume), tmp_path, resume)
    resumed = _read(tmp_path)["mpe", "simple_spread-continuous", "happo", "seed_3"]
    assert [s["step_count"] for s in _steps(resumed)] == [40, 80, 120, 160]
    assert _steps(resumed)[:2] == _steps(first)  # recorded steps are kept as they were
    assert len(resumed[ABSOLUTE]["return"]) == ABSOLUTE_EPISODES_FACTOR * EVAL_EPISODES


def test_off_policy_run_writes_metrics(tmp_path):
    run(compose_config("algo=hatd3", *TINY_OFF, "env=mpe", "env.continuous=true"), tmp_path)
    entries = _read(tmp_path)["mpe", "simple_spread-continuous", "hatd3", "seed_1"]
    # the off-policy loop also evaluates after its first iteration (20 env steps)
    assert [s["step_count"] for s in _steps(entries)] == [20, 40, 80, 120]
    assert all(len(s["return"]) == EVAL_EPISODES for s in _steps(entries))
    assert len(entries[ABSOLUTE]["return"]) == ABSOLUTE_EPISODES_FACTOR * EVAL_EPISODES


def test_absolute_metrics_evaluate_best_checkpoint_and_leave_learner_as_trained(tmp_path, monkeypatch):
    from harl.common.checkpoint import load_checkpoint
    from runners import base

    calls = []
    original = base.evaluate

    def spy(policy, env, n_episodes, device, **kwargs):
        actor = {k: v.clone() for k, v in policy.actors[0].state_dict().items()}
        calls.append((n_episodes, actor))
        return original(policy, env, n_episodes, device, **kwargs)

    after = {}
    original_absolute = base.Runner.absolute_evaluation

    def absolute_spy(self):
        result = original_absolute(self)
        after.update({k: v.clone() for k, v in self.learner.actors[0].state_dict().items()})
        return result

    monkeypatch.setattr(base, "evaluate", spy)
    monkeypatch.setattr(base.Runner, "absolute_evaluation", absolute_spy)
    run(compose_config(*TINY_MPE, "total_steps=120"), tmp_path)
    assert [n for n, _ in calls] == [2, 2, 2, 20]
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    latest = load_checkpoint(tmp_path)
    for k, v in calls[-1][1].items():  # the absolute metrics: best.pt's policy
        torch.testing.assert_close(v, best["learner"]["actors"][0][k], rtol=0, atol=0)
    # ... and the learner is left as trained: the final weights, as saved in latest.pt
    if best["counters"]["env_steps"] != latest["counters"]["env_steps"]:  # (so with this seed)
        assert not all(torch.equal(best["learner"]["actors"][0][k], v) for k, v in after.items())
    for k, v in after.items():
        torch.testing.assert_close(v, latest["learner"]["actors"][0][k], rtol=0, atol=0)
    best_step = best["counters"]["env_steps"]
    entries = _read(tmp_path)["mpe", "simple_spread-continuous", "happo", "seed_1"]
    best_eval = max(_steps(entries), key=lambda s: sum(s["return"]))
    assert best_eval["step_count"] == best_step


def test_no_metrics_file_without_evaluation(tmp_path):
    run(compose_config(*TINY_MPE, "eval_interval=0"), tmp_path)
    assert not (tmp_path / "metrics.json").exists()


# ------------------------------------------------------------------ the writer
def _log(path, seed=1, keep_until=0):
    return MarlEvalLog(path, "mpe", "simple_spread-continuous", "happo", seed, keep_until=keep_until)


def test_writer_keeps_steps_up_to_the_checkpoint_and_other_runs(tmp_path):
    path = tmp_path / "metrics.json"
    log = _log(path)
    for step in (10, 20, 30):
        log.record_step(step, episode_metrics([float(step), 1.0], [5, 5]))
    log.record_absolute(episode_metrics([1.0] * 20, [5] * 20))
    _log(path, seed=2).record_step(10, episode_metrics([0.0, 0.0], [5, 5]))

    # resumed from a checkpoint at 20 env steps: the step at 30 is redone, absolute recomputed
    resumed = _log(path, keep_until=20)
    assert [s["step_count"] for s in resumed.steps] == [10, 20]
    resumed.record_step(30, episode_metrics([3.0, 3.0], [5, 5]))
    runs = check_marl_eval_schema(json.loads(path.read_text()))
    ours = runs["mpe", "simple_spread-continuous", "happo", "seed_1"]
    assert list(ours) == ["step_0", "step_1", "step_2"] and ours["step_2"]["return"] == [3.0, 3.0]
    assert list(runs["mpe", "simple_spread-continuous", "happo", "seed_2"]) == ["step_0"]

    with pytest.raises(ValueError, match="not after"):
        resumed.record_step(30, episode_metrics([0.0], [1]))


def test_writer_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    log = _log(path)
    log.record_step(10, episode_metrics([1.0, 2.0], [5, 5]))
    before = path.read_text()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", crash)
    with pytest.raises(OSError, match="disk full"):
        log.record_step(20, episode_metrics([1.0, 2.0], [5, 5]))
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left


def test_unreadable_file_is_set_aside(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("{not json")
    _log(path).record_step(10, episode_metrics([1.0], [5]))
    assert (tmp_path / "metrics.json.unreadable").read_text() == "{not json"
    check_marl_eval_schema(json.loads(path.read_text()))


def test_win_rate_is_a_one_element_percentage():
    metrics = episode_metrics([1.0, 2.0, 3.0, 4.0], [5, 5, 5, 5], won=[True, False, True, True])
    assert metrics["win_rate"] == [75.0] and len(metrics["return"]) == 4


# ------------------------------------------------------------------ saved_weights
class _Net:
    """A learner-like object: its state_dict shares the module's tensors, or copies them."""

    def __init__(self, copies: bool = False) -> None:
        self.net = torch.nn.Linear(3, 2)
        self.scale = torch.ones(1)
        self.copies = copies

    def state_dict(self):
        scale = self.scale.clone() if self.copies else self.scale
        return {"net": self.net.state_dict(), "scale": scale, "calls": 1}

    def load_state_dict(self, state):
        self.net.load_state_dict(state["net"])
        self.scale.copy_(state["scale"])


@pytest.mark.parametrize("copies", [False, True], ids=["in-place", "copied-learner"])
def test_saved_weights_acts_with_saved_tensors_and_restores(copies):
    learner = _Net(copies)
    torch.manual_seed(0)
    saved = {
        "net": {k: torch.randn_like(v) for k, v in learner.net.state_dict().items()},
        "scale": torch.full((1,), 5.0),
        "calls": 7,
    }
    own = {k: v.clone() for k, v in learner.net.state_dict().items()}
    with saved_weights(learner, saved) as policy:
        assert (policy is learner) is not copies
        torch.testing.assert_close(policy.net.weight, saved["net"]["weight"])
        assert policy.scale.item() == 5.0
    for k, v in learner.net.state_dict().items():
        torch.testing.assert_close(v, own[k], rtol=0, atol=0)
    assert learner.scale.item() == 1.0
