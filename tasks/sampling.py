"""Seed -> scene: everything random about an episode, drawn from the seed alone.

`sample_scene(spec, seed)` uses its own `numpy.random.Generator` seeded from (task name, seed) through
a stable digest (never Python's per-process `hash()`), so trial i of a task gets the same scene in any
process, order or worker count. Positions are in the world frame on the table top (z = table height).
Nothing starts inside anything else: a target or distractor that would is drawn again (`_clear_pose`).
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
FOOTPRINT_MARGIN = 0.01         # the least gap between two things on the table at a shared height
PLACEMENT_TRIES = 50            # draws for a target or distractor clear of what is already placed

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
    obj_asset = assets.OBJECTS[obj].scaled(spec.object_scale)
    arm_offset = rng.uniform(-ARM_PERTURBATION, ARM_PERTURBATION, size=14)
    taken = []                                    # footprints of what stands on the table so far
    if spec.family == "novel":
        source, target = assets.CONTAINERS[spec.source], assets.CONTAINERS[spec.target]
        sx, sy = _uniform(rng, SOURCE_REGION)
        tx, ty = _uniform(rng, TARGET_REGION)
        source_pose = (sx, sy, TABLE_TOP_Z, float(rng.uniform(-0.15, 0.15)))
        taken.append(footprint(source, source_pose))
        target_pose = _clear_pose(target, taken, (tx, ty, TABLE_TOP_Z, float(rng.uniform(-0.15, 0.15))), lambda: (
            *_uniform(rng, TARGET_REGION), TABLE_TOP_Z, float(rng.uniform(-0.15, 0.15))))
        taken.append(footprint(target, target_pose))
        jx, jy = rng.uniform(-0.02, 0.02, size=2)
        object_pose = (sx + jx, sy + jy, TABLE_TOP_Z + source.top, float(rng.uniform(-np.pi, np.pi)))
        fixture_open = 0.0
    else:
        source_pose = target_pose = None
        taken.append(footprint(assets.FIXTURES[spec.fixture], (*FIXTURE_POSE[spec.fixture], TABLE_TOP_Z, 0.0)))
        ox, oy = _uniform(rng, OBJECT_REGION[spec.family])
        object_pose = (ox, oy, TABLE_TOP_Z, float(rng.uniform(-np.pi, np.pi)))
        fixture_open = float(rng.uniform(*DOOR_OPEN_RANGE))
    taken.append(footprint(obj_asset, object_pose))
    slots = DISTRACTOR_SLOTS[spec.family]
    kinds = [k for k in DISTRACTORS if k != obj]
    count = int(rng.integers(1, min(4, len(slots)) + 1))
    chosen = rng.choice(len(kinds), size=count, replace=False)
    slot_ids = rng.choice(len(slots), size=count, replace=False)
    distractors = []
    for k, s in zip(chosen, slot_ids):
        kind = assets.OBJECTS[kinds[k]]

        def draw(y=slots[s]):
            return float(rng.uniform(*DISTRACTOR_X)), y + float(rng.uniform(-0.03, 0.03)), TABLE_TOP_Z, \
                float(rng.uniform(-np.pi, np.pi))
        pose = _clear_pose(kind, taken, draw(), draw, required=False)
        if pose is not None:                      # no room in its slot: the scene has one distractor fewer
            taken.append(footprint(kind, pose))
            distractors.append((kinds[k], pose))
    return SceneSample(seed, obj, object_pose, source_pose, target_pose, tuple(distractors), fixture_open, arm_offset)


# ---------------------------------------------------------------- nothing starts inside anything else


def _clear_pose(asset, taken, pose: Pose, draw, required=True) -> Pose | None:
    """`pose`, or if that overlaps something in `taken`, the first pose from `draw()` that keeps clear.

    Redrawing only on an overlap leaves every scene without one as a single draw makes it. Overlapping, an
    eggplant lying into the microwave's wall, or a pan's handle under the plate beside it, were flung
    across the table as the scene settled."""
    for _ in range(PLACEMENT_TRIES):
        if not any(footprints_overlap(footprint(asset, pose), other) for other in taken):
            return pose
        pose = draw()
    if required:
        raise RuntimeError(f"no room for {asset.name} clear of the rest of the scene in {PLACEMENT_TRIES} draws")
    return None


def footprint(asset, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Where each colliding part of `asset` at `pose` is: its outline on the table (parts, 4 corners, xy)
    and its height range (parts, 2), as `TabletopScene.apply` places it."""
    x, y, z, yaw = pose
    c, s = np.cos(yaw), np.sin(yaw)
    rotation = np.array([[c, -s], [s, c]])
    signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
    parts = [p for p in asset.parts if p.collide]
    centers = np.array([p.pos for p in parts])
    halves = np.array([p.half_extents() for p in parts])
    outline = (centers[:, None, :2] + signs[None] * halves[:, None, :2]) @ rotation.T + np.array([x, y])
    heights = z - asset.bottom + centers[:, 2:] + np.array([-1.0, 1.0]) * halves[:, 2:]
    return outline, heights


def footprints_overlap(a, b, margin: float = FOOTPRINT_MARGIN) -> bool:
    """Whether a part of `a` comes within `margin` of a part of `b` on the table, at heights they share."""
    for outline_a, (lo_a, hi_a) in zip(*a):
        for outline_b, (lo_b, hi_b) in zip(*b):
            if lo_a < hi_b and lo_b < hi_a and _outlines_overlap(outline_a, outline_b, margin):
                return True
    return False


def _outlines_overlap(ra: np.ndarray, rb: np.ndarray, margin: float) -> bool:
    """Separating axis test of two rectangles given by their corners."""
    for rect in (ra, rb):
        for edge in (rect[1] - rect[0], rect[3] - rect[0]):
            axis = edge / np.linalg.norm(edge)
            pa, pb = ra @ axis, rb @ axis
            if pa.max() + margin <= pb.min() or pb.max() + margin <= pa.min():
                return False
    return True
