#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests/test_slurm.py and for trying the SLURM
# launcher (hydra/launcher=slurm) locally. Debian/Ubuntu only: installs slurm-wlm and munge with
# apt when missing, writes /etc/slurm/slurm.conf for this host, creates the munge key, starts
# munged, slurmctld and slurmd as plain daemons (no systemd needed) and waits for the node to be
# idle. Idempotent: a no-op when a cluster already answers (`scontrol ping` and `sinfo`).
#
#   sudo tools/slurm_cluster.sh          # bring it up (about 5 s the first time: install + start)
#   tools/slurm_cluster.sh --stop        # stop the daemons this script started
#
# Exit status: 0 the cluster is up; 77 SLURM cannot be installed/started here (not root and no
# passwordless sudo, no apt-get, apt failed e.g. without network): callers skip; any other
# non-zero: SLURM is installed but did not come up (a real failure; see /var/log/slurm/).
#
# The config suits a container: proctrack/linuxproc and task/none (no cgroups), no accounting
# database, SlurmUser=root, JobRequeue=1, short KillWait and a short credential lifetime so that
# a requeued job starts again within seconds instead of after the default two minutes.
set -euo pipefail

CANNOT=77
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE=/var/lib/slurm
LOGS=/var/log/slurm
# marks a slurm.conf this script wrote: it is rewritten only then (never a cluster's own config)
MARK="# written by harl tools/slurm_cluster.sh"

say() { echo "[slurm_cluster] $*"; }
cannot() { echo "[slurm_cluster] cannot set up SLURM here: $*" >&2; exit "$CANNOT"; }
fail() { echo "[slurm_cluster] FAILED: $*" >&2; exit 1; }

cluster_up() {
    command -v sinfo >/dev/null 2>&1 || return 1
    timeout 10 scontrol ping 2>/dev/null | grep -q "is UP" || return 1
    # a node that is idle, mixed or allocated (i.e. responding and usable)
    timeout 10 sinfo -h -o "%T" 2>/dev/null | grep -Eq "^(idle|mixed|allocated|completing)" || return 1
}

running() { local pid; pid=$(cat "/run/$1.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; }

stop() {
    local d pid
    for d in slurmd slurmctld; do
        if running "$d"; then
            pid=$(cat "/run/$d.pid"); say "stopping $d (pid $pid)"; kill "$pid"
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    done
}

# the slurm.conf for this host (what this script writes)
render_conf() {
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat <<EOF
$MARK
ClusterName=harltest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# short-lived job credentials: a requeued job waits cred_expire seconds before it may start again
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in containers
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
# schedule every 2 s (defaults 60 s and 30 s): a requeued job starts as soon as it is eligible
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# no slurmdbd: sacct reads nothing, submitit falls back to squeue/scontrol
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# preemption / time limits: SIGTERM, then SIGKILL after KillWait seconds; requeue allowed
JobRequeue=1
KillWait=10
SlurmdTimeout=30
SlurmctldTimeout=30
InactiveLimit=0
MinJobAge=300
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

if [[ "${1:-}" == "--stop" ]]; then stop; exit 0; fi

host=$(hostname -s)
start_time=$(date +%s)
can_root() { [[ $EUID -eq 0 ]] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; }
# up, and either not ours (a real cluster: never touched) or ours with the current config
if cluster_up; then
    if ! grep -qF "$MARK" "$CONF" 2>/dev/null || [[ "$(cat "$CONF")" == "$(render_conf)" ]]; then
        say "a SLURM cluster is already up, nothing to do:"
        sinfo
        exit 0
    elif ! can_root; then
        say "a SLURM cluster is up (its $CONF differs from this script's; run as root to update it)"
        exit 0
    fi
    say "the cluster is up with an older config: updating it"
fi

if [[ $EUID -ne 0 ]]; then
    if can_root; then
        say "not root: re-running with sudo"
        exec sudo -n bash "$0" "$@"
    fi
    cannot "needs root (or passwordless sudo) to install and start slurm-wlm and munge"
fi

# --- install -------------------------------------------------------------------------------------
need=()
command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v sbatch >/dev/null 2>&1 \
    || need+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || need+=(munge)
if ((${#need[@]})); then
    command -v apt-get >/dev/null 2>&1 || cannot "${need[*]} missing and no apt-get (not Debian/Ubuntu)"
    say "installing ${need[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    t0=$(date +%s)
    if ! apt-get install -y -q --no-install-recommends "${need[@]}" >/tmp/slurm_cluster_apt.log 2>&1; then
        say "apt-get install failed; updating the package lists and retrying"
        apt-get update -q >>/tmp/slurm_cluster_apt.log 2>&1 \
            || cannot "apt-get update failed (no network?); see /tmp/slurm_cluster_apt.log"
        apt-get install -y -q --no-install-recommends "${need[@]}" >>/tmp/slurm_cluster_apt.log 2>&1 \
            || cannot "apt-get install ${need[*]} failed; see /tmp/slurm_cluster_apt.log"
    fi
    say "installed in $(($(date +%s) - t0)) s"
fi
# --- munge ---------------------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating the munge key /etc/munge/munge.key"
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    runuser -u munge -- /usr/sbin/munged || fail "munged did not start (see /var/log/munge/munged.log)"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || fail "munge does not work (see /var/log/munge/munged.log)"
fi

# --- slurm.conf ----------------------------------------------------------------------------------
mkdir -p "$CONF_DIR" "$STATE/slurmctld" "$STATE/slurmd" "$LOGS"
if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
    fail "$CONF exists and was not written by this script; not touching it"
fi
new_conf=$(render_conf)
if [[ "$(cat "$CONF" 2>/dev/null)" != "$new_conf" ]]; then
    say "writing $CONF (node $host, $(nproc) CPUs; see the file)"
    printf '%s\n' "$new_conf" >"$CONF"
    stop  # daemons running with the old config restart below
fi

# --- daemons -------------------------------------------------------------------------------------
if ! running slurmctld; then
    say "starting slurmctld"
    slurmctld || fail "slurmctld did not start (see $LOGS/slurmctld.log)"
fi
if ! running slurmd; then
    say "starting slurmd"
    slurmd || fail "slurmd did not start (see $LOGS/slurmd.log)"
fi

say "waiting for node $host to be idle"
for _ in $(seq 60); do
    cluster_up && break
    state=$(sinfo -h -n "$host" -o "%T" 2>/dev/null || true)
    if [[ "$state" == down* || "$state" == drain* ]]; then scontrol update nodename="$host" state=resume 2>/dev/null || true; fi
    sleep 1
done
cluster_up || { sinfo || true; tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
                fail "the node did not become idle within 60 s"; }
sinfo
say "cluster up in $(($(date +%s) - start_time)) s"
