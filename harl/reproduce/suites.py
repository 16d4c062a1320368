"""Reproduction suites: which tuned presets x seeds reproduce a paper experiment, at which budget,
and what the paper reported for each (task, algorithm). One YAML file per suite in suites/."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harl.config import CONF_DIR

SUITES_DIR = Path(__file__).resolve().parent / "suites"
PRESETS_DIR = Path(CONF_DIR) / "experiment"
SUITE_KEYS = {"description", "paper", "budget", "budget_by_algo", "seeds", "metric", "notes", "tasks"}
TASK_KEYS = {"title", "preset", "algos", "paper_values"}


@dataclass(frozen=True)
class Cell:
    """One (task, algorithm) of a suite: the preset it trains and the paper's value for it."""

    task: str  # the suite's task key, e.g. halfcheetah_2x3
    title: str  # what the report calls the task, e.g. HalfCheetah 2x3
    algo: str
    preset: str  # +experiment=<preset>
    budget: int  # env steps per run
    paper_value: tuple[float, float] | None  # the paper's final value as (low, high), equal for
    # one number; None: not reported or not found

    @property
    def key(self) -> str:
        return f"{self.task}/{self.algo}"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    paper: str  # where the paper values come from
    seeds: tuple[int, ...]
    metric: str
    cells: tuple[Cell, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(cell.task for cell in self.cells))


def suite_names() -> list[str]:
    return sorted(path.stem for path in SUITES_DIR.glob("*.yaml"))


def _fail(name: str, message: str) -> SystemExit:
    return SystemExit(f"suite {name!r} ({SUITES_DIR / (name + '.yaml')}): {message}")


def _unknown_keys(name: str, where: str, given: dict, allowed: set[str]) -> None:
    if extra := sorted(set(given) - allowed):
        raise _fail(
            name, f"unknown key(s) {', '.join(extra)} in {where}; valid: {', '.join(sorted(allowed))}"
        )


def _positive_int(name: str, where: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(name, f"{where} must be a positive integer, got {value!r}")
    return value


def _paper_value(name: str, where: str, value: object) -> tuple[float, float] | None:
    """A number or a [low, high] range, as (low, high)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value), float(value)
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and value[0] <= value[1]
    ):
        return float(value[0]), float(value[1])
    raise _fail(name, f"{where} must be a number or a [low, high] range, got {value!r}")


def load_suite(name: str) -> Suite:
    """The suite `name`, checked: every preset it names exists in conf/experiment."""
    if name not in suite_names():
        raise SystemExit(f"unknown suite {name!r}; valid suites: {', '.join(suite_names())}")
    raw = yaml.safe_load((SUITES_DIR / f"{name}.yaml").read_text()) or {}
    _unknown_keys(name, "the suite", raw, SUITE_KEYS)
    budget = _positive_int(name, "budget", raw.get("budget"))
    by_algo = {
        algo: _positive_int(name, f"budget_by_algo.{algo}", steps)
        for algo, steps in (raw.get("budget_by_algo") or {}).items()
    }
    seeds = tuple(int(seed) for seed in raw.get("seeds") or ())
    if not seeds:
        raise _fail(name, "no seeds")
    cells = []
    for task, spec in (raw.get("tasks") or {}).items():
        _unknown_keys(name, f"tasks.{task}", spec, TASK_KEYS)
        paper_values = spec.get("paper_values") or {}
        if stray := sorted(set(paper_values) - set(spec["algos"])):
            raise _fail(name, f"tasks.{task}.paper_values names algorithms it does not run: {stray}")
        for algo in spec["algos"]:
            preset = spec["preset"].format(algo=algo)
            if not (PRESETS_DIR / f"{preset}.yaml").is_file():
                raise _fail(name, f"tasks.{task}: no preset conf/experiment/{preset}.yaml for {algo}")
            value = _paper_value(name, f"tasks.{task}.paper_values.{algo}", paper_values.get(algo))
            cells.append(Cell(task, spec.get("title", task), algo, preset, by_algo.get(algo, budget), value))
    if not cells:
        raise _fail(name, "no tasks")
    return Suite(
        name,
        raw.get("description", name),
        raw.get("paper", ""),
        seeds,
        raw.get("metric", "eval_return"),
        tuple(cells),
        tuple(raw.get("notes") or ()),
    )


def select(cells: tuple[Cell, ...] | list[Cell], only: list[str]) -> list[Cell]:
    """The cells matching any of the `only` patterns: `task/algo`, `task` or `algo`, with shell
    wildcards (e.g. `halfcheetah_2x3/happo`, `halfcheetah_2x3`, `happo`, `*_2x3/ha*`). None: all cells."""
    if not only:
        return list(cells)
    chosen = [
        cell
        for cell in cells
        if any(
            fnmatch.fnmatchcase(cell.key, pattern)
            or fnmatch.fnmatchcase(cell.task, pattern)
            or fnmatch.fnmatchcase(cell.algo, pattern)
            for pattern in only
        )
    ]
    if not chosen:
        valid = ", ".join(cell.key for cell in cells)
        raise SystemExit(f"--only {','.join(only)} matches none of the suite's cells: {valid}")
    return chosen
