"""tools/posture.py: the torso's pitch of planar MaMuJoCo robots, read from the state."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from envs import make_env
from harl import posture as tool
from harl.config import compose_config
from harl.reproduce import report, runs
from harl.reproduce.suites import Cell
from harl.train import run
from tests.conftest import TINY_MAMUJOCO, TINY_MPE


def test_pitch_summary_by_hand():
    # cos: 1, -1, 0.99500, -0.70711, 0.26750 (nose up, not over); the hinge angle is not wrapped
    share, mean_cos = tool.pitch_summary([0.0, math.pi, 2 * math.pi + 0.1, -0.75 * math.pi, 1.3])
    assert share == pytest.approx(2 / 5)
    assert mean_cos == pytest.approx((1 - 1 + math.cos(0.1) - math.sqrt(0.5) + math.cos(1.3)) / 5)
    with pytest.raises(ValueError, match="no pitch"):
        tool.pitch_summary([])


def _set_pitch(env, angle: float) -> None:
    model, data = env._mujoco.model, env._mujoco.data
    data.qpos[model.jnt_qposadr[model.joint("rooty").id]] = angle


@pytest.mark.parametrize(
    ("scenario", "agent_conf"), [("HalfCheetah", "2x3"), ("Hopper", "3x1"), ("Walker2d", "2x3")]
)
def test_the_recorder_keeps_the_raw_pitch_whatever_the_observations_show(scenario, agent_conf):
    """The pitch is the state's entry 1 (Gymnasium's observation leaves out x), also with
    z-scored observations, where the state no longer shows it."""
    assert scenario in tool.PLANAR_SCENARIOS
    raw = make_env("mamujoco", scenario=scenario, agent_conf=agent_conf)
    scored = make_env("mamujoco", scenario=scenario, agent_conf=agent_conf, zscore_obs=True)
    recorder = tool.PitchRecorder(scored, 2)
    try:
        # turned onto its back: the next pitch says so
        recorder.reset(seed=3)
        _set_pitch(scored, math.pi)
        recorder.step([np.zeros(s.shape, np.float32) for s in scored.spec.action_spaces])
        assert tool.pitch_summary(recorder.pitches[-1:])[0] == 1.0
        recorder.pitches.clear()
        recorder.reset(seed=3)
        pitches = [float(raw.reset(seed=3)[1][1])]
        rng = np.random.default_rng(0)
        for _ in range(40):
            actions = [rng.uniform(-1, 1, s.shape).astype(np.float32) for s in raw.spec.action_spaces]
            result = recorder.step(actions)
            pitches.append(float(raw.step(actions).state[1]))
            if result.terminated or result.truncated:
                break
        assert recorder.pitches == pytest.approx(pitches, abs=1e-6)
        assert np.ptp(pitches) > 1e-3  # the torso moved, so the match is not a constant's
    finally:
        recorder.close()
        raw.close()


@pytest.fixture(scope="module")
def cheetah_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cheetah")
    run(compose_config(*TINY_MAMUJOCO), run_dir)
    return run_dir


def test_the_tool_plays_the_checkpoint_and_records_every_step(cheetah_run, capsys):
    r = tool.posture(cheetah_run, "latest", episodes=2, seed=None)
    assert r["checkpoint"].endswith("latest.pt") and r["env_steps"] == 80
    # two 30-step episodes: a reset and 30 steps each
    assert len(r["pitches"]) == 2 * (1 + 30)
    assert (r["upside_down"], r["mean_cos_pitch"]) == tool.pitch_summary(r["pitches"])
    assert tool.main([str(cheetah_run), "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert "| return | upside down | mean cos(pitch) |" in out and f"| {cheetah_run} | best.pt | " in out


def test_refuses_runs_of_other_envs(tmp_path, capsys):
    run(compose_config(*TINY_MPE), tmp_path)
    assert tool.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "mpe/simple_spread" in err and "planar MaMuJoCo robots only: HalfCheetah, Hopper, Walker2d" in err
    with pytest.raises(SystemExit):
        tool.parse_args([str(tmp_path), "--episodes", "0"])


def test_run_posture_is_kept_until_the_checkpoint_changes(cheetah_run, monkeypatch):
    first = tool.run_posture(cheetah_run)
    assert first is not None and (cheetah_run / tool.CACHE_FILE).is_file()
    assert first["env_steps"] == 80 and 0.0 <= first["upside_down"] <= 1.0
    measured = tool.posture

    def must_not_run(*args, **kwargs):
        raise AssertionError("measured again although the checkpoint did not change")

    monkeypatch.setattr(tool, "posture", must_not_run)
    assert tool.run_posture(cheetah_run) == first
    latest = cheetah_run / "checkpoints" / "latest.pt"
    stat = latest.stat()
    os.utime(latest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a new checkpoint
    with pytest.raises(AssertionError, match="measured again"):
        tool.run_posture(cheetah_run)
    monkeypatch.setattr(tool, "posture", measured)
    assert tool.run_posture(cheetah_run)["upside_down"] == first["upside_down"]  # same episodes


def test_run_posture_leaves_other_runs_alone(tmp_path):
    run(compose_config(*TINY_MPE), tmp_path)
    assert tool.run_posture(tmp_path) is None and not (tmp_path / tool.CACHE_FILE).exists()
    assert tool.run_posture(tmp_path / "nothing") is None


def test_the_reproduction_report_shows_which_way_up_each_run_ran(tmp_path):
    cheetah = Cell("halfcheetah_2x3", "HalfCheetah 2x3", "happo", "mamujoco/halfcheetah_2x3/happo", 80, None)
    spread = Cell("spread", "Spread", "happo", "mpe/simple_spread_continuous/happo", 80, None)
    jobs = runs.jobs_for(tmp_path / "runs", "fake", [cheetah, spread], [1])
    run(compose_config(*TINY_MAMUJOCO), jobs[0].path)
    run(compose_config(*TINY_MPE), jobs[1].path)
    measured = tool.run_posture(jobs[0].path)
    assert measured is not None
    # the report shows the kept measurement (a made-up share, so that it cannot match by chance)
    cache = jobs[0].path / tool.CACHE_FILE
    cache.write_text(json.dumps({**measured, "upside_down": 0.37}))
    results = report.collect(jobs)
    table = report.runs_markdown(results, "eval_return").splitlines()
    assert table[0].endswith("| upside down |") and table[1].count("---") == 11
    assert table[2].endswith("| 37% |") and table[3].endswith("| — |")
    # a suite without planar robots has no such column
    assert "upside down" not in report.runs_markdown(results[1:], "eval_return")
