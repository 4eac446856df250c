#!/usr/bin/env bash
# Stop the test cluster that start_cluster.sh started in DIR: cancel its jobs, then end each daemon by the
# PID in its pid file (never by name), newest first, with a bounded wait and SIGKILL as the last resort.
#
#   usage: slurm/stop_cluster.sh DIR
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
[ -d "$1" ] || exit 0
dir="$(cd "$1" && pwd)"
export PATH="$PATH:/usr/sbin" SLURM_CONF="$dir/etc/slurm.conf"
log() { echo "stop_cluster: $*" >&2; }

running() {  # running PID: a live process, not a zombie waiting for its parent
    kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

alive() {  # alive NAME PROGRAM: the pid in run/NAME.pid belongs to a live process of that program
    local pidfile="$dir/run/$1.pid" pid
    [ -f "$pidfile" ] || return 1
    pid="$(cat "$pidfile" 2>/dev/null)"
    [[ "$pid" =~ ^[0-9]+$ ]] && running "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2"* ]]
}

# Let running jobs end (their slurmstepd processes outlive slurmd otherwise).
if alive slurmctld slurmctld && [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
    scancel --full --user=root 2>/dev/null
    for _ in $(seq 75); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
fi

stop() {  # stop NAME PROGRAM
    alive "$1" "$2" || { rm -f "$dir/run/$1.pid"; return 0; }
    local pid
    pid="$(cat "$dir/run/$1.pid")"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then log "$1 ($pid) ignored SIGTERM for 10 s; killing it"; kill -KILL "$pid"; fi
    rm -f "$dir/run/$1.pid"
}

stop slurmd slurmd
stop slurmctld slurmctld
stop slurmdbd slurmdbd
stop mariadb mariadbd
stop munged munged
