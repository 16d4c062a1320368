"""The trainer keeps freed memory mapped for reuse (glibc's allocator thresholds), which saves
page faults in every update and changes no value."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harl.common import allocator
from harl.config import compose_config
from harl.train import run

ROOT = Path(__file__).resolve().parents[1]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


class RecordingLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


def test_both_thresholds_are_set_mmap_first(monkeypatch):
    libc = RecordingLibc()
    monkeypatch.setattr(allocator, "_glibc", lambda: libc)
    assert allocator.keep_freed_memory()
    # a trim threshold alone switches off glibc's adaptive mmap threshold: many more page faults
    assert libc.calls == [(allocator.M_MMAP_THRESHOLD, 32 << 20), (allocator.M_TRIM_THRESHOLD, 256 << 20)]


def test_nothing_is_changed_without_glibc(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert not allocator.keep_freed_memory()


CHILD = textwrap.dedent(
    """
    import json, sys
    import torch
    from harl.common.allocator import keep_freed_memory
    kept = keep_freed_memory() if sys.argv[1] == "keep" else None
    x = torch.ones(5 << 20)  # 20 MiB: mapped on its own under glibc's defaults
    lo, hi = next(
        [int(v, 16) for v in line.split()[0].split("-")]
        for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]")
    )
    print(json.dumps({"kept": kept, "from_heap": lo <= x.data_ptr() < hi}))
    """
)


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_megabyte_tensors_come_from_the_reused_heap_in_a_real_process():
    def child(mode: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, mode], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)

    assert child("keep") == {"kept": True, "from_heap": True}
    assert child("default") == {"kept": None, "from_heap": False}


def test_training_sets_the_allocator_once(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append("allocator") or True)
    cli = ["algo=happo", "env=mpe", "env.max_cycles=10", "rollout_length=10", "n_envs=2", "total_steps=20"]
    run(compose_config(*cli), tmp_path / "run", cli)
    assert calls == ["allocator"]
