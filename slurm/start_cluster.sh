#!/usr/bin/env bash
# Start a single-node Slurm cluster with accounting, for tests of the sweep runner:
#   munged -> MariaDB -> slurmdbd -> slurmctld -> slurmd, all as root in the background.
# Everything (config, state, sockets, logs, pid files) lives under DIR; ports are free loopback ports.
# No systemd and no cgroups (proctrack/linuxproc, task/none). Accounting is real (slurmdbd + MariaDB)
# because submitit learns a job's fate from sacct: without it a cancelled job never finishes.
# On success prints `export SLURM_CONF=...` as the last line of stdout; progress goes to stderr.
#
#   usage: slurm/start_cluster.sh DIR [TIMEOUT_S]      stop with: slurm/stop_cluster.sh DIR
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 DIR [TIMEOUT_S]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: the test cluster runs its daemons as root" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$1"
dir="$(cd "$1" && pwd)"
timeout_s="${2:-60}"
cluster=ldabench
host="$(hostname -s)"
log() { echo "start_cluster: $*" >&2; }

for bin in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sinfo sacctmgr; do
    command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || { log "$bin not found; run slurm/install.sh"; exit 3; }
done
export PATH="$PATH:/usr/sbin"
for pidfile in "$dir"/run/*.pid; do
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        log "a cluster already runs in $dir ($(basename "$pidfile")); stop it first"; exit 4
    fi
done

# Undo a half-started cluster on any failure, and show the logs that say why.
on_error() {
    log "failed; last lines of the logs in $dir/log:"
    tail -n 5 "$dir"/log/*.log >&2 || true
    "$here/stop_cluster.sh" "$dir" >&2 || true
}
trap on_error ERR

# Bounded wait: wait_for SECONDS DESCRIPTION COMMAND...
wait_for() {
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then log "timed out after ${limit}s waiting for $what"; return 1; fi
        sleep 0.2
    done
}

taken=" "
free_port() {  # a loopback TCP port nobody listens on, distinct from the ones already picked
    local port
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 40000))
        if [[ "$taken" != *" $port "* ]] && [ -z "$(ss -Htln "sport = :$port")" ]; then
            taken="$taken$port "; echo "$port"; return 0
        fi
    done
    log "no free port found"; return 1
}

rm -rf "$dir/etc" "$dir/state" "$dir/db"
mkdir -p "$dir/etc" "$dir/state/ctld" "$dir/state/d" "$dir/log" "$dir/run" "$dir/munge" "$dir/db"
chmod 755 "$dir" "$dir/munge" "$dir/run"
db_port=$(free_port); dbd_port=$(free_port); ctld_port=$(free_port); d_port=$(free_port)
db_pass="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) * 9 / 10 / 1024 ))
socket="$dir/munge/munge.socket"

log "munged"
[ -f "$dir/munge/munge.key" ] || mungekey --create --keyfile="$dir/munge/munge.key"
chmod 600 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$socket" --pid-file="$dir/run/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"
wait_for 10 "the munge socket" test -S "$socket"

log "mariadb on 127.0.0.1:$db_port"
mariadb-install-db --no-defaults --user=root --datadir="$dir/db/data" --auth-root-authentication-method=socket \
    --skip-test-db >"$dir/log/mariadb-install.log" 2>&1
mariadbd --no-defaults --user=root --datadir="$dir/db/data" --socket="$dir/db/mysqld.sock" \
    --bind-address=127.0.0.1 --port="$db_port" --pid-file="$dir/run/mariadb.pid" \
    --log-error="$dir/log/mariadb.log" --skip-name-resolve --innodb-buffer-pool-size=64M \
    </dev/null >/dev/null 2>&1 &
wait_for "$timeout_s" "mariadb" mariadb --no-defaults --socket="$dir/db/mysqld.sock" -e "SELECT 1"
mariadb --no-defaults --socket="$dir/db/mysqld.sock" -e "
    CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$db_pass';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

# Shared by every daemon and client: munge on its own socket; short credential lifetime for fast requeues.
auth="AuthType=auth/munge
AuthInfo=socket=$socket,cred_expire=5"

cat >"$dir/etc/slurmdbd.conf" <<EOF
$auth
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
PidFile=$dir/run/slurmdbd.pid
LogFile=$dir/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=$db_pass
StorageLoc=slurm_acct_db
EOF
chmod 600 "$dir/etc/slurmdbd.conf"

cat >"$dir/etc/slurm.conf" <<EOF
ClusterName=$cluster
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
$auth
CredType=cred/munge
StateSaveLocation=$dir/state/ctld
SlurmdSpoolDir=$dir/state/d
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbd_port
AccountingStoragePass=$socket
ReturnToService=2
KillWait=5
SchedulerParameters=sched_interval=1,bf_interval=1
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$dir/etc/slurm.conf"

log "slurmdbd on 127.0.0.1:$dbd_port"
slurmdbd
wait_for "$timeout_s" "slurmdbd" sacctmgr -n -P list cluster
sacctmgr -i add cluster "$cluster" >/dev/null

log "slurmctld on 127.0.0.1:$ctld_port, slurmd on 127.0.0.1:$d_port"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
node_idle() { [ "$(sinfo -h -o %t 2>/dev/null)" = idle ]; }
wait_for "$timeout_s" "the node to be idle" node_idle
wait_for "$timeout_s" "the cluster in accounting" bash -c "sacctmgr -n -P list cluster format=cluster | grep -qx $cluster"

trap - ERR
log "ready: cluster $cluster, partition debug, $(nproc) CPUs; logs in $dir/log"
echo "export SLURM_CONF=$SLURM_CONF"
