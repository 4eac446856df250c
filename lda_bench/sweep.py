"""Sweeps: evaluations of several policies on many tasks, fanned out as submitit jobs, locally or on Slurm.

A sweep folder holds one run folder (the evaluation's record store) per policy and argument set, `sweep.json`
(what was asked last) and `jobs.json` (every job submitted: its shard and last known state). The work is
cut into shards (one policy, one task, a few trials), planned from what is recorded: only trials neither
recorded nor held by a job still queued or running are submitted, so the same command, run again after a
crash, a `scancel` or a time-out, submits exactly what is missing. A job runs its shard through the
evaluation's per-episode runner, which appends each record durably as its episode ends: a killed job loses
at most the episode in flight. Jobs are `Checkpointable`: one that is preempted or runs out of time is
requeued and skips the trials recorded meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import submitit

from lda_bench.evaluate import WORKER_ENVIRONMENT, EpisodeSettings, check_positive, run_episodes
from lda_bench.policy import policy_arguments
from lda_bench.records import EvalProtocol, RecordStore, canonical_args, record_key
from tasks.assets import validate_instances
from tasks.images import DEFAULT_VARIANT, default_size
from tasks.specs import resolve_tasks

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = REPO_ROOT / "slurm" / "profiles"
EXECUTORS = ("local", "slurm")
DEFAULT_SHARD_SIZE = 17  # 3 jobs per task at 51 trials; building the environment (~2.5 s) is paid per job
# Slurm states after which a job will not run again (sacct may append a reason, as in "CANCELLED by 0").
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE", "FINISHED", "INTERRUPTED")


class ProfileError(ValueError):
    """A cluster profile that is missing or does not say what a profile may say."""


@dataclass(frozen=True)
class ClusterProfile:
    """Resources of each job and how many run at once (`slurm/profiles/*.yaml`)."""

    partition: str | None = None
    account: str | None = None
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    time_min: int = 60
    constraint: str | None = None
    array_parallelism: int = 4

    @classmethod
    def load(cls, path: Path | str) -> ClusterProfile:
        path = Path(path)
        if not path.is_file():
            shipped = ", ".join(sorted(p.name for p in PROFILES_DIR.glob("*.yaml")))
            raise ProfileError(f"cluster profile {path} not found (profiles shipped in {PROFILES_DIR}: {shipped})")
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ProfileError(f"{path}: a profile is a mapping of settings, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ProfileError(f"{path}: unknown setting(s) {unknown}; a profile may set {sorted(known)}")
        for name, value in data.items():
            _check_setting(path, name, value, known[name].type)
        return cls(**data)

    def executor_parameters(self) -> dict[str, Any]:
        """The profile as submitit parameters (the Slurm ones are ignored by the local executor)."""
        parameters = {"timeout_min": self.time_min, "cpus_per_task": self.cpus_per_task,
                      "slurm_array_parallelism": self.array_parallelism}
        optional = {"slurm_partition": self.partition, "slurm_account": self.account, "mem_gb": self.mem_gb,
                    "slurm_constraint": self.constraint, "gpus_per_node": self.gpus_per_node or None}
        return parameters | {name: value for name, value in optional.items() if value is not None}


def _check_setting(path: Path, name: str, value: Any, annotation: str) -> None:
    """Check a value against its field's annotation ("str | None", "int", "float | None"): strings must not
    be empty, numbers must be positive (gpus_per_node may be 0)."""
    nullable = annotation.endswith("| None")
    if value is None and nullable:
        return
    if annotation.startswith("str"):
        ok, wanted = isinstance(value, str) and value != "", "a non-empty string"
    else:
        kinds = (int, float) if annotation.startswith("float") else int
        number = isinstance(value, kinds) and not isinstance(value, bool)
        if name == "gpus_per_node":
            ok, wanted = number and value >= 0, "a whole number >= 0"
        else:
            ok, wanted = number and value > 0, "a positive number"
    if not ok:
        raise ProfileError(f"{path}: {name} must be {wanted}{' or null' if nullable else ''}, got {value!r}")


@dataclass(frozen=True)
class SweepPolicy:
    """A policy with its arguments; each pair gets a run folder of its own."""

    name: str
    args: dict[str, Any]

    @property
    def folder(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}-{hashlib.sha256(canonical_args(self.args).encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Shard:
    """A job's work: some trials of one task for one policy."""

    policy: SweepPolicy
    task: str
    trials: tuple[int, ...]


@dataclass(frozen=True)
class Sweep:
    """What a sweep asks for; the protocol is shared by every policy (and fixed by each run folder)."""

    policies: tuple[SweepPolicy, ...]
    tasks: tuple[str, ...]
    trials: int
    out: Path
    max_steps: int = 720
    action_steps: int = 8
    image_size: int = 256
    image_variant: str = DEFAULT_VARIANT
    instances: str = "A"

    def settings(self, policy: SweepPolicy) -> EpisodeSettings:
        return EpisodeSettings(policy=policy.name, policy_args=policy.args, run_dir=str(self.out / policy.folder),
                               action_steps=self.action_steps, max_steps=self.max_steps, image_size=self.image_size,
                               video=False, policy_timeout_s=None, image_variant=self.image_variant,
                               instances=self.instances)

    def to_json(self) -> dict[str, Any]:
        return {"policies": [{**asdict(p), "folder": p.folder} for p in self.policies], "tasks": list(self.tasks),
                "trials": self.trials, "max_steps": self.max_steps, "action_steps": self.action_steps,
                "image_size": self.image_size, "image_variant": self.image_variant, "instances": self.instances}

    @classmethod
    def load(cls, out: Path | str) -> Sweep:
        path = Path(out) / "sweep.json"
        if not path.exists():
            raise FileNotFoundError(f"{out} is not a sweep folder (no sweep.json)")
        data = json.loads(path.read_text(encoding="utf-8"))
        policies = tuple(SweepPolicy(p["name"], p["args"]) for p in data.pop("policies"))
        data.setdefault("image_variant", "square")   # sweeps written before the variants rendered the square picture
        return cls(policies=policies, tasks=tuple(data.pop("tasks")), out=Path(out), **data)


def make_sweep(policies: list[str], policy_args: dict[str, dict[str, Any]] | None = None,
               tasks: str | list[str] = "all", trials: int = 51, out: Path | str = "runs/sweep", max_steps: int = 720,
               action_steps: int = 8, image_size: int | None = None, image_variant: str = DEFAULT_VARIANT,
               instances: str = "A") -> Sweep:
    """A sweep from command-line terms: `policy_args` maps a policy name (or "" for all) to its arguments."""
    policy_args = policy_args or {}
    unknown = sorted(set(policy_args) - set(policies) - {""})
    if unknown:
        raise ValueError(f"policy arguments given for {unknown}, which the sweep does not run")
    for name in policies:
        policy_arguments(name)  # an unknown policy fails here, before anything is written or submitted
    image_size = default_size(image_variant) if image_size is None else image_size
    validate_instances(instances)
    check_positive(trials=trials, max_steps=max_steps, action_steps=action_steps, image_size=image_size)
    chosen = tuple(SweepPolicy(name, {**policy_args.get("", {}), **policy_args.get(name, {})})
                   for name in dict.fromkeys(policies))
    return Sweep(policies=chosen, tasks=tuple(spec.name for spec in resolve_tasks(tasks)), trials=trials,
                 out=Path(out), max_steps=max_steps, action_steps=action_steps, image_size=image_size,
                 image_variant=image_variant, instances=instances)


# ---- jobs.json ----------------------------------------------------------------------------------------------

def _jobs_path(out: Path) -> Path:
    return out / "jobs.json"


def load_jobs(out: Path | str) -> list[dict[str, Any]]:
    """Every job submitted into the sweep folder: id, executor, run folder, task, trials, state."""
    path = _jobs_path(Path(out))
    return json.loads(path.read_text(encoding="utf-8"))["jobs"] if path.exists() else []


def _save_jobs(out: Path, jobs: list[dict[str, Any]]) -> None:
    """Replace jobs.json atomically: a reader never sees half of it."""
    path = _jobs_path(out)
    temporary = path.with_name(f".jobs.json.{os.getpid()}")
    lines = ",\n".join(f"  {json.dumps(job)}" for job in jobs)  # one job per line
    temporary.write_text(f'{{"jobs": [\n{lines}\n]}}\n', encoding="utf-8")
    os.replace(temporary, path)


def is_final(state: str) -> bool:
    return state.split()[0] in FINAL_STATES


def refresh_states(out: Path | str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ask the scheduler for the state of every job not known to have ended, and save what it says.

    Slurm jobs are looked up with sacct (one call for all of them, through submitit). Local jobs live only
    as long as the command that started them waits for them: one whose process is gone has ended.
    """
    out = Path(out)
    unfinished = [job for job in jobs if not is_final(job["state"])]
    slurm = [submitit.SlurmJob(folder=out / "submitit", job_id=job["job_id"])
             for job in unfinished if job["executor"] == "slurm"]
    # submitit's watcher asks sacct about every job it knows at once: force that once, then read its cache.
    states = {job.job_id: job.get_info(mode="force" if i == 0 else "standard").get("State", "UNKNOWN")
              for i, job in enumerate(slurm)}
    for job in unfinished:
        if job["executor"] == "slurm":
            job["state"] = states[job["job_id"]]
        elif job["executor"] != "local" or not _process_alive(int(job["job_id"])):
            job["state"] = "INTERRUPTED"
    if unfinished:
        _save_jobs(out, jobs)
    return jobs


def _process_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


# ---- planning and submission --------------------------------------------------------------------------------

def plan(sweep: Sweep, shard_size: int = DEFAULT_SHARD_SIZE) -> list[Shard]:
    """The shards of the trials that are neither recorded nor held by a queued or running job.

    A sweep into a run folder that holds episodes of another protocol is refused here, before anything is
    submitted (the jobs claim the folders, once their policy could be built, as an evaluation's workers do).
    """
    check_positive(shard_size=shard_size)
    sweep.out.mkdir(parents=True, exist_ok=True)
    held = {(job["folder"], job["task"], trial) for job in refresh_states(sweep.out, load_jobs(sweep.out))
            if not is_final(job["state"]) for trial in job["trials"]}
    shards = []
    for policy in sweep.policies:
        store = RecordStore(sweep.out / policy.folder)
        store.check(sweep.settings(policy).protocol, policy.name, policy.args)  # what its jobs will claim
        recorded = store.recorded_keys()
        for task in sweep.tasks:
            missing = [t for t in range(sweep.trials) if record_key(policy.name, policy.args, task, t) not in recorded
                       and (policy.folder, task, t) not in held]
            shards += [Shard(policy, task, tuple(missing[i:i + shard_size]))
                       for i in range(0, len(missing), shard_size)]
    (sweep.out / "sweep.json").write_text(json.dumps(sweep.to_json(), indent=1) + "\n", encoding="utf-8")
    return shards


class ShardJob(submitit.helpers.Checkpointable):
    """Runs a shard's trials that are not recorded yet. Requeued after a time-out or preemption (submitit
    resubmits it with the same arguments), it picks up after the last recorded episode."""

    def __call__(self, settings: EpisodeSettings, task: str, trials: list[int]) -> dict[str, Any]:
        recorded = RecordStore(settings.run_dir).recorded_keys()
        work = [(task, t) for t in trials if record_key(settings.policy, settings.policy_args, task, t) not in recorded]
        records = list(run_episodes(settings, work, workers=1))
        return {"task": task, "episodes": len(records), "successes": sum(r.success for r in records),
                "errors": sum(r.error is not None for r in records)}


def job_setup(threads: int = 1) -> list[str]:
    """Shell lines each job starts with: as many threads as the job has cores (one per simulation in evaluation
    jobs), headless rendering, this checkout importable."""
    variables = {**{name: str(threads) for name in WORKER_ENVIRONMENT}, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items())
    return [f"export {exports}", f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"]


def resolve_profile(kind: str, profile: ClusterProfile | None) -> ClusterProfile:
    """The profile jobs of executor `kind` run with: a Slurm sweep names one; a local one defaults to a job per core."""
    if kind not in EXECUTORS:
        raise ValueError(f"unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")
    if profile is None and kind == "slurm":
        raise ValueError("a Slurm sweep needs --profile (see slurm/profiles/)")
    return profile or ClusterProfile(time_min=24 * 60, array_parallelism=os.cpu_count() or 1)


def make_executor(kind: str, out: Path, profile: ClusterProfile | None = None) -> submitit.Executor:
    """A submitit executor writing its logs to `out/submitit`; `debug` runs nothing until a result is asked."""
    folder = out / "submitit" / "%j"
    if kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    executor = submitit.AutoExecutor(folder=folder, cluster=kind)
    profile = resolve_profile(kind, profile)
    setup = job_setup(profile.cpus_per_task)
    executor.update_parameters(name="lda-bench-sweep", slurm_setup=setup, local_setup=setup,
                               **profile.executor_parameters())
    return executor


def _entry(job: submitit.Job, shard: Shard, kind: str) -> dict[str, Any]:
    return {"job_id": job.job_id, "executor": kind, "folder": shard.policy.folder, "task": shard.task,
            "trials": list(shard.trials), "state": "PENDING", "submitted_at": time.time()}


def _job_arguments(sweep: Sweep, shard: Shard) -> tuple[EpisodeSettings, str, list[int]]:
    return sweep.settings(shard.policy), shard.task, list(shard.trials)


def submit(sweep: Sweep, shards: list[Shard], executor: submitit.Executor, kind: str) -> list[submitit.Job]:
    """Submit every shard in one job array (Slurm throttles it to the profile's parallelism); record the jobs."""
    if not shards:
        return []
    jobs = executor.map_array(ShardJob(), *zip(*(_job_arguments(sweep, shard) for shard in shards)))
    _save_jobs(sweep.out, load_jobs(sweep.out) + [_entry(job, shard, kind) for job, shard in zip(jobs, shards)])
    return jobs


def run_bounded(items: list, parallelism: int, submit: Callable[[Any], submitit.Job],
                on_start: Callable[[Any, submitit.Job], None] = lambda item, job: None,
                on_end: Callable[[Any, submitit.Job, bool], None] = lambda item, job, cancelled: None,
                poll_s: float = 0.5) -> list[submitit.Job]:
    """Submit a job per item, at most `parallelism` running at a time, and wait for them all (a local job array
    would start every job at once). `on_end(item, job, cancelled)` follows each job's end; interrupted, this
    cancels the jobs still running and reports them so."""
    pending, running, finished = list(items), [], []
    try:
        while pending or running:
            while pending and len(running) < parallelism:
                item = pending.pop(0)
                running.append((item, submit(item)))
                on_start(*running[-1])
            ended = [(item, job) for item, job in running if _ended(job)]
            for item, job in ended:
                running.remove((item, job))
                finished.append(job)
                on_end(item, job, False)
            if not ended:
                time.sleep(poll_s)
    finally:
        for item, job in running:
            job.cancel(check=False)
            on_end(item, job, True)
    return finished


def _ended(job: submitit.Job) -> bool:
    """Whether a job has ended (a debug job runs here when asked; one that raised has ended too)."""
    try:
        return job.done()
    except Exception:  # noqa: BLE001 - its error is read from result() by whoever waits for it
        return True


def run_locally(sweep: Sweep, shards: list[Shard], executor: submitit.Executor, parallelism: int,
                poll_s: float = 0.5) -> list[submitit.Job]:
    """Run the shards as local submitit jobs, at most `parallelism` at a time, and wait for them, keeping
    jobs.json up to date."""
    jobs, entries = load_jobs(sweep.out), {}

    def start(shard: Shard, job: submitit.Job) -> None:
        entries[id(shard)] = _entry(job, shard, "local") | {"state": "RUNNING"}
        jobs.append(entries[id(shard)])
        _save_jobs(sweep.out, jobs)

    def end(shard: Shard, job: submitit.Job, cancelled: bool) -> None:
        entry = entries[id(shard)]
        entry["state"] = "CANCELLED" if cancelled else job.state
        _save_jobs(sweep.out, jobs)
        if not cancelled:
            done = sum(e["state"] != "RUNNING" for e in entries.values())
            print(f"[{done}/{len(shards)}] {_describe(entry)}: {_outcome(job)}", flush=True)

    return run_bounded(shards, parallelism, lambda shard: executor.submit(ShardJob(), *_job_arguments(sweep, shard)),
                       start, end, poll_s)


def _describe(entry: dict[str, Any]) -> str:
    trials = entry["trials"]
    span = f"trial {trials[0]}" if len(trials) == 1 else f"trials {trials[0]}-{trials[-1]}"
    return f"{entry['folder']} {entry['task']} {span}"


def job_error_line(exc: Exception) -> str:
    """The last line of a failed job's traceback (submitit puts it between two rules, the log paths after)."""
    parts = str(exc).split("-" * 22)
    return (parts[1] if len(parts) > 2 else str(exc)).strip().splitlines()[-1]


def _outcome(job: submitit.Job) -> str:
    try:
        result = job.result()
    except Exception as exc:  # noqa: BLE001 - a failed job is reported, the sweep goes on
        return f"job failed: {job_error_line(exc)}"
    errors = f", {result['errors']} errors" if result["errors"] else ""
    return f"{result['successes']}/{result['episodes']} successes{errors}"


def run_sweep(sweep: Sweep, executor: str = "local", profile: ClusterProfile | None = None,
              shard_size: int = DEFAULT_SHARD_SIZE) -> list[submitit.Job]:
    """Plan the missing trials and submit them: a local sweep runs to the end, a Slurm one is queued."""
    profile = resolve_profile(executor, profile)
    shards = plan(sweep, shard_size)
    episodes = sum(len(shard.trials) for shard in shards)
    print(f"{sweep.out}: {episodes} episode(s) to run in {len(shards)} job(s) "
          f"({len(sweep.policies)} policies x {len(sweep.tasks)} tasks x {sweep.trials} trials asked)", flush=True)
    submitit_executor = make_executor(executor, sweep.out, profile)
    if executor == "local":
        return run_locally(sweep, shards, submitit_executor, profile.array_parallelism)
    jobs = submit(sweep, shards, submitit_executor, executor)
    if jobs:
        print(f"submitted job array {jobs[0].job_id.split('_')[0]}; "
              f"follow it with `lda-bench sweep status {sweep.out}`")
    return jobs


# ---- status ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskStatus:
    """Where one task of one policy stands: trials recorded, and the others by the state of their last job."""

    folder: str
    task: str
    total: int
    done: int
    errors: int      # recorded episodes that ended in an error (they are done: a failure of the policy)
    running: int     # in a job that is running
    queued: int      # in a job waiting to run (or to be requeued)
    failed: int      # their last job ended without recording them: run the sweep again
    unsubmitted: int


def sweep_status(out: Path | str) -> list[TaskStatus]:
    """Per policy and task of the sweep in `out`: done from the records, the rest from the job states."""
    sweep = Sweep.load(out)
    last_job_state = {}
    for job in sorted(refresh_states(out, load_jobs(out)), key=lambda job: job["submitted_at"]):
        last_job_state.update({(job["folder"], job["task"], trial): job["state"] for trial in job["trials"]})
    rows = []
    for policy in sweep.policies:
        records = {(r.task, r.trial): r for r in RecordStore(sweep.out / policy.folder).read()}
        for task in sweep.tasks:
            counts = dict.fromkeys(("running", "queued", "failed", "unsubmitted"), 0)
            done = errors = 0
            for trial in range(sweep.trials):
                record = records.get((task, trial))
                if record is not None:
                    done += 1
                    errors += record.error is not None
                    continue
                state = last_job_state.get((policy.folder, task, trial))
                counts["unsubmitted" if state is None else "failed" if is_final(state)
                       else "running" if state == "RUNNING" else "queued"] += 1
            rows.append(TaskStatus(policy.folder, task, sweep.trials, done, errors, **counts))
    return rows


def print_status(rows: list[TaskStatus]) -> None:
    width = max(len(r.task) for r in rows)
    folder_width = max(len("policy"), *(len(r.folder) for r in rows))
    print(f"{'policy':<{folder_width}}  {'task':<{width}}  {'done':>9}  {'errors':>6}  {'running':>7}  "
          f"{'queued':>6}  {'failed':>6}  {'unsubmitted':>11}")
    for r in rows:
        print(f"{r.folder:<{folder_width}}  {r.task:<{width}}  {f'{r.done}/{r.total}':>9}  {r.errors:>6}  "
              f"{r.running:>7}  {r.queued:>6}  {r.failed:>6}  {r.unsubmitted:>11}")
    done, total = sum(r.done for r in rows), sum(r.total for r in rows)
    failed = sum(r.failed + r.unsubmitted for r in rows)
    print(f"{done}/{total} episodes recorded" + (f"; {failed} need the sweep run again" if failed else ""))


# ---- benchmark ------------------------------------------------------------------------------------------------

def bench_sweep(directory: Path | str, records: int = 100_000) -> dict[str, float]:
    """Seconds to plan and submit a 24 x 51 sweep (to a DebugExecutor, which runs nothing), and to turn
    `records` synthetic episode records into a report: reading the store, then aggregating and rendering
    markdown, or HTML with its plots."""
    import random

    import pandas as pd

    from lda_bench import report
    from lda_bench.records import EpisodeRecord

    directory = Path(directory)
    figures = {}
    for shard_size in (DEFAULT_SHARD_SIZE, 1):
        sweep = make_sweep(["hold"], tasks="all", trials=51, out=directory / f"sweep-{shard_size}")
        start = time.perf_counter()
        submit(sweep, plan(sweep, shard_size), make_executor("debug", sweep.out), "debug")
        figures[f"plan + submit 24 x 51 (shard size {shard_size})"] = time.perf_counter() - start

    # Synthetic records in the store's own format: 2 policies x 2 protocols x 24 tasks x ~521 trials.
    rng = random.Random(0)
    per_column = records // (4 * len(sweep.tasks)) + 1
    for policy in ("hold", "random"):
        for max_steps in (360, 720):
            folder = directory / "records" / f"{policy}-{max_steps}" / "records"
            folder.mkdir(parents=True)
            protocol = asdict(EvalProtocol(max_steps=max_steps, action_steps=8, image_size=224))
            lines = [EpisodeRecord(policy=policy, policy_args={}, task=task, trial=trial, seed=trial,
                                   success=rng.random() < 0.4, first_success_step=None, steps=max_steps,
                                   wall_time_s=1.0, error=None, instruction="", protocol=protocol).to_json()
                     for task in sweep.tasks for trial in range(per_column)]
            (folder / "synthetic.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    start = time.perf_counter()
    loaded = {folder: RecordStore(folder).read() for folder in report.run_folders(directory / "records")}
    figures[f"read {sum(map(len, loaded.values())):,} records from the store"] = time.perf_counter() - start
    renderers = {"aggregate + markdown": report.to_markdown, "aggregate + HTML with plots": report.to_html}
    for label, render in renderers.items():
        start = time.perf_counter()
        frame = pd.concat([report.records_frame(found, str(folder)) for folder, found in loaded.items()])
        render(report.success_rate_table(frame))
        figures[label] = time.perf_counter() - start
    return figures


def print_bench(figures: dict[str, float]) -> None:
    width = max(map(len, figures))
    for name, seconds in figures.items():
        print(f"{name:<{width}}  {seconds:7.2f} s")
