"""An evaluation: every (task, trial) of one policy under one protocol, run by a pool of worker processes.

Each worker owns one environment at a time (EGL contexts are never shared between processes or
environments), builds the policy once, and writes its records to a file of its own as each episode ends.
The work is the (task, trial) pairs not recorded yet, in table order, so the same command resumes a run
that was stopped, and results do not depend on the number of workers: trial i of a task always starts
from the same scene and the policy is reset before every episode.

A served evaluation (`Serving`) holds the policy once, in a process of its own, instead of once per
worker: worker k is environment k of that server (lda_bench/remote.py), and the server answers the
requests of the workers that ask within its batching window with one call of the policy. A model policy
keeps each environment's history and seeds its noise per environment at the environment's reset, so a
deterministic policy records the same episodes either way.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lda_bench.policy import make_policy, policy_arguments
from lda_bench.records import EpisodeRecord, EvalProtocol, RecordStore, SeedManifest, canonical_args, record_key
from lda_bench.remote import RemotePolicy, policy_server
from lda_bench.rollout import run_episode
from tasks.assets import validate_instances
from tasks.images import DEFAULT_VARIANT, default_size
from tasks.specs import TaskSpec, get_task, resolve_tasks

# One simulation per core: without these, BLAS and OpenMP thread pools of two workers fight over the cores
# (measured: 14 ms per control step each instead of 7), and so would Mesa's software renderer (llvmpipe),
# which starts a thread per core.
WORKER_ENVIRONMENT = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                      "LP_NUM_THREADS": "1"}
DEFAULT_BATCH_WINDOW_MS = 5.0
# A served worker's wait for its chunk: on the loopback a reply is lost only if the server is gone, and then
# the worker exits anyway (see _watch); this bounds a server that hangs.
SERVED_CALL_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Serving:
    """Evaluation with one shared policy: one policy process answers every worker.

    The server gathers the requests that arrive within `batch_window_ms` of the first (or until every worker
    has asked) into one call of the policy. `device`: the served policy's `device` argument (a model
    policy's, e.g. cuda:0); None leaves the policy's own.
    """

    batch_window_ms: float = DEFAULT_BATCH_WINDOW_MS
    device: str | None = None


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
    serving: Serving | None = None

    @property
    def protocol(self) -> EvalProtocol:
        return EvalProtocol(max_steps=self.max_steps, action_steps=self.action_steps, image_size=self.image_size,
                            image_variant=self.image_variant, instances=self.instances, serving=self.served)

    @property
    def served(self) -> dict[str, Any] | None:
        """How the policy was served, as the records' protocol says it (None: one policy per worker)."""
        return None if self.serving is None else asdict(self.serving)

    def served_policy_args(self) -> dict[str, Any]:
        """The arguments the served policy is built with: the evaluation's, and the serving device."""
        device = self.serving.device if self.serving else None
        return {**self.policy_args, **({"device": device} if device else {})}


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
             instances: str = "A", serving: Serving | None = None) -> EvalSummary:
    """Run the trials of `tasks` not yet recorded in `out`, then print and return the per-task summary.

    `policy_args` go to `make_policy` (strings are converted as on the command line). Trial i starts from
    scene seed i of the evaluation split; `instances="B"` draws the held-out object instances (a
    generalisation run). `policy_timeout_s` bounds each call into the policy; a call that overruns fails its
    episode with a TimeoutError. With `video`, every episode is also written to `out/videos/`. With
    `serving`, the workers share one policy process (see the module docstring).
    """
    policy_args = dict(policy_args or {})
    image_size = default_size(image_variant) if image_size is None else image_size
    validate_instances(instances)
    check_serving(policy, policy_args, serving)  # an unknown policy name fails here, before any worker starts
    specs = resolve_tasks(tasks)
    check_positive(trials=trials, workers=workers, action_steps=action_steps, max_steps=max_steps,
                    image_size=image_size)
    if policy_timeout_s is not None and not policy_timeout_s > 0:
        raise ValueError(f"policy_timeout_s must be a positive number of seconds, got {policy_timeout_s!r}")
    settings = EpisodeSettings(policy, policy_args, str(out), action_steps, max_steps, image_size, video,
                               policy_timeout_s, image_variant, instances, serving)
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


def check_serving(policy: str, policy_args: dict[str, Any], serving: Serving | None) -> None:
    """Refuse a policy that does not exist, and serving settings that cannot work, before anything starts."""
    accepted = policy_arguments(policy)
    if serving is None:
        return
    if not serving.batch_window_ms >= 0:
        raise ValueError(f"the batching window must be >= 0 ms, got {serving.batch_window_ms!r}")
    if serving.device and "device" not in accepted:
        raise ValueError(f"policy {policy!r} takes no device argument: it cannot be served on {serving.device}")
    if serving.device and "device" in policy_args:
        raise ValueError(f"give the served policy's device once: device={policy_args['device']} among its "
                         f"arguments, and {serving.device} to serve it on")


def check_positive(**values: Any) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def run_episodes(settings: EpisodeSettings, work: list[tuple[str, int]], workers: int) -> Iterator[EpisodeRecord]:
    """The records of the work items, as they finish.

    With one worker the episodes run in this process, and its policy is built right away, so that one that
    cannot be built fails before any progress is shown. More workers are spawned processes (a fork would
    copy this process's threads and OpenGL state). A served evaluation starts its policy process right away,
    for the same reason, and runs every worker in a process of its own.
    """
    if not work:
        return iter(())
    if settings.serving is not None:
        return _run_served(settings, work, PolicyProcess(settings, environments=min(workers, len(work))))
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


def _run_served(settings: EpisodeSettings, work: list[tuple[str, int]],
                server: PolicyProcess) -> Iterator[EpisodeRecord]:
    try:
        yield from _run_in_processes(settings, work, server.environments, server)
    finally:
        server.stop()


def _run_in_processes(settings: EpisodeSettings, work: list[tuple[str, int]], workers: int,
                      server: PolicyProcess | None = None) -> Iterator[EpisodeRecord]:
    """The work items' records from a pool of spawned workers; with `server`, worker k is its environment k."""
    context = get_context("spawn")
    workers = min(workers, len(work))
    env_ids = context.SimpleQueue()
    for env_id in range(workers):
        env_ids.put(env_id)
    served = None if server is None else (server.port, server.pid)
    with _worker_environment():
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                   initargs=(settings, os.getpid(), served, env_ids))
        try:
            pending = {pool.submit(_run_in_worker, item) for item in work}
            while pending:
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
                if server is not None:
                    server.check()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class _Worker:
    """One process's share of an evaluation: one policy, the environment of the current task, one record file.

    `served`: the (port, PID) of a served evaluation's policy process, whose environment `env_id` this
    worker is; its policy is then a client of that process.
    """

    def __init__(self, settings: EpisodeSettings, served: tuple[int, int] | None = None, env_id: int = 0):
        self.settings, self.served, self.env_id = settings, served, env_id
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
        if self.served is None:
            self._policy = make_policy(s.policy, **s.policy_args)
        else:
            self._policy = RemotePolicy(port=self.served[0], timeout_s=SERVED_CALL_TIMEOUT_S, retries=0,
                                        env_id=self.env_id)
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
                             policy_timeout_s=s.policy_timeout_s, video_path=video_path, serving=s.served)
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


def _start_worker(settings: EpisodeSettings, parent_pid: int, served: tuple[int, int] | None, env_ids) -> None:
    global _worker
    _worker = _Worker(settings, served, env_ids.get())
    threading.Thread(target=_watch, args=(parent_pid, served and served[1]), daemon=True).start()


def _run_in_worker(item: tuple[str, int]) -> EpisodeRecord:
    return _worker.run(*item)


def _watch(parent_pid: int, server_pid: int | None = None) -> None:
    """Exit when the evaluation (or its policy process) is gone: a worker would otherwise wait for work, or
    for its policy's answer, forever."""
    while os.getppid() == parent_pid and (server_pid is None or _alive(server_pid)):
        time.sleep(1.0)
    os._exit(1)


def _alive(pid: int) -> bool:
    """Whether a process runs (the evaluation reaps its policy process when that exits, see PolicyProcess.check)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class PolicyProcess:
    """A served evaluation's policy, in a process of its own on a free loopback port, for `environments`
    workers. Built when this is: a policy that cannot be built raises its error here. Stopped by its PID."""

    def __init__(self, settings: EpisodeSettings, environments: int):
        self.environments = environments
        receiver, sender = get_context("spawn").Pipe(duplex=False)
        self._process = get_context("spawn").Process(
            target=_serve_policy, args=(settings, environments, os.getpid(), sender), daemon=True,
            name=f"lda-bench policy {settings.policy}")
        self._process.start()
        sender.close()
        try:
            while not receiver.poll(0.5):
                self.check()
            answer = receiver.recv()
        except BaseException:
            self.stop()
            raise
        if isinstance(answer, BaseException):
            self.stop()
            raise answer
        self.port, self.pid = answer, self._process.pid

    def check(self) -> None:
        """Raise if the policy process has exited (and reap it)."""
        if not self._process.is_alive():
            raise RuntimeError(f"the policy process (PID {self._process.pid}) exited with code "
                               f"{self._process.exitcode}; its error, if any, is printed above")

    def stop(self) -> None:
        self._process.terminate()
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)


def _serve_policy(settings: EpisodeSettings, environments: int, parent_pid: int, ready) -> None:
    """The policy process: build the policy, say its port (or why it could not), answer until stopped."""
    threading.Thread(target=_watch, args=(parent_pid,), daemon=True).start()
    try:
        server = policy_server(settings.policy, settings.served_policy_args(), port=0, max_batch=environments,
                               batch_window_s=settings.serving.batch_window_ms / 1000)
    except Exception as exc:  # noqa: BLE001 - the evaluation raises it
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - an exception that does not survive pickling goes as its text
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        ready.send(exc)
        return
    ready.send(server.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


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
