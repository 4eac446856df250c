"""An evaluation: every (task, trial) of one policy under one protocol, run by a pool of worker processes.

Each worker owns one environment at a time (EGL contexts are never shared between processes or
environments), builds the policy once, and writes its records to a file of its own as each episode ends.
The work is the (task, trial) pairs not recorded yet, in table order, so the same command resumes a run
that was stopped, and results do not depend on the number of workers: trial i of a task always starts
from the same scene and the policy is reset before every episode.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lda_bench.policy import make_policy, policy_arguments
from lda_bench.records import EpisodeRecord, EvalProtocol, RecordStore, SeedManifest, canonical_args, record_key
from lda_bench.rollout import run_episode
from tasks.assets import validate_instances
from tasks.images import DEFAULT_VARIANT, default_size
from tasks.specs import TaskSpec, get_task, resolve_tasks

# One simulation per core: without these, BLAS and OpenMP thread pools of two workers fight over the cores
# (measured: 14 ms per control step each instead of 7), and so would Mesa's software renderer (llvmpipe),
# which starts a thread per core.
WORKER_ENVIRONMENT = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                      "LP_NUM_THREADS": "1"}


@dataclass(frozen=True)
class EpisodeSettings:
    """Everything a worker needs to run episodes of one evaluation (sent to spawned workers)."""

    policy: str
    policy_args: dict[str, Any]
    run_dir: str
    action_steps: int
    max_steps: int
    image_size: int
    video: bool
    policy_timeout_s: float | None
    image_variant: str = DEFAULT_VARIANT
    instances: str = "A"

    @property
    def protocol(self) -> EvalProtocol:
        return EvalProtocol(max_steps=self.max_steps, action_steps=self.action_steps, image_size=self.image_size,
                            image_variant=self.image_variant, instances=self.instances)


@dataclass(frozen=True)
class TaskResult:
    """One row of the summary: a task's recorded trials out of those asked for."""

    task: str
    total: int
    done: int
    successes: int
    errors: int

    @property
    def rate(self) -> float | None:
        """Success rate in percent of the finished trials (episodes that failed with an error count as failures)."""
        return 100.0 * self.successes / self.done if self.done else None


@dataclass(frozen=True)
class EvalSummary:
    """Per-task results of an evaluation, from every record of the run folder (not only this call's)."""

    policy: str
    policy_args: dict[str, Any]
    run_dir: Path
    rows: list[TaskResult]
    episodes_run: int                       # episodes this call ran (0 when everything was recorded)
    error_examples: list[str] = field(default_factory=list)

    @property
    def total(self) -> TaskResult:
        rows = self.rows
        return TaskResult("all tasks", sum(r.total for r in rows), sum(r.done for r in rows),
                          sum(r.successes for r in rows), sum(r.errors for r in rows))

    def table(self) -> str:
        width = max(len(row.task) for row in [*self.rows, self.total])

        def line(row: TaskResult) -> str:
            rate = "-" if row.rate is None else f"{row.rate:.1f}"
            return f"{row.task:<{width}}  {f'{row.done}/{row.total}':>10}  {row.successes:>9}  {rate:>6}  {row.errors:>6}"

        header = f"{'task':<{width}}  {'done/total':>10}  {'successes':>9}  {'rate %':>6}  {'errors':>6}"
        args = f" {canonical_args(self.policy_args)}" if self.policy_args else ""
        return "\n".join([f"policy {self.policy}{args}, run folder {self.run_dir} ({self.episodes_run} episode(s) run now)",
                          header, *map(line, self.rows), "-" * len(header), line(self.total),
                          *(f"error: {example}" for example in self.error_examples)])


def evaluate(policy: str, policy_args: dict[str, Any] | None = None, tasks: str | list[str] = "all", trials: int = 51,
             workers: int = 1, action_steps: int = 8, max_steps: int = 720, out: Path | str = "runs/eval",
             video: bool = False, image_size: int | None = None, progress: bool = True,
             policy_timeout_s: float | None = None, image_variant: str = DEFAULT_VARIANT,
             instances: str = "A") -> EvalSummary:
    """Run the trials of `tasks` not yet recorded in `out`, then print and return the per-task summary.

    `policy_args` go to `make_policy` (strings are converted as on the command line). Trial i starts from
    scene seed i of the evaluation split; `instances="B"` draws the held-out object instances (a
    generalisation run). `policy_timeout_s` bounds each call into the policy; a call that overruns fails its
    episode with a TimeoutError. With `video`, every episode is also written to `out/videos/`.
    """
    policy_args = dict(policy_args or {})
    image_size = default_size(image_variant) if image_size is None else image_size
    validate_instances(instances)
    policy_arguments(policy)  # an unknown policy name fails here, before any worker starts
    specs = resolve_tasks(tasks)
    check_positive(trials=trials, workers=workers, action_steps=action_steps, max_steps=max_steps,
                    image_size=image_size)
    if policy_timeout_s is not None and not policy_timeout_s > 0:
        raise ValueError(f"policy_timeout_s must be a positive number of seconds, got {policy_timeout_s!r}")
    settings = EpisodeSettings(policy, policy_args, str(out), action_steps, max_steps, image_size, video,
                               policy_timeout_s, image_variant, instances)
    store = RecordStore(out)
    store.check(settings.protocol, policy, policy_args)  # refuse early; a worker claims the folder (see _Worker)
    recorded = store.recorded_keys()
    work = [(spec.name, trial) for spec in specs for trial in range(trials)
            if record_key(policy, policy_args, spec.name, trial) not in recorded]
    records = run_episodes(settings, work, workers)
    done = successes = errors = 0
    with tqdm(total=len(work), disable=not progress, unit="episode", desc=f"{policy} on {len(specs)} task(s)") as bar:
        for record in records:
            done += 1
            successes += record.success
            errors += record.error is not None
            bar.set_postfix_str(f"success {successes}/{done} ({100 * successes / done:.0f}%)"
                                + (f", {errors} error(s)" if errors else ""), refresh=False)
            bar.update()
    summary = summarize(store.read(), policy, policy_args, specs, trials, out, episodes_run=done)
    print(summary.table())
    return summary


def summarize(records: list[EpisodeRecord], policy: str, policy_args: dict[str, Any], specs: list[TaskSpec],
              trials: int, run_dir: Path | str, episodes_run: int = 0) -> EvalSummary:
    """Per-task counts of the records of `policy` with `policy_args` for trials 0..trials-1 of `specs`."""
    wanted = {record_key(policy, policy_args, spec.name, trial) for spec in specs for trial in range(trials)}
    mine = [r for r in records if r.key in wanted]
    rows = []
    for spec in specs:
        of_task = [r for r in mine if r.task == spec.name]
        rows.append(TaskResult(spec.name, trials, len(of_task), sum(r.success for r in of_task),
                               sum(r.error is not None for r in of_task)))
    examples = sorted(f"{r.task} trial {r.trial}: {r.error.splitlines()[0]}" for r in mine if r.error is not None)[:3]
    return EvalSummary(policy, policy_args, Path(run_dir), rows, episodes_run, examples)


def check_positive(**values: Any) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def run_episodes(settings: EpisodeSettings, work: list[tuple[str, int]], workers: int) -> Iterator[EpisodeRecord]:
    """The records of the work items, as they finish.

    With one worker the episodes run in this process, and its policy is built right away, so that one that
    cannot be built fails before any progress is shown. More workers are spawned processes (a fork would
    copy this process's threads and OpenGL state).
    """
    if not work:
        return iter(())
    if workers == 1:
        worker = _Worker(settings)
        worker.start()
        return _run_here(worker, work)
    return _run_in_processes(settings, work, workers)


def _run_here(worker: _Worker, work: list[tuple[str, int]]) -> Iterator[EpisodeRecord]:
    try:
        for task, trial in work:
            yield worker.run(task, trial)
    finally:
        worker.close()


def _run_in_processes(settings: EpisodeSettings, work: list[tuple[str, int]], workers: int) -> Iterator[EpisodeRecord]:
    with _worker_environment():
        pool = ProcessPoolExecutor(min(workers, len(work)), mp_context=get_context("spawn"),
                                   initializer=_start_worker, initargs=(settings, os.getpid()))
        try:
            for future in as_completed([pool.submit(_run_in_worker, item) for item in work]):
                yield future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class _Worker:
    """One process's share of an evaluation: one policy, the environment of the current task, one record file."""

    def __init__(self, settings: EpisodeSettings):
        self.settings = settings
        self.store = RecordStore(settings.run_dir)
        self.seeds = SeedManifest()
        self._policy = None
        self._env = None
        self._env_task: str | None = None

    def start(self) -> None:
        """Build the policy, then claim the run folder for this protocol.

        Claimed only once the policy could be built, so that a mistyped argument leaves no folder behind that
        the corrected command would be refused; a claim that fails stops this worker before it records.
        """
        s = self.settings
        self._policy = make_policy(s.policy, **s.policy_args)
        self.store.claim(s.protocol, s.policy, s.policy_args)
        self.seeds.write(s.run_dir)

    def run(self, task: str, trial: int) -> EpisodeRecord:
        s = self.settings
        spec = get_task(task)
        if self._policy is None:
            self.start()
        video_path = Path(s.run_dir) / "videos" / f"{spec.slug}-trial{trial:03d}.mp4" if s.video else None
        record = run_episode(self._env_for(spec), self._policy, spec, trial, self.seeds.seed(spec.name, trial),
                             s.action_steps, s.max_steps, policy_name=s.policy, policy_args=s.policy_args,
                             policy_timeout_s=s.policy_timeout_s, video_path=video_path)
        self.store.append(record)
        if record.error is not None and record.error.startswith("TimeoutError:"):
            self._policy = None  # its abandoned call may still be running in it: the next episode gets a new one
        return record

    def _env_for(self, spec: TaskSpec):
        """The current task's environment, built on first use (about 2.5 s) and kept while its trials run."""
        if self._env_task != spec.name:
            from tasks.env import GR1TabletopEnv

            self.close_env()
            self._env = GR1TabletopEnv(spec, image_size=self.settings.image_size,
                                       image_variant=self.settings.image_variant, instances=self.settings.instances)
            self._env.render()  # create the renderer now, so that its ~1 s is not charged to the first episode
            self._env_task = spec.name
        return self._env

    def close_env(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env, self._env_task = None, None

    def close(self) -> None:
        self.close_env()
        self.store.close()
        close_policy = getattr(self._policy, "close", None)  # not part of the Policy protocol; RemotePolicy has one
        if close_policy is not None:
            close_policy()


_worker: _Worker | None = None


def _start_worker(settings: EpisodeSettings, parent_pid: int) -> None:
    global _worker
    _worker = _Worker(settings)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()


def _run_in_worker(item: tuple[str, int]) -> EpisodeRecord:
    return _worker.run(*item)


def _exit_with_parent(parent_pid: int) -> None:
    """A worker whose evaluation was killed would otherwise wait for work forever."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


@contextmanager
def _worker_environment() -> Iterator[None]:
    """The environment spawned workers start with (they read it before importing numpy or MuJoCo)."""
    wanted = {**WORKER_ENVIRONMENT, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
