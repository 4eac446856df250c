"""`scripted`: an expert that solves the tasks from the simulator's state, with honest physics.

It reads object, source, target and fixture poses from the simulation (never writes them), plans palm
waypoints, turns each into joint targets with inverse kinematics over the waist and one arm
(`policies/ik.py`), and grasps with the Fourier hand's power grasp: palm beside the object in a
"handshake" pose (fingers forward, thumb up), fingers closed around it. Then it transports, lowers,
releases and retreats; for the fixture tasks it pushes the drawer or door shut with the back of the hand.
Nothing is welded or teleported; the physics is the task suite's, the same for every policy.

The expert needs the environment itself: the rollout hands it over through `bind_env(env)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lda_bench.policy import register_policy
from policies.ik import HandIK
from tasks.layout import ACTION_KEYS

OPEN = np.array([0.0, 0.0, 0.0, 0.0, 0.3, 1.2])        # fingers open, thumb rotated across the palm
CLOSED = np.array([1.5, 1.5, 1.5, 1.5, 1.0, 1.2])      # power grasp
FIST = np.array([1.6, 1.6, 1.6, 1.6, 1.2, 0.6])         # for pushing doors and drawers
TABLE_Z = 0.8
GRASP_FORWARD = 0.085       # object centre ahead of the palm site, along the fingers
GRASP_SIDE_GAP = 0.012      # palm surface to object, beyond the object's half width
GRASP_UP = 0.02             # the fingers' mid-height above the site
PALM_CLEARANCE = 0.05       # the palm's lower edge is ~4.6 cm below the site
FINGER_REACH = 0.118        # how far ahead of the site the straight fingers reach
SHORT_CENTER = 0.055        # objects whose centre is lower than this are grasped with the palm rolled down
SHORT_ROLL = 0.6
ELONGATED = 1.6             # long half-size over the others: lying produce (eggplant, sweet potato)
HOME = {"right": np.array([-0.28, -0.3, 1.12]), "left": np.array([-0.28, 0.3, 1.12])}


@dataclass
class Waypoint:
    """Move the palm to `pos` (orientation `rot`) over `steps` control steps, with the hand at `hand`."""

    pos: np.ndarray
    rot: np.ndarray
    hand: np.ndarray
    steps: int
    hand_first: bool = False      # close/open the hand before moving
    dwell: int = 4                # hold the final targets this many steps (let joints and fingers arrive)


@dataclass
class _Plan:
    side: str
    waypoints: list = field(default_factory=list)


@register_policy("scripted", "expert from simulator state: IK to palm poses, power grasp, place, close fixtures")
class ScriptedExpert:
    def __init__(self, chunk: int = 8, speed: float = 1.0):
        self.chunk = chunk
        self.speed = speed
        self.env = None

    def bind_env(self, env) -> None:
        """Give the expert the environment whose state it reads (`GR1TabletopEnv`, unwrapped)."""
        self.env = env
        self._ik = {side: HandIK(env.scene.sim.model._model, side) for side in ("right", "left")}
        # The handshake orientation (fingers forward, thumb up) is the palm's orientation in the rest pose.
        m = env.scene.sim.model._model
        qpos = m.qpos0.copy()
        robot = env.scene.robots[0]
        qpos[robot._ref_joint_pos_indexes] = robot.init_qpos
        self._rest_rot = {side: ik.palm_pose(qpos)[1] for side, ik in self._ik.items()}

    def reset(self, task: str, instruction: str) -> None:
        if self.env is None:
            raise RuntimeError("the scripted expert reads the simulator: call bind_env(env) before reset")
        self._queue: list[dict[str, np.ndarray]] = []
        self._stage = 0
        self._plan = None

    # ------------------------------------------------------------ acting

    def get_action(self, obs: dict) -> dict[str, np.ndarray]:
        steps = []
        while len(steps) < self.chunk:
            if not self._queue:
                self._queue = self._next_segment(obs)
            steps.append(self._queue.pop(0))
        return {f"action.{k}": np.stack([s[k] for s in steps]) for k in ACTION_KEYS}

    # ------------------------------------------------------------ planning

    def _state(self):
        env = self.env
        d = env.scene.sim.data._data
        return env, d

    def _next_segment(self, obs) -> list[dict[str, np.ndarray]]:
        """The steps of the next waypoint (planned from the current state), or holding still when done."""
        if self._plan is None:
            self._plan = self._make_plan()
        if self._stage >= len(self._plan.waypoints):
            return [self._targets(None)]  # done: hold
        wp = self._plan.waypoints[self._stage]
        self._stage += 1
        return self._interpolate(self._plan.side, wp)

    def _targets(self, updates: dict | None) -> dict[str, np.ndarray]:
        current = self._commanded if hasattr(self, "_commanded") else self.env.joint_state()
        out = {k: v.copy() for k, v in current.items()}
        if updates:
            out.update(updates)
        self._commanded = out
        return out

    def _interpolate(self, side: str, wp: Waypoint) -> list[dict[str, np.ndarray]]:
        env, d = self._state()
        ik = self._ik[side]
        qpos = d.qpos.copy()
        start = self._commanded if hasattr(self, "_commanded") else env.joint_state()
        # Write the commanded (not the measured) joints into the IK seed, so plans chain smoothly.
        action_qpos = env.scene.control.action_qpos
        from tasks.layout import ROBOSUITE_SLICES
        for part in ("waist", f"{side}_arm"):
            qpos[action_qpos[ROBOSUITE_SLICES[part]]] = start[part]
        pos0, rot0 = ik.palm_pose(qpos)
        steps = max(1, int(round(wp.steps / self.speed)))
        hand_key = f"{side}_hand"
        hand0 = start[hand_key]
        out = []
        if wp.hand_first and not np.allclose(hand0, wp.hand):
            for i in range(1, 9):
                out.append(self._targets({hand_key: hand0 + (wp.hand - hand0) * i / 8}))
            hand0 = wp.hand
        for i in range(1, steps + 1):
            a = _smooth(i / steps)
            q, _ = ik.solve(qpos, pos0 + (wp.pos - pos0) * a, _slerp(rot0, wp.rot, a))
            qpos[ik.qpos] = q
            out.append(self._targets({"waist": q[:3], f"{side}_arm": q[3:], hand_key: hand0 + (wp.hand - hand0) * a}))
        return out + [self._targets(None) for _ in range(wp.dwell)]

    def _make_plan(self) -> _Plan:
        env = self.env
        spec = env.spec_
        if spec.fixture:
            raise NotImplementedError
        return self._plan_novel()

    def _grasp_pose(self, side: str, asset, center: np.ndarray, obj_rot: np.ndarray):
        """Palm site position and orientation for a power grasp of an object.

        Upright objects: the handshake pose, palm beside the object. Low objects: the palm rolled towards
        the table so the fingers reach under them. Elongated objects lying down: the palm facing down with
        the fingers across the long axis, so they close around it.
        """
        half_local = (asset.keypoints.max(axis=0) - asset.keypoints.min(axis=0)) / 2
        sign = -1.0 if side == "right" else 1.0      # rolling the palm normal towards the table
        yaw, roll = 0.0, 0.0
        if half_local[0] > ELONGATED * max(half_local[1], half_local[2]):
            axis = obj_rot[:, 0]
            yaw = _wrap_half_pi(np.arctan2(axis[1], axis[0]) + np.pi / 2)
            roll = np.pi / 2
        elif center[2] - TABLE_Z < SHORT_CENTER:
            roll = SHORT_ROLL
        turn = _rot_z(yaw) @ _rot_x(sign * roll)
        rot = turn @ self._rest_rot[side]
        normal = turn @ np.array([0.0, -sign, 0.0])          # palm normal in the world
        along_normal = float(np.abs(obj_rot.T @ normal) @ half_local)
        fingers = turn @ np.array([1.0, 0.0, 0.0])
        along_fingers = float(np.abs(obj_rot.T @ fingers) @ half_local)
        forward = min(GRASP_FORWARD, FINGER_REACH - along_fingers)
        offset = turn @ np.array([forward, -sign * (along_normal + GRASP_SIDE_GAP), GRASP_UP])
        grasp = center - offset
        grasp[2] = max(grasp[2], TABLE_Z + PALM_CLEARANCE)
        return grasp, rot

    def _plan_novel(self) -> _Plan:
        env, d = self._state()
        scene = env.scene
        side = "right"
        obj = scene.bodies[f"obj_{env.sample.object}"]
        target = scene.bodies["target"]
        obj_rot = d.xmat[obj.body_id].reshape(3, 3)
        center = d.xpos[obj.body_id] + obj_rot @ _asset_center(obj.asset)
        half = _asset_half_extents(obj.asset, obj_rot)
        grasp, rot = self._grasp_pose(side, obj.asset, center, obj_rot)
        pre = grasp + np.array([0.0, -0.02, 0.12])
        lift = grasp + np.array([0.0, 0.0, 0.2])
        tpos = d.xpos[target.body_id]
        region = target.asset.top_tier or target.asset.interior
        floor = tpos[2] + region.center[2] - region.half[2]
        top = tpos[2] + target.asset.top
        carry_z = max(top, floor) + half[2] + 0.08 + (grasp[2] - center[2])
        offset = grasp - center
        above = np.array([tpos[0], tpos[1], 0.0]) + offset
        above[2] = max(carry_z, lift[2])
        place = above.copy()
        place[2] = floor + half[2] + 0.03 + offset[2]
        retreat_up = place + np.array([-0.02, -0.08, 0.12])
        wps = [
            Waypoint(pre, rot, OPEN, 30),
            Waypoint(grasp, rot, OPEN, 20),
            Waypoint(grasp, rot, CLOSED, 1, hand_first=True, dwell=10),
            Waypoint(lift, rot, CLOSED, 25),
            Waypoint(above, rot, CLOSED, 35),
            Waypoint(place, rot, CLOSED, 20),
            Waypoint(place, rot, OPEN, 1, hand_first=True, dwell=8),
            Waypoint(retreat_up, rot, OPEN, 15),
            Waypoint(HOME[side] + np.array([0, -0.05, 0.05]), rot, OPEN, 30),
        ]
        return _Plan(side, wps)


def _rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _wrap_half_pi(angle: float) -> float:
    """The same line direction, as an angle in [-pi/2, pi/2)."""
    return (angle + np.pi / 2) % np.pi - np.pi / 2


def _asset_center(asset) -> np.ndarray:
    k = asset.keypoints
    return (k.min(axis=0) + k.max(axis=0)) / 2


def _asset_half_extents(asset, rot) -> np.ndarray:
    k = asset.keypoints
    half = (k.max(axis=0) - k.min(axis=0)) / 2
    return np.abs(rot) @ half


def _smooth(a: float) -> float:
    return a * a * (3 - 2 * a)


def _slerp(r0: np.ndarray, r1: np.ndarray, a: float) -> np.ndarray:
    import mujoco

    q0, q1, q = np.zeros(4), np.zeros(4), np.zeros(4)
    mujoco.mju_mat2Quat(q0, r0.reshape(-1))
    mujoco.mju_mat2Quat(q1, r1.reshape(-1))
    if np.dot(q0, q1) < 0:
        q1 = -q1
    q = (1 - a) * q0 + a * q1
    q /= np.linalg.norm(q)
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, q)
    return m.reshape(3, 3)
