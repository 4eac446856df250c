"""A task spec becomes a robosuite environment: table, GR1, fixture, source, target, objects, distractors.

The model is built once per environment (building takes seconds) with every body a task's scenes may
place (`tasks/sampling.py::scene_assets`); each episode is a `SceneSample` applied to it: the robot's base,
poses, which object instances and distractors are in play, the door or drawer opening and the arms' start.
Bodies not in play this episode are parked out of the scene (far away, no contacts, weight carried), so
every episode of a task shares one model and a reset costs milliseconds instead of a rebuild.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass

import mujoco
import numpy as np
from robosuite.environments.manipulation.manipulation_env import ManipulationEnv
from robosuite.models.arenas import TableArena
from robosuite.models.objects import MujocoXMLObject
from robosuite.models.tasks import ManipulationTask

from tasks import assets
from tasks.meshes import lighten_visual_meshes
from tasks.robot import ROBOT_NAME, controller_config
from tasks.sampling import FIXTURE_POSE, TABLE_SIZE, TABLE_TOP_Z, SceneSample, scene_assets
from tasks.specs import TaskSpec
from tasks.success import touching

TABLE_THICKNESS = 0.05
PARK_ORIGIN = np.array([0.0, 0.0, -5.0])      # unused instances wait here, under the floor, out of view
ARM_OFFSET_SCALES = (1.0, 0.5, 0.25, 0.0)      # the arm perturbation, shrunk until the arms start clear
SETTLE_STEPS = 10                              # control steps after placing, before the first observation (upstream: 0.5 s)
UPRIGHT = 0.7            # least up-axis cosine of a settled body (everything is placed upright; some lean on a rim)
SETTLE_SLIDE = 0.05      # m: the most a body may move while the scene settles
EGOVIEW = "robot0_egoview"
HAND_SITES = ("gripper0_right_grip_site", "gripper0_left_grip_site")   # where success measures the hands


@dataclass
class Body:
    """One asset placed in the scene, with the ids success checks and placement need."""

    asset: assets.Asset
    obj: MujocoXMLObject
    free: bool
    body_id: int = -1
    qpos_addr: int = -1
    qvel_addr: int = -1
    geom_ids: np.ndarray | None = None       # its colliding geoms
    geom_mask: np.ndarray | None = None      # the same as a boolean mask over all geoms (fast contact checks)
    subtree: np.ndarray | None = None        # the asset's bodies (the free root and the body holding geoms)
    moving_body_id: int = -1                 # fixtures: the drawer or door body
    joint_qpos_addr: int = -1                # fixtures: the drawer or door joint


class TabletopScene(ManipulationEnv):
    """robosuite environment for one `TaskSpec`; `apply(sample)` sets up an episode."""

    def __init__(self, spec: TaskSpec, fast_control: bool = True, instances: str = "A", **kwargs):
        self.spec = spec
        self.instances = instances
        self.fast_control = fast_control
        super().__init__(robots=ROBOT_NAME, controller_configs=controller_config(), gripper_types="default",
                         initialization_noise=None, use_camera_obs=False, has_renderer=False,
                         has_offscreen_renderer=False, control_freq=20, hard_reset=False, ignore_done=True,
                         horizon=10**9, renderer="mujoco", **kwargs)

    # ------------------------------------------------------------ model

    def _load_model(self):
        super()._load_model()
        robot = self.robots[0].robot_model
        _add_egoview(robot)   # the base is placed per episode (`apply`)
        lighten_visual_meshes(robot)
        arena = TableArena(table_full_size=(*TABLE_SIZE, TABLE_THICKNESS), table_friction=(1.0, 0.005, 0.0001),
                           table_offset=(0, 0, TABLE_TOP_Z))
        arena.set_origin([0, 0, 0])
        spec = self.spec
        self.bodies: dict[str, Body] = {}
        for key, asset in scene_assets(spec, self.instances).items():
            self._add(key, asset, free=True)
        if spec.fixture:
            self._add("fixture", assets.FIXTURES[spec.fixture], free=False, pos=FIXTURE_POSE[spec.fixture])
        self.model = ManipulationTask(mujoco_arena=arena, mujoco_robots=[robot],
                                      mujoco_objects=[b.obj for b in self.bodies.values()])

    def _add(self, key, a: assets.Asset, free: bool, pos=None):
        obj = MujocoXMLObject(assets.mjcf_file(a), name=key, joints=[dict(type="free", damping="0.0005")] if free else None,
                              obj_type="all", duplicate_collision_geoms=False)
        if free:  # each in its own parking place from the start: dozens of bodies in one spot make a slow first step
            pos = _park_position(len(self.bodies))
        else:
            pos = (pos[0], pos[1], TABLE_TOP_Z - a.bottom)
        obj.get_obj().set("pos", " ".join(str(v) for v in pos))
        self.bodies[key] = Body(a, obj, free)

    def _setup_references(self):
        super()._setup_references()
        m = self.sim.model._model
        for key, b in self.bodies.items():
            b.body_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b.obj.root_body)
            b.subtree = np.array([i for i in range(m.nbody) if is_descendant(m, i, b.body_id)])
            b.geom_mask = np.isin(m.geom_bodyid, b.subtree) & (m.geom_contype | m.geom_conaffinity > 0)
            b.geom_ids = np.flatnonzero(b.geom_mask)
            if b.free:
                jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, b.obj.joints[0])
                b.qpos_addr, b.qvel_addr = m.jnt_qposadr[jid], m.jnt_dofadr[jid]
            if b.asset.joint is not None:
                jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, f"{key}_joint")
                b.joint_qpos_addr = m.jnt_qposadr[jid]
                b.moving_body_id = m.jnt_bodyid[jid]
        robot_root = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, self.robots[0].robot_model.root_body)
        self.robot_base_id = robot_root
        self.robot_geom_mask = np.isin(m.geom_bodyid, [i for i in range(m.nbody) if is_descendant(m, i, robot_root)])
        self.table_geom_mask = np.zeros(m.ngeom, dtype=bool)
        self.table_geom_mask[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "table_collision")] = True
        self.hand_site_ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, name) for name in HAND_SITES]
        self._geom_defaults = (m.geom_contype.copy(), m.geom_conaffinity.copy())
        # MuJoCo 3.9's native convex collider reports a deep false contact between an ellipsoid resting on a
        # thin box (a pear on the cutting board is launched at reset); libccd gets it right. (libccd sinks a
        # wide thin cylinder standing on the table instead: round bases are boxes, `assets._disc`.)
        m.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_NATIVECCD

    def _reset_internal(self):
        super()._reset_internal()  # (re)creates robosuite's controllers, whose gains ours copy
        self.control = JointTargetControl(self.robots[0], self.sim.model._model)

    def _pre_action(self, action, policy_step=False):
        if not self.fast_control:
            return super()._pre_action(action, policy_step)
        if policy_step:
            self.control.set_goal(action)
        self.control.apply(self.sim.model._model, self.sim.data._data)

    def _setup_observables(self):
        # Observations are read straight from the simulator by tasks/env.py; robosuite's per-substep
        # observable machinery would double the cost of a step.
        return OrderedDict()

    # ------------------------------------------------------------ episodes

    def apply(self, sample: SceneSample) -> bool:
        """Place everything as `sample` says (unused instances parked) and let it settle. False when the scene
        cannot start so: even the unperturbed arms would start inside the table or what stands on it, or
        something fell over or slid off while it settled (produce dropped onto a rim)."""
        m, d = self.sim.model._model, self.sim.data._data
        contype, conaffinity = self._geom_defaults
        in_play = {sample.object_body: sample.object_pose}
        in_play.update({p.body: p.pose for p in sample.distractors})
        if sample.source_pose is not None:
            in_play["source"], in_play["target"] = sample.source_pose, sample.target_pose
        for index, (key, b) in enumerate(self.bodies.items()):
            if not b.free:
                continue
            if key in in_play:
                x, y, z, yaw = in_play[key]
                pos = np.array([x, y, z - b.asset.bottom + 0.001])
                quat = np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
                m.geom_contype[b.geom_ids], m.geom_conaffinity[b.geom_ids] = contype[b.geom_ids], conaffinity[b.geom_ids]
                m.body_gravcomp[b.subtree] = 0.0
            else:
                pos, quat = _park_position(index), np.array([1.0, 0, 0, 0])
                m.geom_contype[b.geom_ids] = 0
                m.geom_conaffinity[b.geom_ids] = 0
                m.body_gravcomp[b.subtree] = 1.0
            d.qpos[b.qpos_addr:b.qpos_addr + 7] = np.concatenate([pos, quat])
            d.qvel[b.qvel_addr:b.qvel_addr + 6] = 0.0
        if self.spec.fixture:
            f = self.bodies["fixture"]
            d.qpos[f.joint_qpos_addr] = sample.fixture_open * f.asset.joint.open_value
        robot = self.robots[0]
        m.body_pos[self.robot_base_id] = sample.robot_base
        placed = np.any([self.bodies[key].geom_mask for key in [*in_play, *(["fixture"] if self.spec.fixture else [])]],
                        axis=0) | self.table_geom_mask
        # A perturbed arm must not start inside the table or what stands on it (a hand resting in a tall
        # bottle's neck knocks it over as the scene settles): the perturbation is halved until the arms are clear.
        for scale in ARM_OFFSET_SCALES:
            qpos = np.concatenate([sample.waist, sample.arm_qpos + scale * sample.arm_offset])
            d.qpos[robot._ref_joint_pos_indexes] = qpos
            d.qvel[robot._ref_joint_vel_indexes] = 0.0
            for arm in robot.arms:
                d.qpos[robot._ref_gripper_joint_pos_indexes[arm]] = 0.0
            mujoco.mj_forward(m, d)
            if not touching(d, self.robot_geom_mask, placed):
                break
        else:
            return False
        self.arm_offset_scale = scale
        hold = self.hold_action()
        robot.composite_controller.reset()
        for _ in range(SETTLE_STEPS):
            self.step(hold)
        return all(d.xmat[self.bodies[key].body_id][8] >= UPRIGHT and
                   np.linalg.norm(d.xpos[self.bodies[key].body_id][:2] - pose[:2]) <= SETTLE_SLIDE
                   for key, pose in in_play.items())

    def hold_action(self) -> np.ndarray:
        """robosuite's flat action that keeps every joint where it is now (hands as they are)."""
        return self.sim.data._data.qpos[self.control.action_qpos].copy()

    def reward(self, action=None):
        return 0.0


class JointTargetControl:
    """robosuite's joint-position controllers for this robot, computed in one vectorised pass.

    The same law as robosuite's `JointPositionController` (per part: torque = M_part (kp e - kd qdot) +
    bias, clipped to the actuator range) and `SimpleGripController` (finger position targets), without
    its per-substep Python bookkeeping, which costs more than the physics. `tests/test_robot.py` checks
    that both produce the same actuator commands.
    """

    def __init__(self, robot, m):
        cc = robot.composite_controller
        self.arms, self.hands = [], []
        for part, (start, stop) in cc._action_split_indexes.items():
            controller = cc.part_controllers[part]
            act = np.asarray(robot._ref_actuators_indexes_dict[part])
            if part in cc.grippers:
                expand = cc.grippers[part].format_action(np.arange(stop - start)).astype(int)
                self.hands.append((slice(start, stop), act, expand))
            else:
                self.arms.append((slice(start, stop), np.asarray(controller.qpos_index), np.asarray(controller.qvel_index),
                                  act, np.asarray(controller.kp, float), np.asarray(controller.kd, float)))
        self.gear = m.actuator_gear[:, 0].copy()
        self.low, self.high = m.actuator_ctrlrange[:, 0].copy(), m.actuator_ctrlrange[:, 1].copy()
        self.goal = np.zeros(sum(s.stop - s.start for s, *_ in self.arms + self.hands))
        # The joint each action value drives (a hand value drives 1-2 finger joints: read back the first),
        # so that the current state can be written in the action's own layout.
        self.action_qpos = np.zeros(len(self.goal), dtype=int)
        for sl, qi, *_ in self.arms:
            self.action_qpos[sl] = qi
        for sl, act, expand in self.hands:
            first = [act[list(expand).index(k)] for k in range(sl.stop - sl.start)]
            self.action_qpos[sl] = m.jnt_qposadr[m.actuator_trnid[first, 0]]
        self._vec, self._out = np.zeros(m.nv), np.zeros(m.nv)

    def set_goal(self, action) -> None:
        self.goal = np.array(action, dtype=float)

    def apply(self, m, d) -> None:
        for sl, qi, vi, act, kp, kd in self.arms:
            self._vec[:] = 0.0
            self._vec[vi] = kp * (self.goal[sl] - d.qpos[qi]) - kd * d.qvel[vi]
            mujoco.mj_mulM(m, d, self._out, self._vec)
            torque = self._out[vi] + d.qfrc_bias[vi]
            d.ctrl[act] = np.clip(torque / self.gear[act], self.low[act], self.high[act])
        for sl, act, expand in self.hands:
            d.ctrl[act] = np.clip(self.goal[sl][expand], self.low[act], self.high[act])


def _park_position(index: int) -> np.ndarray:
    return PARK_ORIGIN + np.array([index % 10, index // 10, 0.0]) * 0.6


def _add_egoview(robot) -> None:
    """The head camera upstream's tasks use, on the head pitch link."""
    head = robot.worldbody.find(".//body[@name='robot0_head_pitch']")
    camera = ET.SubElement(head, "camera")
    camera.attrib.update(name=EGOVIEW, mode="fixed", pos="0.2298 0 0.0905", quat="0.676 0.205 -0.205 -0.676", fovy="77")


def is_descendant(m, body, root) -> bool:
    """Whether `body` is `root` or lies below it in the kinematic tree."""
    while body > 0:
        if body == root:
            return True
        body = m.body_parentid[body]
    return body == root
