"""Seed -> scene: everything random about an episode, drawn from the seed alone.

`sample_scene(spec, seed)` uses its own `numpy.random.Generator` seeded from (task name, seed) through
a stable digest (never Python's per-process `hash()`), so trial i of a task gets the same scene in any
process, order or worker count. Positions are in the world frame on the table top (z = table height).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from tasks import assets
from tasks.specs import TaskSpec

TABLE_TOP_Z = 0.8
# Vegetables that may stand at the back edge (one instance of each kind in every scene).
DISTRACTORS = ("tomato", "bell_pepper", "eggplant", "squash", "lemon", "sweet_potato")
ARM_PERTURBATION = 0.2          # rad, uniform on every arm joint, as the 24dc tasks do
DOOR_OPEN_RANGE = (0.9, 1.0)    # fraction of fully open at the start

# Fixed fixture positions (x, y) on the table: the drawer chest and cabinet on the robot's left (left-hand
# tasks), the microwave on its right (right-hand tasks). Openings face the robot (-x).
FIXTURE_POSE = {"drawer": (0.12, 0.36), "cabinet": (0.15, 0.25), "microwave": (0.15, -0.24)}

# Where things start: (x range, y range) per family or role.
OBJECT_REGION = {
    "drawer": ((-0.14, -0.08), (-0.04, 0.02)),
    # Inboard of the resting left hand, whose fingers hang to 1.07 m at y 0.24 (the wine's top is at 1.10 m),
    # and clear of the open door (y < 0.12).
    "cabinet": ((-0.16, -0.09), (0.16, 0.21)),
    "microwave": ((-0.17, -0.1), (-0.29, -0.19)),
}
SOURCE_REGION = ((-0.2, -0.12), (-0.3, -0.24))
TARGET_REGION = ((-0.13, -0.05), (0.0, 0.08))
# Back-edge slots (y) for distractors, away from the fixture's side of the table.
DISTRACTOR_X = (0.16, 0.24)
DISTRACTOR_SLOTS = {
    "novel": (-0.36, -0.12, 0.12, 0.36),
    "drawer": (-0.05, -0.2, -0.35),
    "cabinet": (-0.05, -0.2, -0.35),
    "microwave": (0.05, 0.2, 0.35),
}

Pose = tuple[float, float, float, float]   # x, y, z of the resting surface, yaw


@dataclass(frozen=True)
class SceneSample:
    seed: int
    object: str
    object_pose: Pose
    source_pose: Pose | None
    target_pose: Pose | None
    distractors: tuple[tuple[str, Pose], ...]
    fixture_open: float                 # 0 closed .. 1 fully open (fixture families)
    arm_offset: np.ndarray              # 14 joint offsets: right arm then left arm (robosuite's order)

    def summary(self) -> dict:
        """A JSON-friendly description (for comparing scenes across processes, and for records)."""
        return {"seed": self.seed, "object": self.object, "object_pose": _round(self.object_pose),
                "source_pose": _round(self.source_pose), "target_pose": _round(self.target_pose),
                "distractors": [[n, _round(p)] for n, p in self.distractors],
                "fixture_open": round(self.fixture_open, 6), "arm_offset": _round(self.arm_offset)}


def _round(values):
    return None if values is None else [round(float(v), 6) for v in values]


def scene_rng(task_name: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{task_name}|{seed}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def validate_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return int(seed)


def _uniform(rng, region):
    (x0, x1), (y0, y1) = region
    return float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))


def sample_scene(spec: TaskSpec, seed: int) -> SceneSample:
    seed = validate_seed(seed)
    rng = scene_rng(spec.name, seed)
    obj = spec.objects[int(rng.integers(len(spec.objects)))]
    arm_offset = rng.uniform(-ARM_PERTURBATION, ARM_PERTURBATION, size=14)
    if spec.family == "novel":
        sx, sy = _uniform(rng, SOURCE_REGION)
        tx, ty = _uniform(rng, TARGET_REGION)
        source_pose = (sx, sy, TABLE_TOP_Z, float(rng.uniform(-0.15, 0.15)))
        target_pose = (tx, ty, TABLE_TOP_Z, float(rng.uniform(-0.15, 0.15)))
        source = assets.CONTAINERS[spec.source]
        jx, jy = rng.uniform(-0.02, 0.02, size=2)
        object_pose = (sx + jx, sy + jy, TABLE_TOP_Z + source.top, float(rng.uniform(-np.pi, np.pi)))
        fixture_open = 0.0
    else:
        source_pose = target_pose = None
        ox, oy = _uniform(rng, OBJECT_REGION[spec.family])
        object_pose = (ox, oy, TABLE_TOP_Z, float(rng.uniform(-np.pi, np.pi)))
        fixture_open = float(rng.uniform(*DOOR_OPEN_RANGE))
    slots = DISTRACTOR_SLOTS[spec.family]
    kinds = [k for k in DISTRACTORS if k != obj]
    count = int(rng.integers(1, min(4, len(slots)) + 1))
    chosen = rng.choice(len(kinds), size=count, replace=False)
    slot_ids = rng.choice(len(slots), size=count, replace=False)
    distractors = tuple(
        (kinds[k], (float(rng.uniform(*DISTRACTOR_X)), slots[s] + float(rng.uniform(-0.03, 0.03)), TABLE_TOP_Z,
                    float(rng.uniform(-np.pi, np.pi))))
        for k, s in zip(chosen, slot_ids))
    return SceneSample(seed, obj, object_pose, source_pose, target_pose, distractors, fixture_open, arm_offset)
