"""Success conditions on both sides of every threshold: pure checks, then measured on live scenes."""

import dataclasses

import mujoco
import numpy as np
import pytest

from tasks import success
from tasks.sampling import TABLE_TOP_Z
from tasks.success import (FixtureState, NovelState, door_state, fixture_conditions, interior_frame, is_success,
                           novel_conditions)

GOOD = NovelState(hand_to_container=(0.4, 0.5), hand_to_object=(0.45, 0.55), object_touches_container=True,
                  object_xy_offset=0.02, container_radius=0.1, keypoints_in_top_tier=None,
                  object_touches_table=False, container_up_cos=1.0, distractor_inside=False)


def test_fixture_needs_object_inside_and_door_closed_at_the_threshold():
    assert is_success(fixture_conditions(FixtureState(object_inside=True, door_state=0.0)))
    assert is_success(fixture_conditions(FixtureState(object_inside=True, door_state=0.005)))
    assert not is_success(fixture_conditions(FixtureState(object_inside=True, door_state=0.0051)))
    assert not is_success(fixture_conditions(FixtureState(object_inside=False, door_state=0.0)))


def test_novel_success_when_every_condition_holds():
    assert is_success(novel_conditions(GOOD))


@pytest.mark.parametrize("change, failed", [
    (dict(hand_to_container=(0.25, 0.5)), "hands_away"),          # right hand at exactly 0.25 m: not beyond
    (dict(hand_to_object=(0.5, 0.1)), "hands_away"),              # left hand near the object
    (dict(object_touches_container=False), "in_receptacle"),
    (dict(object_xy_offset=0.07), "in_receptacle"),               # 0.7 x radius: not under
    (dict(object_touches_table=True), "off_table"),
    (dict(container_up_cos=0.8), "container_upright"),            # tipped to the threshold
    (dict(distractor_inside=True), "no_distractor_inside"),
])
def test_each_novel_condition_can_fail_alone(change, failed):
    conditions = novel_conditions(dataclasses.replace(GOOD, **change))
    assert [k for k, ok in conditions.items() if not ok] == [failed]


def test_just_inside_each_threshold_passes():
    near = dataclasses.replace(GOOD, hand_to_container=(0.2501, 0.2501), hand_to_object=(0.2501, 0.2501),
                               object_xy_offset=0.0699, container_up_cos=0.8001)
    assert is_success(novel_conditions(near))


def test_tiered_containers_count_keypoints_in_the_highest_tier():
    tiered = dataclasses.replace(GOOD, object_touches_container=False, object_xy_offset=1.0)
    assert is_success(novel_conditions(dataclasses.replace(tiered, keypoints_in_top_tier=2)))
    assert not is_success(novel_conditions(dataclasses.replace(tiered, keypoints_in_top_tier=1)))


# ---------------------------------------------------------------- measured on scenes

def _place(scene, key, pos, quat=(1, 0, 0, 0)):
    """Put a free body at a pose, at rest, and update the derived positions (no physics step)."""
    m, d = scene.sim.model._model, scene.sim.data._data
    b = scene.bodies[key]
    d.qpos[b.qpos_addr:b.qpos_addr + 7] = np.concatenate([pos, quat])
    d.qvel[b.qvel_addr:b.qvel_addr + 6] = 0
    mujoco.mj_forward(m, d)


def _interior_point(scene) -> np.ndarray:
    """The world position of the centre of the fixture's interior."""
    d = scene.sim.data._data
    frame = interior_frame(scene)
    return d.xpos[frame] + d.xmat[frame].reshape(3, 3) @ np.asarray(scene.bodies["fixture"].asset.interior.center)


def _settle(env, steps=10):
    hold = {f"action.{k}": v for k, v in env.joint_state().items()}
    for _ in range(steps):
        env.step(hold)


def _set_door(scene, fraction):
    f = scene.bodies["fixture"]
    scene.sim.data._data.qpos[f.joint_qpos_addr] = fraction * f.asset.joint.open_value
    mujoco.mj_forward(scene.sim.model._model, scene.sim.data._data)


@pytest.mark.parametrize("task", ["PnP Can To Drawer Close", "PnP Wine To Cabinet Close", "PnP Potato To Microwave Close"])
def test_fixture_success_on_the_scene(task_env, task):
    env = task_env(task)
    env.reset(seed=2)
    scene = env.scene
    obj = env.sample.object_body
    assert env.conditions() == {"object_inside": False, "closed": False}
    _set_door(scene, 0.0)
    _place(scene, obj, _interior_point(scene))
    assert env.conditions() == {"object_inside": True, "closed": True}
    assert env._success()
    _set_door(scene, 0.006)   # just open
    assert env.conditions() == {"object_inside": True, "closed": False}
    assert not env._success()
    _set_door(scene, 0.004)   # just closed
    assert env.conditions()["closed"]


@pytest.mark.parametrize("task", ["PnP Can To Drawer Close", "PnP Wine To Cabinet Close", "PnP Potato To Microwave Close"])
def test_an_object_standing_on_the_fixture_floor_is_inside(task_env, task):
    """Put down by the hand, the object rests on the interior's floor: it is inside whatever its weight (its
    base sits on the interior's lower face, where the solver's tiny penetration decided it before)."""
    env = task_env(task)
    env.reset(seed=2)
    scene = env.scene
    fixture = scene.bodies["fixture"]
    _set_door(scene, 0.0)
    frame = interior_frame(scene)
    d = scene.sim.data._data
    region = fixture.asset.interior
    floor = d.xpos[frame] + d.xmat[frame].reshape(3, 3) @ (np.asarray(region.center) - [0, 0, region.half[2]])
    _place(scene, env.sample.object_body, floor + [0, 0, 0.002])
    _settle(env, 20)
    assert env.conditions() == {"object_inside": True, "closed": True}


@pytest.mark.parametrize("task", ["PnP Novel From Plate To Bowl", "PnP Novel From Tray To Tieredshelf"])
def test_novel_success_on_the_scene(task_env, task):
    env = task_env(task)
    env.reset(seed=4)
    scene = env.scene
    d = scene.sim.data._data
    obj = env.sample.object_body
    assert not env.conditions()["in_receptacle"]
    assert env.conditions()["container_upright"]
    # Drop the object into the container (the tier region or just above the floor) and let it settle.
    target = scene.bodies["target"]
    region = target.asset.top_tier or target.asset.interior
    low = region.center[2] - region.half[2]
    _place(scene, obj, d.xpos[target.body_id] + np.array([0, 0, low + 0.005 - scene.bodies[obj].asset.bottom]))
    _settle(env, 15)
    conditions = env.conditions()
    assert conditions["in_receptacle"] and conditions["off_table"] and conditions["container_upright"]
    assert env._success() == is_success(conditions)     # the per-step check's shortcut agrees
    # The hands start about 0.3 m from the target, so `hands_away` depends on where it stands: don't assume it.
    # Tip the container on its side: not upright.
    q = np.zeros(4)
    mujoco.mju_axisAngle2Quat(q, np.array([1.0, 0, 0]), np.pi / 2)
    _place(scene, "target", d.xpos[target.body_id] + np.array([0, 0, 0.2]), q)
    assert not env.conditions()["container_upright"]


@pytest.mark.parametrize("task, seed", [("PnP Novel From Placemat To Tieredshelf", 9),   # a squash, 17 cm tall
                                        ("PnP Novel From Tray To Tieredbasket", 0)])     # a bell pepper
def test_an_object_standing_on_the_top_tier_is_in_it(task_env, task, seed):
    """Its lowest keypoints rest on the tier's surface and a tall one stands out above the open top: in."""
    env = task_env(task)
    env.reset(seed=seed)
    scene = env.scene
    d = scene.sim.data._data
    obj = env.sample.object_body
    target = scene.bodies["target"]
    surface = max(p.pos[2] + p.half_extents()[2] for p in target.asset.parts if p.kind == "box" and p.pos[2] > 0.1
                  and p.half_extents()[2] < 0.01)              # the upper tier's board
    _place(scene, obj, d.xpos[target.body_id] + np.array([0, 0, surface + 0.002 - scene.bodies[obj].asset.bottom]))
    _settle(env, 15)
    assert env.conditions()["in_receptacle"]


def test_object_on_the_table_touches_it(task_env):
    env = task_env("PnP Novel From Tray To Pot")      # no confusers: the table's left is clear
    env.reset(seed=5)
    scene = env.scene
    obj = env.sample.object_body
    _place(scene, obj, np.array([-0.1, 0.4, TABLE_TOP_Z - scene.bodies[obj].asset.bottom + 0.002]))
    _settle(env, 8)
    state = success.measure_novel(scene, obj, [])
    assert state.object_touches_table and not state.object_touches_container


def test_distractor_inside_the_container_is_seen(task_env):
    env = task_env("PnP Novel From Plate To Bowl")
    env.reset(seed=6)
    scene = env.scene
    d = scene.sim.data._data
    name = next(p.body for p in env.sample.distractors if p.role == "distractor_obj")
    target = scene.bodies["target"]
    _place(scene, name, d.xpos[target.body_id] + np.array([0, 0, 0.03]))
    assert not env.conditions()["no_distractor_inside"]


def test_hands_far_or_near_the_container(task_env):
    env = task_env("PnP Novel From Plate To Bowl")
    env.reset(seed=7)
    scene = env.scene
    d = scene.sim.data._data
    obj = env.sample.object_body
    hand = d.site_xpos[scene.hand_site_ids[0]].copy()
    _place(scene, "target", np.array([0.25, 0.0, TABLE_TOP_Z + 0.01]))       # far from both hands
    _place(scene, obj, np.array([0.25, 0.0, TABLE_TOP_Z + 0.1]))
    assert min(success.measure_novel(scene, obj, []).hand_to_container) > 0.25
    _place(scene, "target", hand + np.array([0.0, 0.0, -0.1]))  # right under the right hand
    assert not env.conditions()["hands_away"]


@pytest.mark.parametrize("task", ["PnP Wine To Cabinet Close", "PnP Milk To Microwave Close"])
def test_a_door_pushed_shut_stays_shut(task_env, task):
    """A door pushed shut stops at the closed position: it is not flung open off the fixture's walls."""
    env = task_env(task)
    env.reset(seed=0)
    scene = env.scene
    m, d = scene.sim.model._model, scene.sim.data._data
    dof = m.jnt_dofadr[m.body_jntadr[scene.bodies["fixture"].moving_body_id]]
    # The object starts in front of the fixture, where the door sweeps: set it inside, out of the door's way.
    _place(scene, env.sample.object_body, _interior_point(scene))
    _set_door(scene, 0.2)
    widest = 0.0
    for torque in (0.5, 1.0, 2.0):                      # N m, as a hand pushes it
        d.qfrc_applied[dof] = -torque
        for _ in range(20):
            _settle(env, 1)
            widest = max(widest, door_state(scene))
        d.qfrc_applied[dof] = 0.0
        _settle(env, 5)
        assert door_state(scene) <= 0.005, f"pushed with {torque} N m the door ends {door_state(scene):.3f} open"
    assert widest <= 0.2, f"a door pushed shut sprang back to {widest:.2f} of fully open"
