"""Benchmarks the project ships: each prints its figures, measured side by side in one run."""

from __future__ import annotations

import statistics
import time

import numpy as np


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
    print("Control step at 20 Hz (25 physics substeps), medians in ms; render = 224x224 egoview.")
    print(f"{'family':<10} {'robosuite ctrl':>14} {'scene step':>10} {'env step':>9} {'+render':>8} "
          f"{'render':>7} {'reset':>7} {'overhead':>9}  task")
    for r in rows:
        print(f"{r['family']:<10} {r['robosuite_ctrl']:>14.2f} {r['bare']:>10.2f} {r['harness']:>9.2f} "
              f"{r['harness_render']:>8.2f} {r['render']:>7.2f} {r['reset']:>7.1f} {r['overhead_pct']:>8.1f}%  {r['task']}")
    print("robosuite ctrl: the scene stepped with robosuite's own controller objects; scene step: the same scene"
          " with the vectorised controller the suite uses (bare robosuite env.step); env step: gymnasium step"
          " without render (action checks, state, success); overhead: env step over scene step.")
