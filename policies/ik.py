"""Inverse kinematics for GR1's hands: damped least squares over the waist and one 7-joint arm.

Arm-only IK misses table targets by 6-28 cm: the robot has to lean. Solving over the 3 waist joints as
well (weighted so the waist moves less than the arm) reaches them. Runs on a scratch `MjData`, so the
simulation is never touched; about a millisecond per solve.
"""

from __future__ import annotations

import mujoco
import numpy as np

from tasks.scene import is_descendant

WAIST_JOINTS = ("robot0_torso_waist_yaw", "robot0_torso_waist_pitch", "robot0_torso_waist_roll")
ARM_JOINTS = {side: tuple(f"robot0_{side[0]}_{j}" for j in ("shoulder_pitch", "shoulder_roll", "shoulder_yaw",
                                                              "elbow_pitch", "wrist_yaw", "wrist_roll", "wrist_pitch"))
              for side in ("right", "left")}
PALM_SITE = {"right": "gripper0_right_grip_site", "left": "gripper0_left_grip_site"}


class HandIK:
    """Joint targets (waist 3 + arm 7) that put one palm at a position and orientation."""

    def __init__(self, model: mujoco.MjModel, side: str, waist_weight: float = 0.15, damping: float = 0.02):
        self.model = model
        self.data = mujoco.MjData(model)
        joints = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in WAIST_JOINTS + ARM_JOINTS[side]]
        self.qpos = model.jnt_qposadr[joints]
        self.dofs = model.jnt_dofadr[joints]
        self.low, self.high = model.jnt_range[joints, 0], model.jnt_range[joints, 1]
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, PALM_SITE[side])
        # The hand: every colliding geom from the wrist's first joint outwards.
        wrist = model.jnt_bodyid[joints[len(WAIST_JOINTS) + 4]]    # wrist_yaw
        bodies = [b for b in range(model.nbody) if is_descendant(model, b, wrist)]
        self.hand_geoms = np.flatnonzero(np.isin(model.geom_bodyid, bodies)
                                         & ((model.geom_contype | model.geom_conaffinity) > 0))
        # The forearm and the hand: what must pass over a container (the forearm swept a shelf aside).
        forearm = model.jnt_bodyid[joints[len(WAIST_JOINTS) + 3]]    # elbow_pitch
        arm = [b for b in range(model.nbody) if is_descendant(model, b, forearm)]
        self.arm_geoms = np.flatnonzero(np.isin(model.geom_bodyid, arm)
                                        & ((model.geom_contype | model.geom_conaffinity) > 0))
        self.weights = np.array([waist_weight] * 3 + [1.0] * 7)
        self.damping = damping
        self._jacp, self._jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))

    def palm_pose(self, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.data.qpos[:] = qpos
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def hand_corners(self, data: mujoco.MjData, geoms: np.ndarray | None = None) -> np.ndarray:
        """World corners of the hand geoms' (or `geoms'`) bounding boxes in `data` (8 per geom), for clearance
        checks."""
        m, g = self.model, self.hand_geoms if geoms is None else geoms
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
        local = m.geom_aabb[g, None, :3] + signs[None] * m.geom_aabb[g, None, 3:]          # (geoms, 8, 3)
        rot = data.geom_xmat[g].reshape(-1, 3, 3)
        return (np.einsum("gij,gkj->gki", rot, local) + data.geom_xpos[g, None]).reshape(-1, 3)

    def corners_at(self, qpos: np.ndarray, q: np.ndarray, geoms: np.ndarray | None = None) -> np.ndarray:
        """`hand_corners` with the joints of `qpos` but this solver's 10 set to `q` (on the scratch data)."""
        self.data.qpos[:] = qpos
        self.data.qpos[self.qpos] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.hand_corners(self.data, geoms)

    def clearance(self, qpos: np.ndarray, q: np.ndarray, geoms, distmax: float = 0.05) -> float:
        """The least distance (negative: penetration) between the hand and `geoms`, with the joints of `qpos`
        but this solver's 10 set to `q`; `distmax` if farther."""
        d = self.data
        d.qpos[:] = qpos
        d.qpos[self.qpos] = q
        mujoco.mj_kinematics(self.model, d)
        fromto = np.zeros(6)
        best = distmax
        for g in self.hand_geoms:
            for h in geoms:
                best = min(best, mujoco.mj_geomDistance(self.model, d, int(g), int(h), distmax, fromto))
        return best

    def solve(self, qpos: np.ndarray, pos: np.ndarray, rot: np.ndarray | None, iterations: int = 40,
              rot_weight: float = 0.3) -> tuple[np.ndarray, float]:
        """Start from the full `qpos`; return (10 joint values, remaining position error in metres)."""
        d = self.data
        d.qpos[:] = qpos
        q = qpos[self.qpos].copy()
        err_pos = np.inf
        for _ in range(iterations):
            d.qpos[self.qpos] = q
            mujoco.mj_kinematics(self.model, d)
            mujoco.mj_comPos(self.model, d)
            err_pos = pos - d.site_xpos[self.site]
            rows = [err_pos]
            mujoco.mj_jacSite(self.model, d, self._jacp, self._jacr, self.site)
            jac = [self._jacp[:, self.dofs]]
            if rot is not None:
                current = d.site_xmat[self.site].reshape(3, 3)
                rows.append(rot_weight * _rotation_error(current, rot))
                jac.append(rot_weight * self._jacr[:, self.dofs])
            e, j = np.concatenate(rows), np.vstack(jac) * self.weights
            if np.linalg.norm(e) < 1e-4:
                break
            dq = self.weights * (j.T @ np.linalg.solve(j @ j.T + self.damping ** 2 * np.eye(len(e)), e))
            q = np.clip(q + np.clip(dq, -0.2, 0.2), self.low, self.high)
        return q, float(np.linalg.norm(err_pos))


def _rotation_error(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Axis-angle vector (world frame) that rotates `current` onto `target`."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, (target @ current.T).reshape(-1))
    axis_angle = np.zeros(3)
    mujoco.mju_quat2Vel(axis_angle, quat, 1.0)
    return axis_angle

