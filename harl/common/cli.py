"""Small pieces the command-line tools share (harl.plot, harl.reproduce, tools/compare_algos.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection
from pathlib import Path


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (underscores allowed: 10_000_000)."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def command_name(installed: str, module: str) -> str:
    """How the user started the tool: its installed command (e.g. `harl-plot`) or `python -m <module>`."""
    return installed if Path(sys.argv[0]).name == installed else f"python -m {module}"


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the tool's own options, the Hydra overrides after `--` for every run)."""
    if "--" not in argv:
        return argv, []
    k = argv.index("--")
    return argv[:k], argv[k + 1 :]


def reserved_overrides(overrides: list[str], reserved: Collection[str]) -> list[str]:
    """The overrides that set a key the tool sets itself (with or without a +/~ prefix)."""
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in reserved]
