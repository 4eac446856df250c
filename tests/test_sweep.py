"""Sweeps: planning from the records, cluster profiles, status, and real runs (local processes and Slurm)
that survive a cancelled job and a preemption with every trial recorded exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lda_bench.cli import main
from lda_bench import sweep as sweeps
from lda_bench.policy import UnknownPolicyError
from lda_bench.records import EpisodeRecord, EvalProtocol, ProtocolMismatchError, RecordStore
from slurm_cluster import slurm_cluster, wait_done, wait_until  # noqa: F401

CAN, CUP = "PnP Can To Drawer Close", "PnP Cup To Drawer Close"
LOCAL_TEST_PROFILE = sweeps.PROFILES_DIR / "local-test.yaml"


def make(out, policies=("hold",), tasks=(CAN,), trials=3, max_steps=16, **kwargs) -> sweeps.Sweep:
    return sweeps.make_sweep(list(policies), tasks=list(tasks), trials=trials, out=out, max_steps=max_steps, **kwargs)


def record(sweep: sweeps.Sweep, task: str, trial: int, success: bool = False, error: str | None = None) -> None:
    policy = sweep.policies[0]
    RecordStore(sweep.out / policy.folder).append(EpisodeRecord(
        policy=policy.name, policy_args=policy.args, task=task, trial=trial, seed=trial, success=success,
        first_success_step=None, steps=sweep.max_steps, wall_time_s=0.1, error=error, instruction="",
        protocol={"max_steps": sweep.max_steps, "action_steps": sweep.action_steps, "image_size": sweep.image_size,
                  "suite": "test"}))


def add_job(sweep: sweeps.Sweep, task: str, trials: list[int], state: str, job_id: int, executor="local") -> None:
    jobs = sweeps.load_jobs(sweep.out)
    jobs.append({"job_id": str(job_id), "executor": executor, "folder": sweep.policies[0].folder, "task": task,
                 "trials": trials, "state": state, "submitted_at": float(len(jobs))})
    (sweep.out / "jobs.json").write_text(json.dumps({"jobs": jobs}))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def planned(shards) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(shard.policy.folder, shard.task, shard.trials) for shard in shards]


def recorded_lines(run_dir: Path) -> list[tuple[str, int]]:
    """(task, trial) of every line in every record file, duplicates included."""
    return sorted((json.loads(line)["task"], json.loads(line)["trial"])
                  for path in (run_dir / "records").glob("*.jsonl") for line in path.read_text().splitlines())


# ---- planning ------------------------------------------------------------------------------------------------

def test_plan_cuts_the_unrecorded_trials_into_shards_per_policy_and_task(tmp_path):
    sweep = make(tmp_path, policies=["hold", "random"], tasks=[CAN, CUP], trials=5,
                 policy_args={"random": {"seed": "3"}})
    random_folder = sweep.policies[1].folder
    assert random_folder.startswith("random-") and sweep.policies[1].args == {"seed": "3"}
    record(sweep, CAN, 0)
    record(sweep, CAN, 3)
    assert planned(sweeps.plan(sweep, shard_size=2)) == [
        ("hold", CAN, (1, 2)), ("hold", CAN, (4,)), ("hold", CUP, (0, 1)), ("hold", CUP, (2, 3)), ("hold", CUP, (4,)),
        (random_folder, CAN, (0, 1)), (random_folder, CAN, (2, 3)), (random_folder, CAN, (4,)),
        (random_folder, CUP, (0, 1)), (random_folder, CUP, (2, 3)), (random_folder, CUP, (4,))]


def test_trials_of_a_job_still_running_are_not_planned_again(tmp_path):
    sweep = make(tmp_path, trials=6)
    add_job(sweep, CAN, [0, 1], "RUNNING", os.getpid())   # alive: its trials are held
    add_job(sweep, CAN, [2], "RUNNING", dead_pid())       # its process is gone: the trial is free again
    add_job(sweep, CAN, [3], "CANCELLED by 0", 12345, executor="slurm")
    assert planned(sweeps.plan(sweep, shard_size=10)) == [("hold", CAN, (2, 3, 4, 5))]
    assert [job["state"] for job in sweeps.load_jobs(sweep.out)] == ["RUNNING", "INTERRUPTED", "CANCELLED by 0"]


def test_a_sweep_into_a_folder_of_another_protocol_is_refused(tmp_path):
    RecordStore(tmp_path / "hold").claim(EvalProtocol(max_steps=16, action_steps=8, image_size=224), "hold", {})
    with pytest.raises(ProtocolMismatchError, match="max_steps 16 there, 32 here"):
        sweeps.plan(make(tmp_path, max_steps=32))
    assert not (tmp_path / "jobs.json").exists()


def test_bad_sweep_requests_fail_before_anything_is_written(tmp_path):
    with pytest.raises(UnknownPolicyError):
        make(tmp_path, policies=["hodl"])
    with pytest.raises(ValueError, match="policy arguments given for \\['random'\\]"):
        make(tmp_path, policy_args={"random": {"seed": "1"}})
    with pytest.raises(ValueError, match="shard_size must be a positive integer"):
        sweeps.plan(make(tmp_path), shard_size=0)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args, message", [
    (["--policy-arg", "random:seed=1"], "policy arguments given for ['random'], which the sweep does not run"),
    (["--executor", "slurm"], "a Slurm sweep needs --profile"),
    (["--executor", "pbs"], "unknown executor 'pbs'; choose from local, slurm"),
    (["--profile", "slurm/profiles/nope.yaml"], "cluster profile slurm/profiles/nope.yaml not found"),
])
def test_the_sweep_command_refuses_bad_requests_in_one_line(tmp_path, capsys, args, message):
    assert main(["sweep", "--policy", "hold", "--tasks", CAN, "--out", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---- profiles ------------------------------------------------------------------------------------------------

def test_every_shipped_profile_loads():
    profiles = {path.name: sweeps.ClusterProfile.load(path) for path in sweeps.PROFILES_DIR.glob("*.yaml")}
    assert "local-test.yaml" in profiles and len(profiles) >= 2
    gpu = profiles["gpu-cluster.example.yaml"].executor_parameters()
    assert gpu == {"timeout_min": 120, "cpus_per_task": 4, "slurm_array_parallelism": 16, "slurm_partition": "gpu",
                   "slurm_account": "my-lab", "mem_gb": 32, "gpus_per_node": 1}


@pytest.mark.parametrize("text, message", [
    ("partition: gpu\ngpus: 2\n", r"unknown setting\(s\) \['gpus'\]; a profile may set \[.*'gpus_per_node'"),
    ("time_min: '60'\n", "time_min must be a positive number, got '60'"),
    ("partition: ''\n", "partition must be a non-empty string or null"),
    ("- partition\n", "a profile is a mapping of settings, got list"),
])
def test_a_bad_profile_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    with pytest.raises(sweeps.ProfileError, match=message):
        sweeps.ClusterProfile.load(path)


def test_a_missing_profile_names_the_shipped_ones(tmp_path):
    with pytest.raises(sweeps.ProfileError, match="not found .*local-test.yaml"):
        sweeps.ClusterProfile.load(tmp_path / "nope.yaml")


# ---- status --------------------------------------------------------------------------------------------------

def test_status_counts_each_trial_by_its_record_or_its_last_job(tmp_path):
    sweep = make(tmp_path, trials=6)
    sweeps.plan(sweep)
    record(sweep, CAN, 0, success=True)
    record(sweep, CAN, 1, error="RuntimeError: boom")
    add_job(sweep, CAN, [2, 3], "FINISHED", 1)
    add_job(sweep, CAN, [2], "RUNNING", os.getpid())  # submitted later: trial 2 runs again
    (row,) = sweeps.sweep_status(sweep.out)
    assert (row.done, row.errors, row.running, row.queued, row.failed, row.unsubmitted) == (2, 1, 1, 0, 1, 2)


# ---- real runs -----------------------------------------------------------------------------------------------

def cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lda_bench.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_a_local_sweep_records_each_trial_once_and_a_rerun_runs_nothing(tmp_path):
    args = ["sweep", "--policy", "hold", "--tasks", CAN, "--trials", "2", "--max-steps", "8", "--shard-size", "1",
            "--out", str(tmp_path)]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert "2 episode(s) to run in 2 job(s)" in first.stdout
    assert recorded_lines(tmp_path / "hold") == [(CAN, 0), (CAN, 1)]
    status = cli("sweep", "status", str(tmp_path))
    assert "2/2" in status.stdout and "2/2 episodes recorded" in status.stdout
    again = cli(*args)
    assert "0 episode(s) to run in 0 job(s)" in again.stdout
    assert recorded_lines(tmp_path / "hold") == [(CAN, 0), (CAN, 1)]


def slurm_sweep(out: Path, **kwargs) -> tuple[sweeps.Sweep, list]:
    sweep = make(out, **kwargs)
    profile = sweeps.ClusterProfile.load(LOCAL_TEST_PROFILE)
    return sweep, sweeps.run_sweep(sweep, "slurm", profile, shard_size=kwargs.get("trials", 3))


def wait_for_first_record(run_dir: Path, task: str) -> None:
    wait_until(lambda: any(t == task for t, _ in recorded_lines(run_dir)) if (run_dir / "records").exists() else False,
               90, f"a record of {task}", interval_s=0.1)


def test_a_cancelled_slurm_job_loses_at_most_its_episode_in_flight_and_a_rerun_completes_it(slurm_cluster, tmp_path):
    # A cancelled job runs on for KillWait (5 s) before it is killed (submitit ignores SIGTERM): give its
    # shard more than that to do after its first record (an episode of 60 steps takes 2-4 s).
    sweep, jobs = slurm_sweep(tmp_path, tasks=[CAN, CUP], trials=5, max_steps=60)
    assert len(jobs) == 2 and jobs[0].job_id.endswith("_0")
    run_dir = tmp_path / "hold"
    wait_for_first_record(run_dir, CAN)
    subprocess.run(["scancel", jobs[0].job_id], check=True)
    wait_done(jobs, timeout_s=120)
    missing = {(CAN, t) for t in range(5)} - set(recorded_lines(run_dir))
    assert missing, "the cancelled job finished its shard before the cancel arrived"
    status = {row.task: row for row in sweeps.sweep_status(tmp_path)}
    assert (status[CAN].failed, status[CUP].done) == (len(missing), 5)

    shards = sweeps.plan(sweep, shard_size=5)
    assert planned(shards) == [("hold", CAN, tuple(sorted(t for _, t in missing)))]
    executor = sweeps.make_executor("slurm", tmp_path, sweeps.ClusterProfile.load(LOCAL_TEST_PROFILE))
    wait_done(sweeps.submit(sweep, shards, executor, "slurm"), timeout_s=120)
    assert recorded_lines(run_dir) == [(task, t) for task in (CAN, CUP) for t in range(5)]  # each exactly once
    assert all(row.done == 5 for row in sweeps.sweep_status(tmp_path))


def test_a_preempted_slurm_job_is_requeued_and_resumes_after_its_recorded_trials(slurm_cluster, tmp_path):
    sweep, (job,) = slurm_sweep(tmp_path, trials=3)
    run_dir = tmp_path / "hold"
    wait_for_first_record(run_dir, CAN)
    # What Slurm sends before a time limit or a preemption: submitit checkpoints the job and requeues it.
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)
    wait_done([job], timeout_s=150)
    assert job.result()["episodes"] >= 1  # the requeued run did the trials that were still missing
    assert recorded_lines(run_dir) == [(CAN, 0), (CAN, 1), (CAN, 2)]
    assert len(list((run_dir / "records").glob("*.jsonl"))) == 2  # two processes wrote: before and after


def test_a_sweeps_picture_and_instances_reach_its_jobs_and_survive_a_reload(tmp_path):
    sweep = sweeps.make_sweep(["hold"], tasks=["PnP Novel From Tray To Pot"], trials=2, out=tmp_path, max_steps=8,
                              image_variant="pad", instances="B")
    for job in sweeps.submit(sweep, sweeps.plan(sweep), sweeps.make_executor("debug", sweep.out), "debug"):
        job.result()
    loaded = sweeps.Sweep.load(tmp_path)
    assert (loaded.image_variant, loaded.instances, loaded.image_size) == ("pad", "B", 256)
    records = RecordStore(tmp_path / sweep.policies[0].folder).read()
    assert len(records) == 2
    assert {(r.protocol["image_variant"], r.protocol["instances"]) for r in records} == {("pad", "B")}


def test_a_job_gets_as_many_threads_as_its_profile_gives_it_cores(tmp_path):
    from lda_bench.sweep import ClusterProfile, make_executor

    evaluation = make_executor("local", tmp_path / "a")
    training = make_executor("local", tmp_path / "b", ClusterProfile(cpus_per_task=2, array_parallelism=1))
    assert "OMP_NUM_THREADS=1" in evaluation._executor.parameters["setup"][0]
    assert "OMP_NUM_THREADS=2" in training._executor.parameters["setup"][0]
