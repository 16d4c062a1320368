"""The benchmark tools run and report (figures are not checked: speed is not a test)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import bench_compare  # noqa: E402


def test_bench_compare_reads_the_steady_rate_of_a_real_bench_run():
    rate = bench_compare.steady_rate(
        ROOT,
        [
            "env=mpe",
            "n_envs=2",
            "rollout_length=20",
            "total_steps=160",
            "log_interval=40",
            "algo.hidden_sizes=[16,16]",
            "algo.ppo_epoch=1",
            "algo.critic_epoch=1",
        ],
    )
    assert rate > 0


def test_bench_compare_reports_a_failed_case_with_its_output():
    with pytest.raises(SystemExit, match="bench failed.*algo.nonexistent"):
        bench_compare.steady_rate(ROOT, ["env=mpe", "algo.nonexistent=1"])


def test_every_suite_case_composes():
    from harl.config import compose_config
    from harl.config_checks import check_config

    for case in bench_compare.SUITES["issue15"]:
        check_config(compose_config(*case.split()))
