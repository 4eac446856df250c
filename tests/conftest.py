import functools
import os

# Before anything imports mujoco: it picks its OpenGL backend at import time.
os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402


@functools.lru_cache(maxsize=None)
def _env(name: str):
    from tasks.env import GR1TabletopEnv

    return GR1TabletopEnv(name)


@pytest.fixture
def task_env():
    """Build (once per test session) the environment of a task by name: building costs ~2-3 s."""
    return _env


# One task per family, for the fast suite.
FAMILY_TASKS = ["PnP Can To Drawer Close", "PnP Wine To Cabinet Close", "PnP Milk To Microwave Close",
                "PnP Novel From Tray To Tieredshelf", "PnP Novel From Plate To Bowl"]
