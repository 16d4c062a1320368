"""Evaluate (and optionally film) a trained run:

    python -m harl.evaluate run_dir=<dir> [checkpoint=best|latest|<path>] [episodes=N]
                            [render=true] [video=<path.mp4>] [device=cpu] [seed=N]

Loads the run's config.yaml and a checkpoint's networks, runs N deterministic episodes and prints
the mean ± std return and length. `render=true` plays the episodes one after another in a single
env (MPE: mpe2, MaMuJoCo: the MuJoCo scene) and writes them to an mp4 video
(`<run_dir>/videos/<checkpoint>-<time>.mp4` unless `video=` names the file).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs.base import MultiAgentEnv, StepResult

USAGE = """\
usage: python -m harl.evaluate run_dir=<dir> [checkpoint=best|latest|<path>] [episodes=N]
                               [render=true|false] [video=<path.mp4>] [device=cpu|cuda|auto] [seed=N]

  run_dir     a harl run directory (holds config.yaml and checkpoints/)
  checkpoint  best (default; latest if the run has no best.pt), latest, or a .pt file
  episodes    deterministic episodes to run (default: the run's eval_episodes; 1 with render=true)
  render      true: play the episodes in one env and write them to an mp4 video
  video       the video file (implies render=true; default <run_dir>/videos/<checkpoint>-<time>.mp4)
  device      torch device for the policy (default cpu)
  seed        seed of the evaluation envs (default: the run's seed)"""

KEYS = ("run_dir", "checkpoint", "episodes", "render", "video", "device", "seed")
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class UsageError(ValueError):
    """Bad command-line arguments."""


class EvaluateError(RuntimeError):
    """A run directory or checkpoint that cannot be evaluated."""


@dataclass
class EvalArgs:
    run_dir: Path
    checkpoint: str | None = None  # None: best, falling back to latest
    episodes: int | None = None
    render: bool = False
    video: Path | None = None
    device: str = "cpu"
    seed: int | None = None


def parse_args(argv: Sequence[str]) -> EvalArgs:
    values: dict[str, str] = {}
    for token in argv:
        key, sep, value = token.partition("=")
        if not sep:
            raise UsageError(f"expected key=value, got {token!r}")
        if key not in KEYS:
            raise UsageError(f"unknown key {key!r}; valid: {', '.join(KEYS)}")
        if not value:
            raise UsageError(f"{key}= needs a value")
        values[key] = value
    if "run_dir" not in values:
        raise UsageError("run_dir=<dir> is required")
    args = EvalArgs(
        run_dir=Path(values["run_dir"]).expanduser(),
        checkpoint=values.get("checkpoint"),
        device=values.get("device", "cpu"),
    )
    for key in ("episodes", "seed"):
        if key in values:
            try:
                setattr(args, key, int(values[key]))
            except ValueError:
                raise UsageError(f"{key} must be an integer, got {values[key]!r}") from None
    if args.episodes is not None and args.episodes < 1:
        raise UsageError(f"episodes must be >= 1, got {args.episodes}")
    if "render" in values:
        flag = values["render"].lower()
        if flag not in TRUE + FALSE:
            raise UsageError(f"render must be true or false, got {values['render']!r}")
        args.render = flag in TRUE
    if "video" in values:
        args.video = Path(values["video"]).expanduser()
        if args.video.suffix.lower() != ".mp4":
            raise UsageError(f"video must be an .mp4 file, got {values['video']!r}")
        args.render = True
    return args


# ------------------------------------------------------------------ loading a run
def load_run_config(run_dir: Path) -> Any:
    """The run's saved config, typed by its algorithm's and env's schemas."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from harl.config import schema_for

    if not run_dir.is_dir():
        raise EvaluateError(
            f"run dir {str(run_dir)!r} does not exist; pass a run directory "
            f"(results/<env>/<task>/<algo>/seed<N>-<time>)"
        )
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise EvaluateError(f"{str(run_dir)!r} is not a harl run dir: it has no config.yaml")
    saved = OmegaConf.load(path)
    try:
        return OmegaConf.merge(schema_for(saved.algo.name, saved.env.name), saved)
    except (OmegaConfBaseException, ValueError) as exc:  # an edited or foreign config.yaml
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise EvaluateError(f"{str(path)!r} is not a usable harl config: {first_line}") from None


def checkpoint_path(run_dir: Path, which: str | None) -> tuple[Path, str]:
    """(checkpoint file, label for file names) for `checkpoint=best|latest|<path>`."""
    from harl.common.checkpoint import BEST, CHECKPOINT_DIR, LATEST

    folder = run_dir / CHECKPOINT_DIR
    if which is None:
        which = "best" if (folder / BEST).is_file() else "latest"
    if which in ("best", "latest"):
        path = folder / (BEST if which == "best" else LATEST)
        if not path.is_file():
            raise EvaluateError(
                f"run dir {str(run_dir)!r} has no {CHECKPOINT_DIR}/{path.name}"
                + (
                    " (it never evaluated; use checkpoint=latest)"
                    if which == "best"
                    else " (it was never checkpointed)"
                )
            )
        return path, which
    path = Path(which).expanduser()
    if not path.is_file():
        raise EvaluateError(f"checkpoint {which!r} does not exist (use best, latest or a .pt file)")
    return path, path.stem


def load_policy(cfg: Any, run_dir: Path, path: Path, spec: Any, device: Any) -> tuple[Any, dict[str, Any]]:
    """A learner with the checkpoint's networks, and the checkpoint's counters."""
    from omegaconf import OmegaConf

    from harl.algos import learner_class
    from runners.base import CheckpointIO, checkpoint_identity

    learner = learner_class(cfg.algo.name)(
        OmegaConf.to_object(cfg.algo),
        spec.observation_spaces,
        spec.action_spaces,
        spec.state_space,
        device,
        cfg.seed,
    )
    payload = CheckpointIO(run_dir, checkpoint_identity(cfg, spec)).load_learner(path, learner, device)
    return learner, payload.get("counters", {})


# ------------------------------------------------------------------ rendering
class FrameRecorder(MultiAgentEnv):
    """Hands every frame of the first `n_episodes` episodes (after reset and after each step,
    so the final state of an episode is included) to `on_frame`, and reports progress to
    `progress` (rendering can take minutes: MuJoCo renders a frame in about 0.1 s on a CPU):
    every `every` frames of an episode and at its end."""

    def __init__(
        self,
        env: MultiAgentEnv,
        on_frame: Callable[[np.ndarray], None],
        n_episodes: int,
        progress: Callable[[str], None] | None = None,
        every: int = 100,
    ) -> None:
        self.env, self.spec = env, env.spec
        self._on_frame, self._left, self._n = on_frame, n_episodes, n_episodes
        self._progress, self._every = progress, every
        self._episode, self._frames, self._started = 0, 0, time.perf_counter()

    def _record(self) -> None:
        self._on_frame(self.env.render())
        self._frames += 1

    def _say(self, text: str) -> None:
        if self._progress is not None:
            self._progress(f"rendering episode {self._episode}/{self._n}: {text}")

    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray, dict[str, Any]]:
        out = self.env.reset(seed)
        if self._left > 0:
            self._episode, self._frames, self._started = self._episode + 1, 0, time.perf_counter()
            self._record()
        return out

    def step(self, actions: list[np.ndarray]) -> StepResult:
        result = self.env.step(actions)
        if self._left > 0:
            self._record()
            done = result.terminated or result.truncated
            if done:
                self._say(f"done, {self._frames} frames in {time.perf_counter() - self._started:.0f} s")
            elif self._every and self._frames % self._every == 0:
                limit = getattr(self.spec, "episode_limit", None)
                self._say(f"{self._frames}" + (f"/{limit + 1}" if limit else "") + " frames")
            self._left -= int(done)
        return result

    def close(self) -> None:
        self.env.close()


class VideoWriter:
    """An H.264 mp4 written frame by frame (imageio + imageio-ffmpeg)."""

    def __init__(self, path: Path, fps: float) -> None:
        try:
            import imageio.v2 as imageio
            import imageio_ffmpeg  # noqa: F401  (imageio's ffmpeg plugin needs it)
        except ImportError as exc:
            raise EvaluateError(
                f"render=true needs imageio and imageio-ffmpeg ({exc}); "
                "pip install imageio==2.38.1 imageio-ffmpeg==0.8.1"
            ) from None
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.frames = path, 0
        # yuv420p (what players expect) needs even sizes; 2 keeps MPE's 700 x 700 unscaled
        self._writer = imageio.get_writer(
            str(path),
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=2,
        )

    def __call__(self, frame: np.ndarray) -> None:
        self._writer.append_data(np.asarray(frame, dtype=np.uint8))
        self.frames += 1

    def close(self) -> None:
        self._writer.close()


# ------------------------------------------------------------------ evaluation
def say(text: str) -> None:
    """Print a line at once (also when stdout is a file: rendering progress is live)."""
    print(text, flush=True)


def evaluate_run(
    run_dir: str | Path,
    checkpoint: str | None = None,
    episodes: int | None = None,
    render: bool = False,
    video: str | Path | None = None,
    device: str = "cpu",
    seed: int | None = None,
    out: Callable[[str], None] = say,
    progress_every: int = 100,
    watch: Callable[[MultiAgentEnv], MultiAgentEnv] | None = None,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on `episodes` deterministic episodes; print and return the
    summary (eval_return, eval_return_std, eval_length), the per-episode `returns` and
    `lengths`, the checkpoint and its env steps, and the video path with render. Rendering
    prints its progress: where the video goes, then every `progress_every` frames of an
    episode and at its end. `watch`: the episodes run one after another in a single env passed
    through `watch(env)`, a wrapper that sees every reset and step (harl.posture's)."""
    from envs import make_env, make_vec_env
    from envs.vector import VecEnv
    from harl.common.device import configure_threads, resolve_device
    from harl.common.seeding import env_seeds
    from harl.models.linear import set_cpu_matmul
    from harl.train import env_kwargs
    from runners.base import evaluate

    run_dir = Path(run_dir).expanduser()
    cfg = load_run_config(run_dir)
    path, label = checkpoint_path(run_dir, checkpoint)
    render = render or video is not None
    if render and watch is not None:
        raise ValueError("evaluate_run: render and watch cannot be combined")
    n_episodes = episodes if episodes is not None else (1 if render else max(int(cfg.eval_episodes), 1))
    seed = cfg.seed if seed is None else seed
    torch_device = resolve_device(device)
    configure_threads(cfg.torch_threads)
    set_cpu_matmul(cfg.cpu_matmul)
    kwargs = env_kwargs(cfg.env)

    writer: VideoWriter | None = None
    if render:
        # one env, built here so that a missing render backend is reported as itself
        single = make_env(cfg.env.name, **kwargs, render_mode="rgb_array")
        try:
            video = (
                Path(video)
                if video is not None
                else (run_dir / "videos" / f"{label}-{time.strftime('%Y%m%d-%H%M%S')}.mp4")
            )
            writer = VideoWriter(video, single.render_fps)
        except BaseException:
            single.close()
            raise
        out(
            f"rendering {n_episodes} episode{'s' * (n_episodes != 1)} of {cfg.env.name}/{cfg.env.task} "
            f"to {writer.path} ({single.render_fps:g} fps)"
        )
        recorder = FrameRecorder(single, writer, n_episodes, out, progress_every)
        envs = VecEnv(lambda: recorder, 1, 0, env_seeds(seed, "eval", 1))
    elif watch is not None:
        watched = watch(make_env(cfg.env.name, **kwargs))
        envs = VecEnv(lambda: watched, 1, 0, env_seeds(seed, "eval", 1))
    else:
        n_envs = max(1, min(int(cfg.n_eval_envs), n_episodes))
        envs = make_vec_env(
            cfg.env.name, kwargs, n_envs=n_envs, n_workers=0, seeds=env_seeds(seed, "eval", n_envs)
        )
    try:
        learner, counters = load_policy(cfg, run_dir, path, envs.spec, torch_device)
        result = evaluate(learner, envs, n_episodes, torch_device)
    finally:
        envs.close()
        if writer is not None:
            writer.close()

    steps = counters.get("env_steps")
    out(
        f"{cfg.algo.name} on {cfg.env.name}/{cfg.env.task}, checkpoint {path}"
        + (f" ({steps:,} env steps)" if isinstance(steps, int) else "")
    )
    out(
        f"{n_episodes} deterministic episode{'s' * (n_episodes != 1)}: return "
        f"{result['eval_return']:.3f} ± {result['eval_return_std']:.3f}, length {result['eval_length']:.1f}"
    )
    metrics: dict[str, Any] = {
        **result,
        "episodes": n_episodes,
        "returns": result.returns,
        "lengths": result.lengths,
        "checkpoint": str(path),
        "env_steps": steps,
    }
    if writer is not None:
        out(f"video ({writer.frames} frames, {single.render_fps:g} fps): {writer.path}")
        metrics.update(video=str(writer.path), frames=writer.frames)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return 0
    try:
        args = parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}\n\n{USAGE}", file=sys.stderr)
        return 2
    from envs.base import RenderError
    from envs.vec_types import EnvWorkerError
    from harl.common.checkpoint import CheckpointError

    try:
        evaluate_run(
            args.run_dir, args.checkpoint, args.episodes, args.render, args.video, args.device, args.seed
        )
    except (EvaluateError, CheckpointError, RenderError, EnvWorkerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # e.g. an env failing while rendering: name the root cause
        root: BaseException = exc
        while root.__cause__ is not None:
            root = root.__cause__
        if root is exc:
            raise
        print(f"error: {exc}: {type(root).__name__}: {root}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
