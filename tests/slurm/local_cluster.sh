#!/bin/sh
# local_cluster.sh — a one-node Slurm cluster on localhost for tests/test_slurm.c.
#
#   local_cluster.sh start DIR   munged, slurmctld and slurmd of DIR/slurm.conf, all state,
#                                logs and sockets in DIR; returns once the node is idle.
#                                Exit 77 with the reason on stderr when they cannot run here
#                                (not installed, not root, a daemon that does not come up).
#   local_cluster.sh stop DIR    cancels every job, stops the three daemons (by their pids in
#                                DIR) and waits until they are gone. Safe to call twice. A
#                                watchdog calls it when the process that ran `start` dies first.
#
# The clients (sbatch, squeue, sinfo, scancel) find the cluster through SLURM_CONF=DIR/slurm.conf;
# munge's socket is named in the conf (AuthInfo), so nothing under /etc or /run is used.
# No cgroups: proctrack/linuxproc and task/none, which a container allows.
set -u
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
dir=$(cd "$dir" && pwd) || exit 2
export SLURM_CONF="$dir/slurm.conf"

skip() { echo "local Slurm: $*" >&2; exit 77; }

# pid of a daemon this script started, if it still runs
live() { p=$(cat "$dir/$1.pid" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"; }

stop() {
    if [ -n "$(live slurmctld)" ]; then
        scancel --quiet --user="$(id -un)" 2>/dev/null
        for _ in $(seq 1 50); do   # the tasks end (their slurmstepd with them) before slurmd stops
            [ -z "$(squeue -h 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    # not when the watchdog is the caller (the subshell exec's this script: then it is $$)
    w=$(live watchdog) && [ "$w" != "$$" ] && [ "$w" != "$PPID" ] && kill -TERM "$w" 2>/dev/null
    rm -f "$dir/watchdog.pid"
    for d in slurmd slurmctld munged; do
        p=$(live $d) || continue
        kill -TERM "$p" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
        rm -f "$dir/$d.pid"
    done
    return 0
}

start() {
    for p in munged mungekey slurmctld slurmd sbatch squeue sinfo scancel; do
        command -v $p >/dev/null 2>&1 || [ -x /usr/sbin/$p ] || skip "$p is not installed (make deps installs slurm-wlm and munge)"
    done
    PATH="$PATH:/usr/sbin"
    [ "$(id -u)" = 0 ] || skip "the daemons run as root here (SlurmUser=root); run the test as root"
    host=$(hostname -s) || skip "no host name"
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
    # ports of this pid, so that two test processes (or a real cluster) do not collide
    port=$((20000 + ($$ % 2000) * 2))
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge" && chmod 700 "$dir/munge"
    cat > "$dir/slurm.conf" <<EOF
ClusterName=rxtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.daemon.pid
SlurmdPidFile=$dir/slurmd.daemon.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
InactiveLimit=0
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mungekey --create --keyfile="$dir/munge/munge.key" --force >"$dir/mungekey.log" 2>&1 || skip "mungekey failed: $(cat "$dir/mungekey.log")"
    chmod 400 "$dir/munge/munge.key"
    munged --foreground --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.daemon.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" \
        >"$dir/munged.out" 2>&1 &
    echo $! > "$dir/munged.pid"
    for _ in $(seq 1 50); do [ -S "$dir/munge/munge.socket" ] && break; sleep 0.1; done
    [ -S "$dir/munge/munge.socket" ] || { stop; skip "munged did not start: $(tail -n 3 "$dir/munged.out" "$dir/munge/munged.log" 2>/dev/null)"; }
    slurmctld -D -c -f "$dir/slurm.conf" >"$dir/slurmctld.out" 2>&1 &
    echo $! > "$dir/slurmctld.pid"
    slurmd -D -f "$dir/slurm.conf" >"$dir/slurmd.out" 2>&1 &
    echo $! > "$dir/slurmd.pid"
    state=""
    for _ in $(seq 1 150); do   # 30 s
        state=$(sinfo -h -o %T 2>/dev/null)
        if [ "$state" = idle ]; then
            # a test killed by its time limit runs no teardown: the cluster then stops itself
            # once the process that started it (the test) is gone
            owner=$PPID
            (while kill -0 "$owner" 2>/dev/null; do sleep 1; done; sh "$0" stop "$dir") >/dev/null 2>&1 </dev/null &
            echo $! > "$dir/watchdog.pid"
            return 0
        fi
        [ -n "$(live slurmctld)" ] && [ -n "$(live slurmd)" ] || break
        sleep 0.2
    done
    why="node state '${state:-none}'; slurmctld: $(tail -n 3 "$dir/slurmctld.log" "$dir/slurmctld.out" 2>/dev/null | tr '\n' ' ')"
    why="$why slurmd: $(tail -n 3 "$dir/slurmd.log" "$dir/slurmd.out" 2>/dev/null | tr '\n' ' ')"
    stop
    skip "the daemons did not bring the node up in 30 s ($why)"
}

case "$cmd" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
