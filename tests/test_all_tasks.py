"""Every one of the 24 tasks builds, passes gymnasium's checker, settles, stays still and steps (slow: ~2 minutes)."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tasks.env import GR1TabletopEnv
from tasks.scene import UPRIGHT
from tasks.layout import ACTION_KEYS
from tasks.specs import TASKS


@pytest.mark.slow
@pytest.mark.parametrize("task", [t.name for t in TASKS])
def test_task_builds_checks_settles_and_steps(task):
    env = GR1TabletopEnv(task, image_size=96)
    try:
        check_env(env, skip_render_check=True)
        obs, info = env.reset(seed=0)
        assert info["success"] is False
        assert obs["video.ego_view"].std() > 5
        d = env.scene.sim.data._data
        for key, body in env.scene.bodies.items():
            if body.free:   # placed upright; produce may lean on a rim
                assert np.linalg.norm(d.qvel[body.qvel_addr:body.qvel_addr + 3]) < 0.05, key
                assert d.xmat[body.body_id][8] > UPRIGHT, f"{key} starts tipped"
        settled = {key: d.xpos[body.body_id].copy() for key, body in env.scene.bodies.items() if body.free}
        leaning = {key: d.xmat[body.body_id][8] for key, body in env.scene.bodies.items() if body.free}
        hold = {f"action.{k}": obs[f"state.{k}"] for k in ACTION_KEYS}
        for _ in range(40):
            obs, reward, terminated, truncated, info = env.step(hold)
        assert not info["success"]
        for key, start in settled.items():   # nothing rolls or tips while the robot holds still
            body = env.scene.bodies[key]
            assert np.linalg.norm(d.xpos[body.body_id] - start) < 0.01, f"{key} moved on its own"
            assert d.xmat[body.body_id][8] > leaning[key] - 0.02, f"{key} tipped over on its own"
        if env.spec_.fixture:
            assert env.conditions() == {"object_inside": False, "closed": False}
        else:
            assert env.conditions()["container_upright"] and not env.conditions()["in_receptacle"]
    finally:
        env.close()
