"""Training throughput of this checkout against a baseline, side by side in one run.

    python tools/bench_compare.py --baseline 5682589 \\
        --case +experiment=mamujoco/halfcheetah_2x3/happo \\
        --case "+experiment=mamujoco/halfcheetah_2x3/mappo"
    python tools/bench_compare.py --baseline HEAD --variant cpu_matmul=default \\
        --case +experiment=mamujoco/halfcheetah_2x3/happo      # one option against its default
    python tools/bench_compare.py --suite issue15 --baseline 5682589 --rounds 2
    python tools/bench_compare.py --baseline 5682589 --this-variant cpu_matmul=onednn_bf16 \\
        --case +experiment=mamujoco/halfcheetah_2x3/happo      # an option of this checkout

Each case is a `tools/bench.py` command line (training overrides). The baseline is either a git
revision, checked out into a temporary worktree (its own `tools/bench.py` runs there, so "the
code path of that commit" is what gets measured), and/or `--variant` overrides added to the
baseline's command line; `--this-variant` adds overrides to this checkout's command line. Runs
alternate baseline / this checkout for `--rounds` rounds, so both see the same machine load
(these machines are noisy), and the table gives each side's steady training rate (median over
rounds) and the ratio. Nothing is timed in the test suite: this tool prints figures.
"""

from __future__ import annotations

import argparse
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SUITES = {
    # the cases issue 15 names: the tuned on-policy presets on HalfCheetah 2x3 and Humanoid 17x1,
    # the HASAC MPE preset and the HATD3 HalfCheetah preset (off-policy: steady rate after warm-up)
    "issue15": [
        "+experiment=mamujoco/halfcheetah_2x3/happo total_steps=120000",
        "+experiment=mamujoco/halfcheetah_2x3/mappo total_steps=120000",
        "+experiment=mamujoco/halfcheetah_2x3/hatrpo total_steps=100000",
        "+experiment=mamujoco/humanoid_17x1/happo total_steps=40000 log_interval=4000",
        "+experiment=mpe/simple_spread_continuous/hasac total_steps=30000 log_interval=2000",
        "+experiment=mamujoco/halfcheetah_2x3/hatd3 total_steps=24000 log_interval=1000",
    ],
}
_ROW = re.compile(r"^\s*([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+\d+%\s*$")


def steady_rate(checkout: Path, case: list[str]) -> float:
    """Run tools/bench.py of `checkout` on one case; its steady training env steps/s."""
    cmd = [sys.executable, "tools/bench.py", "--raw-steps", "2000", *case]
    proc = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True)
    rows = [m for line in proc.stdout.splitlines() if (m := _ROW.match(line))]
    if proc.returncode != 0 or not rows:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise SystemExit(f"bench failed in {checkout} for {shlex.join(case)}:\n{tail}")
    return float(rows[-1].group(3).replace(",", ""))


def worktree(revision: str, parent: Path) -> Path:
    path = parent / "baseline"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "-f", str(path), revision],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="HEAD", help="git revision of the baseline (default HEAD)")
    parser.add_argument("--variant", default="", help="overrides added to the baseline's command line")
    parser.add_argument("--this-variant", default="", help="overrides added to this checkout's command line")
    parser.add_argument("--case", action="append", default=[], help="bench.py overrides (repeatable)")
    parser.add_argument("--suite", choices=sorted(SUITES), help="a named list of cases")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per case")
    args = parser.parse_args()
    cases = [shlex.split(c) for c in args.case + SUITES.get(args.suite, [])]
    if not cases:
        parser.error("give --case or --suite")
    variant, this_variant = shlex.split(args.variant), shlex.split(args.this_variant)
    with tempfile.TemporaryDirectory() as tmp:
        base = worktree(args.baseline, Path(tmp))
        commit = subprocess.run(
            ["git", "rev-parse", "--short", args.baseline], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        try:
            print(
                f"baseline: {commit} {shlex.join(variant)} | this checkout: {ROOT} {shlex.join(this_variant)}"
            )
            print(
                f"{'case':70} {'baseline':>9} {'this':>9} {'ratio':>6}   (steady env steps/s, "
                f"median of {args.rounds})",
                flush=True,
            )
            for case in cases:
                base_rates, new_rates = [], []
                for _ in range(args.rounds):
                    base_rates.append(steady_rate(base, [*case, *variant]))
                    new_rates.append(steady_rate(ROOT, [*case, *this_variant]))
                b, n = statistics.median(base_rates), statistics.median(new_rates)
                print(
                    f"{shlex.join(case)[:70]:70} {b:9,.0f} {n:9,.0f} {n / b:5.2f}x   "
                    f"[{', '.join(f'{r:,.0f}' for r in base_rates)} | "
                    f"{', '.join(f'{r:,.0f}' for r in new_rates)}]",
                    flush=True,
                )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)


if __name__ == "__main__":
    main()
