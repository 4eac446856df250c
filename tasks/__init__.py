"""The 24 RoboCasa-GR1 tabletop tasks as Gymnasium environments (`lda_bench/<TaskName>-v0`).

Importing this package registers every task; building one needs only robosuite and MuJoCo (the assets
are made from primitives in `tasks/assets.py`).
"""

import logging
import os

# Headless rendering unless the user chose otherwise (mujoco reads this when it is first imported).
os.environ.setdefault("MUJOCO_GL", "egl")

# robosuite logs a page of warnings at import (no private macros, no robosuite_models, no mink IK), none
# of which apply here; keep its errors.
logging.getLogger("robosuite_logs").addFilter(lambda record: record.levelno >= logging.ERROR)

import gymnasium as _gym  # noqa: E402

from tasks.specs import TASKS, TaskSpec, UnknownTaskError, get_task, resolve_tasks  # noqa: E402

MAX_EPISODE_STEPS = 720


def _register() -> None:
    for spec in TASKS:
        if spec.gym_id not in _gym.registry:
            _gym.register(spec.gym_id, entry_point="tasks.env:make_env", kwargs={"task": spec.name},
                          max_episode_steps=MAX_EPISODE_STEPS)


_register()

def make(task: str, **kwargs):
    """`gymnasium.make` by any task name (paper name, gym ID or upstream class), with the 720-step limit."""
    return _gym.make(get_task(task).gym_id, **kwargs)



def make_vec(task: str, num_envs: int, **kwargs):
    """`gymnasium.make_vec` of a task by any name: `num_envs` environments in spawned processes (one EGL
    context each; a fork would copy this process's). `reset(seed=[s0, s1, ...])` gives environment k the scene
    of seed s_k, as `reset(seed=s_k)` of one environment does: the evaluation's trial s_k.

    Observations are not passed through shared memory: gymnasium (1.x) reads a `Text` observation, the
    instruction, from shared memory once, when the vector env is made, so every step would show that one.
    """
    vector_kwargs = {"context": "spawn", "shared_memory": False, **kwargs.pop("vector_kwargs", {})}
    return _gym.make_vec(get_task(task).gym_id, num_envs=num_envs, vectorization_mode="async",
                         vector_kwargs=vector_kwargs, **kwargs)


__all__ = ["make", "make_vec", "TASKS", "TaskSpec", "UnknownTaskError", "get_task", "resolve_tasks", "MAX_EPISODE_STEPS"]
