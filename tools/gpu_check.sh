#!/usr/bin/env bash
# GPU check of harl on a machine with an NVIDIA GPU, in one go (~6 min on a 16-core H200 box):
#   1. nvidia-smi -L, python / torch / CUDA and package versions
#   2. the tests that skip without CUDA, and one tiny `python -m harl.train device=cuda` run per
#      family (happo mpe, hasac mpe, qmix mpe discrete)
#   3. training throughput, CPU vs GPU side by side (tools/gpu_bench.py): HAPPO default and the
#      HalfCheetah 2x3 HAPPO preset on MaMuJoCo at n_envs/n_workers 20/0, 20/4, 128/8, and the
#      MPE simple_spread HASAC preset at 20/0
# Every part runs under `timeout`; a failure is recorded in the tables and the script goes on.
# Everything printed is also written to $OUT (else ./gpu_check_out): gpu_check.log (all),
# summary.md (the tables), bench.tsv (raw bench results).
#
#   bash tools/gpu_check.sh
#   GPU_CHECK_QUICK=1 bash tools/gpu_check.sh     # short points + small budgets (a CPU-only try)
# Knobs: GPU_CHECK_SECONDS (train time per bench point, default 12; quick 2),
#        GPU_CHECK_DEADLINE (no bench point starts after this many seconds, default 380),
#        GPU_CHECK_THREADS (torch_threads of every bench point, default 4), PYTHON (python3).
# On a machine with torch but without network, harl's other requirements travel as Python 3.12
# wheels: `pip download --no-deps --only-binary=:all: --python-version 3.12 --platform
# manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl` for gymnasium,
# gymnasium-robotics, mujoco (+ mujoco-core, glfw), pettingzoo, mpe2 (+ pygame-ce), hydra-core,
# omegaconf, antlr4-python3-runtime (a wheel built with `pip wheel`) and farama-notifications at
# requirements.txt's versions, then there: pip install --no-index --no-deps --target /tmp/site
# .whl/*.whl and PYTHONPATH=/tmp/site. Not yet run on a GPU (2026-11-30).
set -u
export PYTHONUNBUFFERED=1
unset MUJOCO_GL PYOPENGL_PLATFORM   # no rendering anywhere
cd "$(dirname "$0")/.." || exit 1

PY=${PYTHON:-python3}
QUICK=${GPU_CHECK_QUICK:-0}
OUTDIR=${OUT:-./gpu_check_out}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu_check.log
SUMMARY=$OUTDIR/summary.md
BENCH_TSV=$OUTDIR/bench.tsv
: > "$LOG"
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
CHECKS=$WORK/checks.tsv
: > "$CHECKS"
printf 'config\tdevice\tn_envs\tn_workers\tsteady\toverall\titers\tstatus\tseconds\n' > "$BENCH_TSV"
RUNS=/tmp/gpu_runs
rm -rf "$RUNS"

if [ "$QUICK" = 1 ]; then
    POINT_SECONDS=${GPU_CHECK_SECONDS:-2}; MIN_ITERS=1; MAX_SECONDS=30
else
    POINT_SECONDS=${GPU_CHECK_SECONDS:-12}; MIN_ITERS=2; MAX_SECONDS=40
fi
DEADLINE=${GPU_CHECK_DEADLINE:-380}
THREADS=${GPU_CHECK_THREADS:-4}
POINT_TIMEOUT=$((MAX_SECONDS + 45))

say() { printf '%s\n' "$*" | tee -a "$LOG"; }
section() { say ""; say "=== $* (t=${SECONDS}s)"; }

# part NAME TIMEOUT CMD...: run CMD under timeout, streaming its output to the console, the log
# and $WORK/part.out; sets RC and DT (seconds).
part() {
    local name=$1 limit=$2; shift 2
    say "--- $name: $*"
    local t0=$SECONDS
    : > "$WORK/part.out"
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$LOG" "$WORK/part.out"
    RC=${PIPESTATUS[0]}
    DT=$((SECONDS - t0))
    say "--- $name: exit $RC after ${DT}s"
}

status_of() {  # status_of RC: ok / TIMEOUT / FAIL (exit N)
    case $1 in
        0) echo ok ;;
        124|137) echo "TIMEOUT" ;;
        *) echo "FAIL (exit $1)" ;;
    esac
}

check() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$CHECKS"; }

# ------------------------------------------------------------------ 1. machine
section "1. machine"
timeout 30 nvidia-smi -L 2>&1 | tee -a "$LOG"
if [ "${PIPESTATUS[0]}" = 0 ]; then
    check "nvidia-smi -L" ok "$(timeout 30 nvidia-smi -L 2>/dev/null | head -1 | cut -c1-80)"
else
    check "nvidia-smi -L" "FAIL" "no nvidia-smi / no GPU"
fi
say "nproc: $(nproc)   quick: $QUICK   seconds per bench point: $POINT_SECONDS   torch_threads: $THREADS"
part versions 90 "$PY" - <<'EOF'
import importlib.metadata as md, platform, sys
import torch
print("python", sys.version.split()[0], platform.platform())
print("torch", torch.__version__, "from", torch.__file__)
print("torch CUDA", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("GPU", torch.cuda.get_device_name(0), f"{p.total_memory / 2**30:.0f} GiB", p.multi_processor_count, "SMs")
    x = torch.randn(1024, 1024, device="cuda")
    print("matmul ok", float((x @ x).sum().item()) == float((x @ x).sum().item()))
for name in ("numpy", "pandas", "scipy", "gymnasium", "gymnasium-robotics", "mujoco", "mujoco-core",
             "pettingzoo", "mpe2", "pygame-ce", "hydra-core", "omegaconf", "tensorboard", "rich", "pytest"):
    try:
        print(f"{name:20s} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name:20s} MISSING")
import gymnasium_robotics, mpe2, hydra, mujoco  # noqa: F401,E401  (the imports harl needs)
print("imports ok")
EOF
check "versions + imports" "$(status_of $RC)" "$(grep -E '^(torch|GPU) ' "$WORK/part.out" | tr '\n' ' ' | cut -c1-150)"

HAVE_GPU=0
if timeout 90 "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    HAVE_GPU=1
fi
if [ $HAVE_GPU = 1 ]; then DEV=cuda; else DEV=cpu; say "WARNING: torch sees no CUDA GPU: tiny runs use device=cpu, CUDA bench points are skipped"; fi

# ------------------------------------------------------------------ 2. CUDA tests + tiny runs
section "2. CUDA tests and tiny end-to-end runs"
# the tests that skip without CUDA (grep -rn "cuda" tests/ | grep -i skip): 8 tests
CUDA_TESTS=(
    tests/test_mutants_off_policy_learners.py::test_sample_with_a_generator_on_another_device_than_the_buffer
    tests/test_mutants_on_policy_base.py::test_rng_state_captures_and_restores_the_cuda_generators
    tests/test_mutants_on_policy_base.py::test_everything_the_learner_creates_lives_on_its_cuda_device
    tests/test_mutants_value_based.py::test_end_flags_may_be_cuda_tensors
    tests/test_mutants_value_based.py::test_sampling_draws_on_the_generator_device
    tests/test_mutants_off_policy_machinery.py::test_batch_moves_from_a_cpu_buffer_to_cuda
    tests/test_mutants_off_policy_machinery.py::test_batch_from_a_cuda_buffer_is_complete_when_a_cpu_learner_reads_it
)
part "pytest CUDA tests" 150 "$PY" -m pytest -q -rs -p no:cacheprovider "${CUDA_TESTS[@]}"
PYTEST_LINE=$(grep -E '(passed|failed|skipped|error)' "$WORK/part.out" | tail -1 | tr -d '=' | sed 's/^ *//')
if [ $RC = 0 ] && [ $HAVE_GPU = 1 ] && grep -q skipped <<< "$PYTEST_LINE"; then
    check "pytest CUDA tests (8)" "FAIL (skipped on a GPU machine)" "$PYTEST_LINE"
else
    check "pytest CUDA tests (8)" "$(status_of $RC)" "$PYTEST_LINE"
fi

# tiny budgets: tests/conftest.py TINY, tests/test_off_policy.py TINY_OFF, tests/test_qmix.py TINY_EPISODIC
TINY=(n_envs=2 rollout_length=20 total_steps=80 log_interval=40 eval_interval=40 eval_episodes=2
      n_eval_envs=2 save_interval=40 "algo.hidden_sizes=[16,16]" algo.critic_epoch=2 algo.ppo_epoch=2)
TINY_OFF=(n_envs=2 total_steps=120 log_interval=40 eval_interval=40 eval_episodes=2 n_eval_envs=2
          save_interval=40 "algo.hidden_sizes=[16,16]" algo.batch_size=16 algo.buffer_size=400
          algo.warmup_steps=40 algo.train_interval=20 algo.utd_ratio=0.25)
TINY_EPISODIC=(n_envs=2 total_steps=120 log_interval=40 eval_interval=40 eval_episodes=2 n_eval_envs=2
               save_interval=40 env=mpe env.continuous=false env.max_cycles=10 algo.hidden_dim=16
               algo.mixing_embed_dim=8 algo.hypernet_embed=16 algo.batch_size=4 algo.warmup_episodes=4
               algo.buffer_size=50 algo.train_interval=20 algo.epsilon_anneal_steps=200)
tiny_run() {  # tiny_run NAME OVERRIDES...
    local name=$1; shift
    part "train $name" 100 "$PY" -m harl.train device=$DEV results_dir=$RUNS "$@"
    local csv
    csv=$(find "$RUNS" -path "*/${name%% *}/*" -name progress.csv 2>/dev/null | head -1)
    check "harl.train device=$DEV: $name" "$(status_of $RC)" "${DT}s${csv:+, $(($(wc -l < "$csv") - 1)) progress rows}"
}
tiny_run "happo mpe" algo=happo env=mpe "${TINY[@]}"
tiny_run "hasac mpe" algo=hasac env=mpe env.continuous=true "${TINY_OFF[@]}"
tiny_run "qmix mpe-discrete" algo=qmix "${TINY_EPISODIC[@]}"

# ------------------------------------------------------------------ 3. throughput, CPU vs GPU
section "3. training throughput, CPU vs GPU (tools/gpu_bench.py, ${POINT_SECONDS}s + warm-up per point)"
bench_point() {  # bench_point LABEL DEVICE N_ENVS N_WORKERS OVERRIDES...
    local label=$1 device=$2 n_envs=$3 n_workers=$4; shift 4
    local row="$label	$device	$n_envs	$n_workers"
    if [ "$device" = cuda ] && [ $HAVE_GPU = 0 ]; then
        printf '%s\t\t\t\tskipped: no GPU\t0\n' "$row" >> "$BENCH_TSV"; return
    fi
    if [ $SECONDS -ge "$DEADLINE" ]; then
        say "--- $label $device $n_envs/$n_workers: skipped (deadline ${DEADLINE}s reached)"
        printf '%s\t\t\t\tskipped: deadline\t0\n' "$row" >> "$BENCH_TSV"; return
    fi
    part "bench $label $device n_envs=$n_envs n_workers=$n_workers" "$POINT_TIMEOUT" \
        "$PY" tools/gpu_bench.py --label "$label" --seconds "$POINT_SECONDS" --min-iters "$MIN_ITERS" \
        --max-seconds "$MAX_SECONDS" "$@" device="$device" n_envs="$n_envs" n_workers="$n_workers" \
        torch_threads="$THREADS"
    local result
    result=$(grep '^RESULT|' "$WORK/part.out" | tail -1)
    if [ -n "$result" ]; then
        IFS='|' read -r _ _ _ _ _ steady overall iters st <<< "$result"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "$steady" "$overall" "$iters" "$st" "$DT" >> "$BENCH_TSV"
    else
        printf '%s\t\t\t\t%s\t%s\n' "$row" "$(status_of $RC)" "$DT" >> "$BENCH_TSV"
    fi
}
if [ "$QUICK" = 1 ]; then  # small iterations, so that a slow CPU gets through
    Q_HAPPO=(rollout_length=20)
    Q_HASAC=(algo.warmup_steps=400 algo.train_interval=200 algo.batch_size=64 algo.buffer_size=5000)
else
    Q_HAPPO=(); Q_HASAC=()
fi
for shape in "20 0" "20 4" "128 8"; do
    read -r n w <<< "$shape"
    for device in cpu cuda; do
        bench_point "happo default mamujoco HalfCheetah-2x3" $device $n $w algo=happo env=mamujoco ${Q_HAPPO[@]+"${Q_HAPPO[@]}"}
    done
    for device in cpu cuda; do
        bench_point "happo preset mamujoco/halfcheetah_2x3" $device $n $w +experiment=mamujoco/halfcheetah_2x3/happo ${Q_HAPPO[@]+"${Q_HAPPO[@]}"}
    done
    if [ "$n" = 20 ] && [ "$w" = 0 ]; then  # early, so that a deadline cuts a MaMuJoCo shape instead
        for device in cpu cuda; do
            bench_point "hasac preset mpe/simple_spread_continuous" $device 20 0 +experiment=mpe/simple_spread_continuous/hasac ${Q_HASAC[@]+"${Q_HASAC[@]}"}
        done
    fi
done

# ------------------------------------------------------------------ tables
section "summary"
"$PY" - "$CHECKS" "$BENCH_TSV" "$SECONDS" "$QUICK" "$THREADS" <<'EOF' > "$SUMMARY" 2>&1
import csv, sys
checks, bench, elapsed, quick, threads = sys.argv[1:]
print(f"## harl GPU check ({elapsed}s{', QUICK mode' if quick == '1' else ''})\n")
print("| check | status | detail |\n| --- | --- | --- |")
for line in open(checks):
    name, status, detail = (line.rstrip("\n").split("\t") + ["", ""])[:3]
    print(f"| {name} | {status} | {detail.replace('|', '/')} |")
rows = list(csv.DictReader(open(bench), delimiter="\t"))
cpu = {(r["config"], r["n_envs"], r["n_workers"]): r["steady"] for r in rows if r["device"] == "cpu"}
print(f"\nTraining throughput, steady state (start-up and warm-up left out), torch_threads={threads}:\n")
print("| config | device | n_envs | n_workers | env steps/s | overall | iters | cuda/cpu | status |")
print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |")
def num(s):
    try:
        v = float(s)
        return v if v == v else None
    except (TypeError, ValueError):
        return None
for r in rows:
    steady, ref = num(r["steady"]), num(cpu.get((r["config"], r["n_envs"], r["n_workers"])))
    ratio = f"{steady / ref:.2f}x" if r["device"] == "cuda" and steady and ref else ""
    fmt = lambda s: f"{num(s):,.0f}" if num(s) is not None else "-"
    print(f"| {r['config']} | {r['device']} | {r['n_envs']} | {r['n_workers']} | {fmt(r['steady'])} | "
          f"{fmt(r['overall'])} | {r['iters'] or '-'} | {ratio} | {r['status']} ({r['seconds']}s) |")
EOF
tee -a "$LOG" < "$SUMMARY"
rm -rf "$WORK"
