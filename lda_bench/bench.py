"""Benchmarks the project ships: each prints its figures, measured side by side in one run."""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path


def _median_ms(samples: list[float]) -> float:
    return 1000.0 * statistics.median(samples)


def bench_env(task_names: list[str] | None = None, steps: int = 60, resets: int = 8, seed: int = 0) -> list[dict]:
    """Per task family: control-step time of the bare robosuite scene (robosuite's own controllers and the
    vectorised ones the suite uses), the Gymnasium step without and with the egoview render, reset time,
    and the harness's overhead over the bare scene step. Steps alternate between the variants so that
    machine noise hits them alike."""
    from tasks.env import GR1TabletopEnv
    from tasks.specs import TASKS, get_task

    if task_names is None:  # one task per family
        seen: dict[str, str] = {}
        for spec in TASKS:
            seen.setdefault(spec.family, spec.name)
        task_names = list(seen.values())
    rows = []
    for name in task_names:
        spec = get_task(name)
        env = GR1TabletopEnv(spec)
        env.reset(seed=seed)
        env.render()  # build the renderer outside the timed loop
        scene = env.scene
        hold = {f"action.{k}": v for k, v in env.joint_state().items()}
        chunk = {k: v[None] for k, v in hold.items()}
        flat = scene.hold_action()
        times = {"robosuite_ctrl": [], "bare": [], "harness": [], "harness_render": []}
        for _ in range(steps):
            scene.fast_control = False
            t = time.perf_counter(); scene.step(flat); times["robosuite_ctrl"].append(time.perf_counter() - t)
            scene.fast_control = True
            t = time.perf_counter(); scene.step(flat); times["bare"].append(time.perf_counter() - t)
            t = time.perf_counter(); env.step_chunk(chunk, render=False); times["harness"].append(time.perf_counter() - t)
            t = time.perf_counter(); env.step(hold); times["harness_render"].append(time.perf_counter() - t)
        reset_times = []
        for i in range(resets):
            t = time.perf_counter(); env.reset(seed=seed + 1 + i); reset_times.append(time.perf_counter() - t)
        row = {"family": spec.family, "task": spec.name, **{k: _median_ms(v) for k, v in times.items()},
               "render": _median_ms(times["harness_render"]) - _median_ms(times["harness"]),
               "reset": _median_ms(reset_times)}
        row["overhead_pct"] = 100.0 * (row["harness"] - row["bare"]) / row["bare"]
        rows.append(row)
        env.close()
    return rows


def print_env_table(rows: list[dict]) -> None:
    print(f"Control step at 20 Hz (25 physics substeps), medians in ms; render = the delivered egoview (one 16:10 "
          f"render cut into both 256x256 pictures); reset = scene draw, placing, 0.5 s settling and the first "
          f"observation (load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores).")
    print(f"{'family':<10} {'robosuite ctrl':>14} {'scene step':>10} {'env step':>9} {'+render':>8} "
          f"{'render':>7} {'reset':>7} {'overhead':>9}  task")
    for r in rows:
        print(f"{r['family']:<10} {r['robosuite_ctrl']:>14.2f} {r['bare']:>10.2f} {r['harness']:>9.2f} "
              f"{r['harness_render']:>8.2f} {r['render']:>7.2f} {r['reset']:>7.1f} {r['overhead_pct']:>8.1f}%  {r['task']}")
    print("robosuite ctrl: the scene stepped with robosuite's own controller objects; scene step: the same scene"
          " with the vectorised controller the suite uses (bare robosuite env.step); env step: gymnasium step"
          " without render (action checks, state, success); overhead: env step over scene step.")


class _Timed:
    """Stands in for `inner`, adding the time spent in the named methods to `seconds`."""

    def __init__(self, inner, methods: tuple[str, ...]):
        self.inner, self.seconds = inner, 0.0
        for name in methods:
            setattr(self, name, self._timed(getattr(inner, name)))

    def _timed(self, method):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return call

    def __getattr__(self, name):
        return getattr(self.inner, name)


def bench_eval(task_name: str | None = None, max_steps: int = 60, episodes: int = 6, action_steps: int = 8) -> dict:
    """Where an evaluation's time goes, and how it scales with workers.

    Per control step, for `hold` (a one-step chunk: a policy call and a render every step) and `random`
    (8-step chunks): the whole episode, the environment's share (reset and steps, renders included), the
    policy's share, and what is left, the harness's own time. Then episodes per minute of `random` with 1
    and 2 workers: end to end (process start and environment build included) and steady state (from the
    episodes' own wall times, all workers busy at once).
    """
    import contextlib
    import io
    import tempfile

    from lda_bench.evaluate import evaluate
    from lda_bench.policy import make_policy
    from lda_bench.records import RecordStore
    from lda_bench.rollout import run_episode
    from tasks.env import GR1TabletopEnv
    from tasks.specs import TASKS, get_task

    spec = get_task(task_name) if task_name else TASKS[0]
    load = os.getloadavg()[0]  # other processes on these cores slow the workers down: say how busy they were
    env = _Timed(GR1TabletopEnv(spec), ("reset", "step_chunk"))
    env.render()  # build the renderer outside the timed episodes
    rows = []
    for name in ("hold", "random"):
        policy = _Timed(make_policy(name), ("reset", "get_action"))
        env.seconds = 0.0
        records = [run_episode(env, policy, spec, trial, trial, action_steps, max_steps, policy_name=name)
                   for trial in range(3)]
        steps = sum(r.steps for r in records)
        total, env_s, policy_s = sum(r.wall_time_s for r in records), env.seconds, policy.seconds
        rows.append({"policy": name, "steps": steps, "total": 1000 * total / steps, "env": 1000 * env_s / steps,
                     "policy_ms": 1000 * policy_s / steps, "harness": 1000 * (total - env_s - policy_s) / steps})
        rows[-1]["overhead_pct"] = 100 * rows[-1]["harness"] / rows[-1]["env"]
    env.inner.close()

    throughput = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
            start = time.perf_counter()
            evaluate("random", tasks=[spec.name], trials=episodes, workers=workers, action_steps=action_steps,
                     max_steps=max_steps, out=out, progress=False)
            elapsed = time.perf_counter() - start
            records = RecordStore(out).read()
        throughput[workers] = {
            "end_to_end": 60 * episodes / elapsed,
            "steady": 60 * min(workers, episodes) / statistics.mean(r.wall_time_s for r in records),
            "outcomes": [(r.trial, r.success, r.steps, r.first_success_step) for r in records]}
    return {"task": spec.name, "max_steps": max_steps, "action_steps": action_steps, "episodes": episodes,
            "rows": rows, "throughput": throughput, "load": load, "cores": os.cpu_count(),
            "shared_model": bench_shared_model(spec.name, episodes, max_steps, action_steps)}


def bench_shared_model(task: str, episodes: int, max_steps: int, action_steps: int, workers: int = 2) -> dict:
    """A tiny LDA evaluated by `workers` workers each holding a copy, then by as many sharing one served copy
    (`--serve`): episodes per hour end to end and in steady state, and the peak resident memory of each process
    (workers, and the policy process)."""
    import contextlib
    import io
    import tempfile

    from lda_bench.evaluate import Serving, evaluate
    from lda_bench.records import RecordStore
    from model.bench import tiny_checkpoint

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        args = {"checkpoint": str(tiny_checkpoint(Path(tmp) / "tiny.pt"))}
        for mode, serving in (("copies", None), ("served", Serving())):
            with _ChildMemory() as memory, contextlib.redirect_stdout(io.StringIO()):
                start = time.perf_counter()
                evaluate("lda", args, tasks=[task], trials=episodes, workers=workers, action_steps=action_steps,
                         max_steps=max_steps, out=f"{tmp}/{mode}", progress=False, serving=serving)
                elapsed = time.perf_counter() - start
            records = RecordStore(f"{tmp}/{mode}").read()
            peaks = memory.peaks_mb()  # in start order: a served evaluation starts its policy process first
            runs[mode] = {"end_to_end": 3600 * episodes / elapsed,
                          "steady": 3600 * min(workers, episodes) / statistics.mean(r.wall_time_s for r in records),
                          "outcomes": [(r.trial, r.success, r.steps, r.first_success_step) for r in records],
                          "policy_mb": peaks[0] if serving else None, "worker_mb": max(peaks[1 if serving else 0:])}
    return {"workers": workers, **runs}


class _ChildMemory:
    """The peak resident memory of each child process of this one, sampled from /proc while in use."""

    def __init__(self, every_s: float = 0.2):
        self.every_s, self._peaks, self._started = every_s, {}, {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _ChildMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()

    def peaks_mb(self) -> list[float]:
        """Each child's peak in MB, in the order they started (multiprocessing's resource tracker left out)."""
        return [self._peaks[pid] / 1024 for pid in sorted(self._peaks, key=lambda pid: self._started[pid])]

    def _sample(self) -> None:
        while not self._done.wait(self.every_s):
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (command)"
                    if int(fields[1]) != os.getpid():
                        continue
                    if b"resource_tracker" in (stat.parent / "cmdline").read_bytes():
                        continue
                    status = (stat.parent / "status").read_text()
                except (OSError, IndexError, ValueError):  # the process ended meanwhile
                    continue
                rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
                pid = int(stat.parent.name)
                self._started.setdefault(pid, int(fields[19]))
                self._peaks[pid] = max(self._peaks.get(pid, 0), rss)


def print_eval_report(report: dict) -> None:
    print(f"Evaluation cost on {report['task']}: episodes of {report['max_steps']} steps, "
          f"{report['action_steps']} steps per chunk; ms per control step.")
    print(f"{'policy':<8} {'steps':>6} {'episode':>8} {'env':>7} {'policy':>7} {'harness':>8} {'overhead':>9}")
    for r in report["rows"]:
        print(f"{r['policy']:<8} {r['steps']:>6} {r['total']:>8.2f} {r['env']:>7.2f} {r['policy_ms']:>7.2f} "
              f"{r['harness']:>8.3f} {r['overhead_pct']:>8.2f}%")
    print("env: reset and steps with their renders (hold: one render per step, random: one per chunk); "
          "harness: episode minus env minus policy; overhead: harness over env.")
    one, two = report["throughput"][1], report["throughput"][2]
    print(f"Episodes per minute, random, {report['episodes']} episodes: "
          f"1 worker {one['steady']:.1f} steady / {one['end_to_end']:.1f} end to end; "
          f"2 workers {two['steady']:.1f} steady / {two['end_to_end']:.1f} end to end; "
          f"speed-up {two['steady'] / one['steady']:.2f}x steady, {two['end_to_end'] / one['end_to_end']:.2f}x end to end.")
    print(f"Same outcomes with 1 and 2 workers: {'yes' if one['outcomes'] == two['outcomes'] else 'NO'}. "
          f"Load average before the run: {report['load']:.2f} on {report['cores']} cores.")
    shared = report["shared_model"]
    copies, served, n = shared["copies"], shared["served"], shared["workers"]
    print(f"Tiny LDA, {n} workers, episodes per hour: each worker holding a copy {copies['steady']:.0f} steady / "
          f"{copies['end_to_end']:.0f} end to end; sharing one served copy (--serve) {served['steady']:.0f} / "
          f"{served['end_to_end']:.0f} ({served['steady'] / copies['steady']:.2f}x, "
          f"{served['end_to_end'] / copies['end_to_end']:.2f}x).")
    print(f"Peak resident memory: a worker holding a copy {copies['worker_mb']:.0f} MB ({n} of them: "
          f"{n * copies['worker_mb']:.0f} MB); a served worker {served['worker_mb']:.0f} MB and the policy process "
          f"{served['policy_mb']:.0f} MB ({n * served['worker_mb'] + served['policy_mb']:.0f} MB). "
          f"Same outcomes: {'yes' if copies['outcomes'] == served['outcomes'] else 'NO'}.")


def bench_demos(task_name: str | None = None, episodes: int = 8, max_steps: int = 120, image_size: int = 256,
                rounds: int = 3) -> dict:
    """Episodes per minute of demonstration generation with 1 and 2 workers, end to end (process start and
    environment build included) and in steady state, then frames per second of the dataset reader
    decoding those videos. The 1- and 2-worker runs alternate for `rounds` rounds, so that both see the same
    machine; the figures are medians, the speed-up the median of each round's ratio."""
    import tempfile

    from lda_bench.demos import generate
    from lda_bench.lerobot import LeRobotDataset
    from tasks.specs import TASKS, get_task

    spec = get_task(task_name) if task_name else next(t for t in TASKS if t.family == "novel")
    load = os.getloadavg()[0]
    runs = {1: [], 2: []}   # per round: (end to end, steady) episodes per minute
    with tempfile.TemporaryDirectory() as out:
        for r in range(rounds):
            for workers in (1, 2):
                start, finished = time.perf_counter(), []
                (root,) = generate(spec.name, episodes, f"{out}/{r}-{workers}", workers=workers, image_size=image_size,
                                   max_steps=max_steps, progress=False,
                                   on_episode=lambda task, row: finished.append(time.perf_counter()))
                # Steady state: once every worker has finished its first episode (process start and environment
                # build behind it), the episodes that follow over the time they take.
                runs[workers].append((60 * episodes / (time.perf_counter() - start),
                                      60 * (episodes - workers) / (finished[-1] - finished[workers - 1])))
        dataset = LeRobotDataset.open(root)
        dataset.episode_frames(0)  # load the codec libraries outside the timed loop
        start, frames = time.perf_counter(), 0
        for index in list(range(dataset.num_episodes)) * 3:
            frames += len(dataset.episode_frames(index))
            dataset.episode_actions(index)
        reader_fps = frames / (time.perf_counter() - start)
    median = statistics.median
    return {"task": spec.name, "episodes": episodes, "max_steps": max_steps, "image_size": image_size,
            "rounds": rounds, "load": load, "cores": os.cpu_count(),
            "generation": {w: median(e for e, _ in runs[w]) for w in runs},
            "steady": {w: median(s for _, s in runs[w]) for w in runs},
            "speedup": {"end_to_end": median(b[0] / a[0] for a, b in zip(runs[1], runs[2])),
                        "steady": median(b[1] / a[1] for a, b in zip(runs[1], runs[2]))},
            "reader_fps": reader_fps}


def print_demos_report(report: dict) -> None:
    one, two = report["generation"][1], report["generation"][2]
    print(f"Demonstrations of {report['task']}: {report['episodes']} episodes of up to {report['max_steps']} steps, "
          f"{report['image_size']} px, a render every step; 1 and 2 workers alternate, medians of "
          f"{report['rounds']} rounds.")
    steady_one, steady_two = report["steady"][1], report["steady"][2]
    print(f"Generation, episodes per minute end to end: 1 worker {one:.1f}, 2 workers {two:.1f} "
          f"(speed-up {report['speedup']['end_to_end']:.2f}x). "
          f"Load average before the run: {report['load']:.2f} on {report['cores']} cores.")
    print(f"Generation in steady state (after each worker's first episode): 1 worker {steady_one:.1f}, 2 workers "
          f"{steady_two:.1f} episodes/min (speed-up {report['speedup']['steady']:.2f}x; target >= 1.8x).")
    print(f"Reader with video decoding: {report['reader_fps']:.0f} frames/s (target >= 500).")
