import mujoco
import numpy as np

from tasks.layout import ACTION_DIM, ACTION_DIMS, ACTION_KEYS, ROBOSUITE_SLICES
from tasks.robot import from_robosuite, to_robosuite


def test_gr00t_order_and_sizes():
    assert ACTION_KEYS == ("left_arm", "right_arm", "left_hand", "right_hand", "waist")
    assert [ACTION_DIMS[k] for k in ACTION_KEYS] == [7, 7, 6, 6, 3]
    assert ACTION_DIM == 29


def test_mapping_round_trip_places_each_part_where_robosuite_expects_it():
    action = {k: np.arange(ACTION_DIMS[k]) + 100 * i for i, k in enumerate(ACTION_KEYS)}
    flat = to_robosuite(action)
    np.testing.assert_array_equal(flat[0:7], action["right_arm"])
    np.testing.assert_array_equal(flat[7:14], action["left_arm"])
    np.testing.assert_array_equal(flat[14:17], action["waist"])
    np.testing.assert_array_equal(flat[17:23], action["right_hand"])
    np.testing.assert_array_equal(flat[23:29], action["left_hand"])
    back = from_robosuite(flat)
    assert list(back) == list(ACTION_KEYS)
    for k in ACTION_KEYS:
        np.testing.assert_array_equal(back[k], action[k])


def test_mapping_matches_the_live_controller(task_env):
    scene = task_env("PnP Can To Drawer Close").scene
    split = scene.robots[0].composite_controller._action_split_indexes
    names = {"right_arm": "right", "left_arm": "left", "waist": "torso", "right_hand": "right_gripper",
             "left_hand": "left_gripper"}
    for part, sl in ROBOSUITE_SLICES.items():
        assert split[names[part]] == (sl.start, sl.stop)


def test_right_arm_action_moves_the_right_arm(task_env):
    env = task_env("PnP Can To Drawer Close")
    obs, _ = env.reset(seed=0)
    action = {f"action.{k}": v for k, v in env.joint_state().items()}
    action["action.right_arm"] = action["action.right_arm"] + np.array([-0.3, 0, 0, 0, 0, 0, 0])
    for _ in range(15):
        obs, *_ = env.step(action)
    assert abs(obs["state.right_arm"][0] - action["action.right_arm"][0]) < 0.05
    assert abs(obs["state.left_arm"][0] - action["action.left_arm"][0]) < 0.05


def test_vectorised_control_equals_robosuite_controllers(task_env):
    env = task_env("PnP Milk To Microwave Close")
    env.reset(seed=1)
    scene = env.scene
    m, d = scene.sim.model._model, scene.sim.data._data
    rng = np.random.default_rng(0)
    target = scene.hold_action() + rng.uniform(-0.2, 0.2, 29)
    target[17:] = rng.uniform(0, 1.5, 12)
    commands = []
    for fast in (False, True, False, True):  # robosuite's controllers read cached state on a first call
        mujoco.mj_step1(m, d)
        scene.fast_control = fast
        scene._pre_action(target, policy_step=True)
        commands.append(d.ctrl.copy())
    scene.fast_control = True
    np.testing.assert_allclose(commands[3], commands[2], atol=1e-9)
