"""The 24 RoboCasa-GR1 tabletop tasks as Gymnasium environments (`lda_bench/<TaskName>-v0`).

Importing this package registers every task; building one needs only robosuite and MuJoCo (the assets
are made from primitives in `tasks/assets.py`).
"""

import logging
import os

# Headless rendering and one BLAS/OpenMP thread per worker process, unless the user chose otherwise.
for _var, _value in (("MUJOCO_GL", "egl"), ("PYOPENGL_PLATFORM", "egl"), ("OMP_NUM_THREADS", "1"),
                     ("OPENBLAS_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1")):
    os.environ.setdefault(_var, _value)

# robosuite logs a page of warnings at import (no private macros, no robosuite_models, no mink IK), none
# of which apply here; keep its errors.
logging.getLogger("robosuite_logs").addFilter(lambda record: record.levelno >= logging.ERROR)

import gymnasium as _gym  # noqa: E402

from tasks.specs import TASKS, TaskSpec, UnknownTaskError, get_task, resolve_tasks  # noqa: E402

MAX_EPISODE_STEPS = 720


def _register() -> None:
    for spec in TASKS:
        if spec.gym_id not in _gym.registry:
            _gym.register(spec.gym_id, entry_point="tasks.env:GR1TabletopEnv", kwargs={"task": spec.name},
                          max_episode_steps=MAX_EPISODE_STEPS)


_register()

__all__ = ["TASKS", "TaskSpec", "UnknownTaskError", "get_task", "resolve_tasks", "MAX_EPISODE_STEPS"]
