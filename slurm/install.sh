#!/usr/bin/env bash
# Install the packages of the single-node test cluster (Debian/Ubuntu, as root). Idempotent and quiet:
# does nothing when every program is already there, prints apt's output only when it fails.
# The packages start no daemons; slurm/start_cluster.sh does.
set -euo pipefail

installed() {
    for program in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sbatch sacct sacctmgr; do
        command -v "$program" >/dev/null 2>&1 || [ -x "/usr/sbin/$program" ] || return 1
    done
}
installed && exit 0

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge mariadb-server slurmdbd; } \
        >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
installed || { echo "install.sh: packages installed but Slurm programs still missing" >&2; exit 1; }
