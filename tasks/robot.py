"""The GR1 robot as the RoboCasa-GR1 tasks use it, and the map between GR00T's and robosuite's action order.

`GR1ArmsAndWaistFourierHands` is robosuite's GR1 with the legs and head held fixed and no free joint: 29
actuated values (two 7-joint arms, a 3-joint waist, two 6-value Fourier hands), driven by absolute joint
position targets at 20 Hz.
"""

from __future__ import annotations

import numpy as np
from robosuite.controllers import load_composite_controller_config
from robosuite.models.robots.manipulators.gr1_robot import GR1
from robosuite.robots import register_robot_class

ROBOT_NAME = "GR1ArmsAndWaistFourierHands"
CONTROL_FREQ = 20

from tasks.layout import ACTION_DIM, ACTION_KEYS, ROBOSUITE_SLICES

# Arm pose at rest (elbows bent, hands in front of the torso), before the per-episode perturbation.
ARM_REST = {"right_arm": [0.0, -0.1, 0.0, -1.57, 0.0, 0.0, 0.0], "left_arm": [0.0, 0.1, 0.0, -1.57, 0.0, 0.0, 0.0]}


@register_robot_class("LeggedRobot")
class GR1ArmsAndWaistFourierHands(GR1):
    """GR1 with arms, waist and hands actuated; legs and head fixed."""

    def __init__(self, idn=0):
        super().__init__(idn=idn)
        self._remove_joint_actuation("leg")
        self._remove_joint_actuation("head")
        self._remove_free_joint()

    @property
    def init_qpos(self):
        # Joint order after removals: 3 waist joints, 7 right arm, 7 left arm.
        return np.array([0.0, 0.0, 0.0] + ARM_REST["right_arm"] + ARM_REST["left_arm"])

    @property
    def default_base(self):
        return "NoActuationBase"


def controller_config() -> dict:
    """robosuite's GR1 controller defaults as a BASIC composite controller with absolute joint targets."""
    config = load_composite_controller_config(robot="GR1")
    config["type"] = "BASIC"
    config["composite_controller_specific_configs"] = {}
    return config


def to_robosuite(action: dict[str, np.ndarray]) -> np.ndarray:
    """Part-keyed action dict (`left_arm`, ...) -> robosuite's flat 29-vector (what the env sends)."""
    flat = np.zeros(ACTION_DIM, dtype=np.float64)
    for part, sl in ROBOSUITE_SLICES.items():
        flat[sl] = action[part]
    return flat


def from_robosuite(flat: np.ndarray) -> dict[str, np.ndarray]:
    """robosuite's flat 29-vector -> part-keyed dict in GR00T's key order."""
    flat = np.asarray(flat)
    return {part: flat[ROBOSUITE_SLICES[part]].copy() for part in ACTION_KEYS}
