"""The single-node test cluster behaves like a real Slurm cluster to submitit: jobs, arrays, cancels, stop."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime

import cloudpickle
import pytest
import submitit

from slurm_cluster import (is_running, missing_requirement, slurm_cluster, start_cluster,  # noqa: F401
                           stop_cluster, wait_done, wait_until)

# Jobs unpickle this module's functions by value: the test directory is not importable inside a job.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def napping_square(x: int, nap_s: float = 1.0) -> int:
    time.sleep(nap_s)
    return x * x


def slurm_executor(cluster, folder, **parameters) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(slurm_partition=cluster.partition, timeout_min=5, cpus_per_task=1, **parameters)
    return executor


def sacct(job_id: str, fields: str) -> list[list[str]]:
    """One row per job (array tasks each get one), from accounting."""
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", fields],
                         capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.split()]


def test_a_job_runs_and_returns_its_result(slurm_cluster, tmp_path):
    job = slurm_executor(slurm_cluster, tmp_path).submit(napping_square, 7, 0.0)
    wait_done([job])
    assert job.result() == 49
    # Accounting works: the job's fate reaches sacct (shortly after the result file).
    wait_until(lambda: job.get_info(mode="force").get("State") == "COMPLETED", 10, "the job in sacct")


def test_an_array_respects_its_parallelism_limit(slurm_cluster, tmp_path):
    executor = slurm_executor(slurm_cluster, tmp_path, slurm_array_parallelism=1)
    jobs = executor.map_array(napping_square, [0, 1, 2, 3])
    wait_done(jobs)
    assert [job.result() for job in jobs] == [0, 1, 4, 9]
    # With a limit of 1 the tasks ran one after another, although the node has room for more.
    array_id = jobs[0].job_id.split("_")[0]

    def finished_tasks():
        rows = sacct(array_id, "State,Start,End")
        return rows if len(rows) == 4 and all(state == "COMPLETED" for state, _, _ in rows) else None

    rows = wait_until(finished_tasks, 10, "four finished array tasks in sacct")
    spans = sorted((datetime.fromisoformat(start), datetime.fromisoformat(end)) for _, start, end in rows)
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))


def test_scancel_ends_a_running_job_as_uncompleted(slurm_cluster, tmp_path):
    job = slurm_executor(slurm_cluster, tmp_path).submit(napping_square, 2, 120.0)
    wait_until(lambda: job.get_info(mode="force").get("State") == "RUNNING", 30, "the job to start")
    subprocess.run(["scancel", job.job_id], check=True)
    wait_done([job], timeout_s=30)
    job._results_timeout_s = 0  # submitit waits 15 s for a result file on a slow shared disk; this one is local
    with pytest.raises(submitit.core.utils.UncompletedJobError, match="CANCELLED"):
        job.result()


@pytest.mark.skipif(missing_requirement() is not None, reason=str(missing_requirement()))
def test_stop_leaves_no_daemon_running(tmp_path):
    cluster = start_cluster(tmp_path / "cluster")
    pids = cluster.pids()
    assert sorted(pids) == sorted(["munged", "mariadb", "slurmdbd", "slurmctld", "slurmd"])
    env = {"SLURM_CONF": cluster.conf, "PATH": "/usr/bin:/bin:/usr/sbin"}
    assert subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout.strip() == "idle"
    assert all(is_running(pid) for pid in pids.values())
    stop_cluster(cluster.dir)
    assert [name for name, pid in pids.items() if is_running(pid)] == []
