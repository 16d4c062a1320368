"""`<run_dir>/metrics.json` in the raw-data format of InstaDeep's marl-eval
(https://github.com/instadeepai/marl-eval, README "Data Structure for Raw Experiment data"):

    {env: {task: {algo: {"seed_<n>": {
        "step_0": {"step_count": <env steps>, "return": [one per eval episode],
                   "episode_length": [...]},
        ...
        "step_<k>": {...},
        "absolute_metrics": {"return": [10 x eval_episodes], "episode_length": [...]}}}}}}

Every logging step has the same metrics; a metric computed over all of a step's episodes
(a win rate) is a one-element list. `absolute_metrics` is the last key of a run, as marl-eval's
processing takes a run's last entry for it. Files from several runs merge with marl-eval's
`json_tools.concatenate_files` (it renames colliding seeds).

The file is rewritten atomically on every update, so it is always a complete, valid record. A
resumed run keeps the steps its checkpoint had reached and continues their numbering.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harl.common.atomic import atomic_write

log = logging.getLogger("harl")

METRICS_FILE = "metrics.json"
ABSOLUTE = "absolute_metrics"
STEP_PREFIX = "step_"


def seed_key(seed: int) -> str:
    return f"seed_{seed}"


def episode_metrics(
    returns: Sequence[float], lengths: Sequence[int], won: Sequence[bool] | None = None
) -> dict[str, list[float]]:
    """One evaluation's marl-eval metrics: per-episode "return" and "episode_length", plus
    "win_rate" (percent of episodes won, a one-element list) when the env reports wins."""
    metrics: dict[str, list[float]] = {
        "return": [float(r) for r in returns],
        "episode_length": [int(n) for n in lengths],
    }
    if won is not None:
        metrics["win_rate"] = [100.0 * sum(bool(w) for w in won) / max(len(won), 1)]
    return metrics


class MarlEvalLog:
    """The run's entry `{env: {task: {algo: {seed_<n>: ...}}}}` of a marl-eval metrics file.

    `keep_until`: steps already in the file with a larger step_count are dropped (a resumed
    run redoes them from its checkpoint; a fresh run, 0, starts its entry over), and so are the
    absolute metrics unless their run's last step is kept (`rewind_entry`); a new step drops
    them too. Entries of other runs in the same file are kept as they are.
    """

    def __init__(
        self, path: str | Path, env: str, task: str, algo: str, seed: int, keep_until: int = 0
    ) -> None:
        self.path = Path(path)
        self._keys = (str(env), str(task), str(algo), seed_key(seed))
        self._data = self._load()
        old = self._entry()
        kept, self._absolute = rewind_entry(old, keep_until)
        self._steps: list[dict[str, Any]] = kept
        n_old = sum(k.startswith(STEP_PREFIX) for k in old)
        if len(kept) < n_old:
            log.info(
                "%s: dropped %d evaluation step(s) past env step %s (redone from the checkpoint)",
                self.path.name,
                n_old - len(kept),
                f"{keep_until:,}",
            )

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self._steps)

    def record_step(self, step_count: int, metrics: Mapping[str, Sequence[float]]) -> None:
        """Append an evaluation at `step_count` env steps (strictly after the last one)."""
        if self._steps and step_count <= self._steps[-1]["step_count"]:
            raise ValueError(
                f"evaluation at env step {step_count} is not after the last recorded "
                f"one ({self._steps[-1]['step_count']})"
            )
        self._steps.append({"step_count": int(step_count), **{k: list(v) for k, v in metrics.items()}})
        self._absolute = None  # taken where the run ended before; it goes on past there now
        self._write()

    def has_absolute(self) -> bool:
        """Whether the run's absolute metrics are recorded (they come after its last step)."""
        return self._absolute is not None

    def record_absolute(self, metrics: Mapping[str, Sequence[float]]) -> None:
        """Set the run's absolute metrics (the final evaluation of its best policy)."""
        self._absolute = {k: list(v) for k, v in metrics.items()}
        self._write()

    # ------------------------------------------------------------------ file
    def _load(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            data, problem = None, str(exc)
        else:
            problem = "" if isinstance(data, dict) else "not a JSON object"
        if problem:
            backup = self.path.with_name(self.path.name + ".unreadable")
            os.replace(self.path, backup)
            log.warning(
                "%s is unreadable (%s); moved it to %s and started a new one", self.path, problem, backup.name
            )
            return {}
        return data

    def _entry(self) -> dict[str, Any]:
        node: Any = self._data
        for key in self._keys:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}

    def _write(self) -> None:
        env, task, algo, seed = self._keys
        run = build_entry(self._steps, self._absolute)
        self._data.setdefault(env, {}).setdefault(task, {}).setdefault(algo, {})[seed] = run
        write_json_atomic(self._data, self.path)


def rewind_entry(
    entry: Mapping[str, Any], keep_until: int
) -> tuple[list[dict[str, Any]], dict[str, list[float]] | None]:
    """What a run resumed at `keep_until` env steps keeps of its entry `{"step_<k>": ...,
    "absolute_metrics": ...}`: (its evaluation steps with step_count <= keep_until, by
    step_count; the absolute metrics or None). The absolute metrics are taken after a run's
    last evaluation step, so they are kept only when that step is kept too (a resume at or
    after the end of the run); a resume before it redoes the end and takes them anew."""
    steps = [
        (count, v)
        for k, v in entry.items()
        if k.startswith(STEP_PREFIX) and isinstance(v, Mapping) and (count := _step_count(v)) is not None
    ]
    kept = [dict(v) for count, v in sorted(steps, key=lambda step: step[0]) if count <= keep_until]
    absolute = entry.get(ABSOLUTE)
    recorded_at = max((count for count, _ in steps), default=None)
    if not isinstance(absolute, Mapping) or recorded_at is None or keep_until < recorded_at:
        return kept, None
    return kept, dict(absolute)


def build_entry(steps: Sequence[Mapping[str, Any]], absolute: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's entry from its steps (in order) and absolute metrics: step_0, step_1, ...,
    then absolute_metrics last (marl-eval reads a run's final entry as these)."""
    run: dict[str, Any] = {f"{STEP_PREFIX}{i}": dict(step) for i, step in enumerate(steps)}
    if absolute is not None:
        run[ABSOLUTE] = dict(absolute)
    return run


def _step_count(step: Mapping[str, Any]) -> int | None:
    try:
        return int(step["step_count"])
    except (KeyError, TypeError, ValueError):
        return None


def write_json_atomic(data: Any, path: str | Path) -> None:
    """Readers see the old file or the new one, never a partial one."""
    atomic_write(path, lambda f: json.dump(data, f, indent=1))


__all__ = [
    "ABSOLUTE",
    "METRICS_FILE",
    "MarlEvalLog",
    "build_entry",
    "episode_metrics",
    "rewind_entry",
    "seed_key",
    "write_json_atomic",
]
