"""`python -m harl.evaluate`: evaluating a run dir's checkpoints, rendering videos, bad input."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from harl.common.checkpoint import CheckpointError
from harl.config import compose_config
from harl.evaluate import EvaluateError, UsageError, evaluate_run, main, parse_args
from harl.train import run
from tests.conftest import TINY_MAMUJOCO, TINY_MPE
from tests.test_off_policy import TINY_OFF


@pytest.fixture(scope="module")
def mpe_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mpe_run")
    run(compose_config(*TINY_MPE, "env.continuous=false"), run_dir)
    return run_dir


def _frames(path) -> int:
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def test_evaluates_the_requested_episodes_and_prints_mean_and_std(mpe_run, capsys):
    metrics = evaluate_run(mpe_run, episodes=3)
    out = capsys.readouterr().out
    assert metrics["episodes"] == 3 and len(metrics["returns"]) == len(metrics["lengths"]) == 3
    assert metrics["eval_return"] == pytest.approx(np.mean(metrics["returns"]))
    assert metrics["eval_return_std"] == pytest.approx(np.std(metrics["returns"]))
    assert metrics["checkpoint"].endswith("best.pt") and metrics["env_steps"] in (40, 80)
    assert (
        f"3 deterministic episodes: return {metrics['eval_return']:.3f} ± "
        f"{metrics['eval_return_std']:.3f}, length 25.0"
    ) in out


def test_best_checkpoint_reproduces_its_logged_evaluation(mpe_run):
    """The first evaluation of a run and a re-evaluation with the run's seed see the same
    episodes, so evaluating the checkpoint of that step reproduces its logged returns."""
    import json

    logged = json.loads((mpe_run / "metrics.json").read_text())
    steps = logged["mpe"]["simple_spread-discrete"]["happo"]["seed_1"]
    from harl.common.checkpoint import load_checkpoint

    if load_checkpoint(mpe_run / "checkpoints" / "best.pt")["counters"]["env_steps"] != 40:
        pytest.skip("best.pt is not from the first evaluation with this seed")
    metrics = evaluate_run(mpe_run, "best", episodes=2, out=lambda _: None)
    assert metrics["returns"] == pytest.approx(steps["step_0"]["return"], rel=1e-5)


def test_cli_main_with_latest_checkpoint_and_seed(mpe_run, capsys):
    assert main([f"run_dir={mpe_run}", "checkpoint=latest", "episodes=2", "seed=5", "device=cpu"]) == 0
    out = capsys.readouterr().out
    assert "latest.pt (80 env steps)" in out and "2 deterministic episodes: return" in out


def test_render_writes_an_mpe_video_with_the_same_returns(mpe_run, tmp_path):
    video = tmp_path / "clip.mp4"
    metrics = evaluate_run(mpe_run, episodes=2, video=video, out=lambda _: None)
    # one frame after reset and one after every step of each episode
    assert video.is_file() and metrics["frames"] == 2 * 26 and _frames(video) == 2 * 26
    plain = evaluate_run(mpe_run, episodes=1, out=lambda _: None)  # batched backend, env 0
    assert metrics["returns"][0] == pytest.approx(plain["returns"][0], rel=1e-4)


def test_render_default_video_path(mpe_run, capsys):
    main([f"run_dir={mpe_run}", "render=true"])
    videos = list((mpe_run / "videos").glob("best-*.mp4"))
    assert len(videos) == 1 and _frames(videos[0]) == 26  # one episode by default
    out = capsys.readouterr().out
    assert f"video (26 frames, 10 fps): {videos[0]}" in out
    assert f"rendering 1 episode of mpe/simple_spread-discrete to {videos[0]} (10 fps)" in out
    assert re.search(r"^rendering episode 1/1: done, 26 frames in \d+ s$", out, re.M)


def test_render_reports_its_progress(mpe_run, tmp_path):
    """Rendering a long MuJoCo episode takes minutes: it says where it is every few frames."""
    lines: list[str] = []
    evaluate_run(mpe_run, episodes=2, video=tmp_path / "clip.mp4", out=lines.append, progress_every=10)
    progress = [re.sub(r"in \d+ s", "in N s", line) for line in lines if line.startswith("rendering episode")]
    assert progress == [
        f"rendering episode {k}/2: {text}"
        for k in (1, 2)
        for text in ("10/26 frames", "20/26 frames", "done, 26 frames in N s")
    ]
    assert (
        lines[0] == f"rendering 2 episodes of mpe/simple_spread-discrete to {tmp_path / 'clip.mp4'} (10 fps)"
    )


def test_mamujoco_camera_follows_the_robot_configuration():
    """Without a display: the camera settings chosen for MaMuJoCo videos."""
    import mujoco

    from envs import make_env
    from envs.mamujoco import tracking_camera_config

    for scenario, agent_conf in (("HalfCheetah", "2x3"), ("Walker2d", "2x3")):
        env = make_env("mamujoco", scenario=scenario, agent_conf=agent_conf)
        model = env._mujoco.model
        torso = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "torso")
        gym_default = {"trackbodyid": 2, "distance": 4.0, "lookat": np.array((0.0, 0.0, 1.15))}
        config = tracking_camera_config(model, gym_default)
        assert (
            config
            == {
                "distance": 4.0,
                "elevation": -20.0,
                "type": int(mujoco.mjtCamera.mjCAMERA_TRACKING),
                "trackbodyid": torso,
                "fixedcamid": -1,
            }
            and torso >= 1
        )
        assert tracking_camera_config(model, {"elevation": -10.0})["elevation"] == -10.0
        env.close()


def test_render_mamujoco_video(tmp_path):
    from envs.mamujoco import RenderBackendError, ensure_gl_backend

    try:
        ensure_gl_backend()
    except RenderBackendError as exc:
        pytest.skip(f"no OpenGL backend for MuJoCo here: {exc}")
    run(compose_config(*TINY_MAMUJOCO, "env.max_episode_steps=10"), tmp_path)
    metrics = evaluate_run(tmp_path, episodes=1, video=tmp_path / "cheetah.mp4", out=lambda _: None)
    assert metrics["lengths"] == [10] and _frames(tmp_path / "cheetah.mp4") == 11
    plain = evaluate_run(tmp_path, episodes=1, out=lambda _: None)
    assert metrics["returns"][0] == pytest.approx(plain["returns"][0], rel=1e-5)


def _robot_pixels(frame: np.ndarray) -> int:
    """Pixels of the MuJoCo robots' orange/pink (the floor is green, black and white, the sky grey)."""
    rgb = frame.astype(int)
    return int(((rgb[..., 0] - rgb[..., 2] > 60) & (rgb[..., 0] > 120)).sum())


def test_mamujoco_video_camera_tracks_the_torso():
    """Rendering: the camera's look-at point is on the torso wherever it goes (gymnasium's free
    camera would stay where the episode started)."""
    import mujoco

    from envs import make_env
    from envs.mamujoco import RenderBackendError, ensure_gl_backend

    try:
        ensure_gl_backend()
    except RenderBackendError as exc:
        pytest.skip(f"no OpenGL backend for MuJoCo here: {exc}")
    env = make_env("mamujoco", scenario="HalfCheetah", agent_conf="2x3", render_mode="rgb_array")
    env.reset(seed=1)
    first = env.render()
    sim = env._mujoco
    torso = mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_BODY, "torso")
    qpos = sim.data.qpos.copy()
    qpos[0] += 20.0  # the root's x: 20 m further on
    sim.set_state(qpos, sim.data.qvel.copy())
    moved = env.render()
    camera = env.camera
    assert camera.type == mujoco.mjtCamera.mjCAMERA_TRACKING and camera.trackbodyid == torso
    assert camera.lookat == pytest.approx(sim.data.subtree_com[torso]) and camera.lookat[0] > 19
    # the robot is still in the picture (with the free camera none of its pixels would be)
    assert _robot_pixels(moved) > 0.5 * _robot_pixels(first) > 500
    env.close()


def test_off_policy_run_evaluates(tmp_path):
    run(compose_config("algo=hatd3", *TINY_OFF, "env=mpe", "total_steps=60"), tmp_path)
    metrics = evaluate_run(tmp_path, episodes=2, out=lambda _: None)
    assert metrics["lengths"] == [25, 25]


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "run_dir=<dir> is required"),
        (["run_dir"], "expected key=value"),
        (["run_dir=x", "episode=3"], "unknown key 'episode'; valid: run_dir, checkpoint"),
        (["run_dir=x", "episodes=0"], "episodes must be >= 1"),
        (["run_dir=x", "seed=one"], "seed must be an integer"),
        (["run_dir=x", "render=maybe"], "render must be true or false"),
        (["run_dir=x", "video=clip.gif"], "video must be an .mp4"),
    ],
)
def test_bad_arguments_print_usage(argv, message, capsys):
    with pytest.raises(UsageError, match=message):
        parse_args(argv)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "usage: python -m harl.evaluate" in err


def test_video_implies_render():
    assert parse_args(["run_dir=x", "video=a.mp4"]).render


def test_bad_run_dirs_and_checkpoints_are_clear_errors(tmp_path, mpe_run):
    with pytest.raises(EvaluateError, match="does not exist"):
        evaluate_run(tmp_path / "nope")
    with pytest.raises(EvaluateError, match="not a harl run dir: it has no config.yaml"):
        evaluate_run(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("algo: {name: nope}\nenv: {name: mpe}\n")
    with pytest.raises(EvaluateError, match="not a usable harl config: unknown algorithm 'nope'"):
        evaluate_run(broken)
    with pytest.raises(EvaluateError, match="checkpoint 'missing.pt' does not exist"):
        evaluate_run(mpe_run, checkpoint="missing.pt")
    # a checkpoint of another task does not fit this run
    other = tmp_path / "other"
    run(compose_config(*TINY_MPE, "env.continuous=true", "eval_interval=0"), other)
    with pytest.raises(EvaluateError, match="has no checkpoints/best.pt"):
        evaluate_run(other, checkpoint="best")
    with pytest.raises(CheckpointError, match="does not fit this run: task"):
        evaluate_run(mpe_run, checkpoint=str(other / "checkpoints" / "latest.pt"))


def test_cli_bad_run_dir_exits_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "harl.evaluate", f"run_dir={tmp_path / 'nope'}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        (
            f"error: run dir '{tmp_path / 'nope'}' does not exist; pass a run directory "
            "(results/<env>/<task>/<algo>/seed<N>-<time>)"
        )
    ]


def test_no_gl_backend_is_a_clear_error(monkeypatch):
    from envs import mamujoco

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(mamujoco, "_gl_backend", None)
    monkeypatch.setattr(
        mamujoco.subprocess,
        "run",
        lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "Traceback ...\nImportError: no GL here"),
    )
    with pytest.raises(
        mamujoco.RenderBackendError, match="tried MUJOCO_GL=egl, osmesa .egl: ImportError: no GL here; osmesa"
    ):
        mamujoco.ensure_gl_backend()


def test_render_mode_is_checked():
    from envs import make_env

    with pytest.raises(ValueError, match="unknown MPE render_mode 'human'; valid: rgb_array"):
        make_env("mpe", scenario="simple_spread", render_mode="human")
    with pytest.raises(ValueError, match="unknown render_mode 'human'; valid: rgb_array"):
        make_env("mamujoco", scenario="HalfCheetah", agent_conf="2x3", render_mode="human")
