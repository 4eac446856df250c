"""Seed -> scene: everything random about an episode, drawn from the seed alone, as upstream draws it.

`sample_scene(spec, seed, split, instances)` uses its own `numpy.random.Generator` seeded from (task name,
split, seed) through a stable digest (never Python's per-process `hash()`), so trial i of a task gets the
same scene in any process, order or worker count. Evaluation draws from the `eval` split and
demonstrations from the `train` split: the two are different streams whatever seeds or offsets a user
picks, so no evaluation scene is ever in a training set.

The distributions are upstream's (robocasa-gr1-tabletop-tasks; every number and its source in
`tasks/FIDELITY.md`). Upstream's robot stands at world y -2.175 facing +y with the table's centre 0.525 m
ahead; here the robot faces +x and the table's centre is the origin, so upstream's table-frame (tx, ty)
is our (x, y) = (ty, -tx): `_region` converts upstream's normalised placements. Positions are on the
table top (z = the resting surface). As upstream's samplers do, a placement that cannot be made clear of
what is already placed is drawn again; an optional one is then left out, and a required one starts the
whole scene over (from the same generator, so the result is still a function of the seed).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from tasks import assets
from tasks.specs import TaskSpec

# ---------------------------------------------------------------- the room (upstream's layout yamls)
TABLE_SIZE = (0.75, 1.22)        # depth (x, away from the robot), width (y): upstream's counter, 1.22 x 0.75
TABLE_TOP_Z = 0.92
ROBOT_BASE = (-0.525, 0.0, 0.97)  # 0.2 m in front of the counter's base, 0.15 m from the top's front edge
BASE_JITTER = 0.05               # novel tasks: up to 5 cm towards the table and to the right, 5-10 cm down
PLACEMENT_MARGIN = 0.04          # upstream shrinks the table's region by this before placing in it

# ---------------------------------------------------------------- the robot's start
INIT_ARMS = np.array([0.0, -0.1, 0.0, -1.57, 0.0, 0.0, 0.0, 0.0, 0.1, 0.0, -1.57, 0.0, 0.0, 0.0])  # right, left
ELBOWS = (3, 10)
FIXTURE_ELBOW = -2.1             # 0.7 lo + 0.3 hi of the GR1 elbow's [-3, 0] range, set after settling
INIT_NOISE = 0.02                # robosuite's default initialisation noise: N(0, 0.02) per joint
# Upstream's COTRAIN_REAL_MATCHED_ROBOT_INITIAL_POSE (robocasa/utils/cotrain_utils.py), right arm then left.
COTRAIN_ARMS = np.array([-0.22963779, -0.38363408, 0.14360377, -1.5289252, -0.2897802, -0.07134621, -0.04550289,
                         -0.10933163, 0.43292055, -0.15983289, -1.48233023, 0.2359135, 0.26184522, 0.00830735])
ARM_PERTURBATION = 0.2           # rad, uniform on every arm joint of the novel tasks
DOOR_OPEN_RANGE = (0.9, 1.0)     # fraction of fully open at the start

# ---------------------------------------------------------------- scales and kinds
OBJ_SCALES = {"tiered_shelf": 0.7, "tiered_basket": 0.7, "plate": 1.2, "cardboard_box": 0.9, "placemat": 0.8,
              "tray": 0.8, "cutting_board": 0.8}      # upstream's, applied to the target container only
SOURCES = ("cutting_board", "placemat", "plate", "tray")
TARGETS = ("basket", "bowl", "cardboard_box", "pan", "plate", "pot", "tiered_basket", "tiered_shelf")
SIMILAR = {"tray": ("cutting_board",), "cutting_board": ("tray",), "basket": ("tiered_basket",),
           "tiered_basket": ("basket", "tiered_shelf"), "tiered_shelf": ("tiered_basket",), "pot": ("pan",),
           "pan": ("pot",)}
VEGETABLES = ("tomato", "bell_pepper", "eggplant", "squash", "lemon", "sweet_potato")
BACK_EDGE_ITEMS = ("chips", "cereal", "book", "candle")   # one of them at the novel tasks' back edge, p = 0.5
FOOTPRINT_MARGIN = 0.01          # the least gap between two things on the table at a shared height
PLACEMENT_TRIES = {False: 100, True: 300}    # draws for an optional / a required one before the scene is redrawn
OBJECT_TRIES = 60                # draws for an object in its container's 10 cm square
SCENE_TRIES = 50                 # whole scenes drawn before a task is declared impossible

# Per novel task (source, target): which of upstream's confusers it has (distractor_config_for_posttrain):
# a second object on the source container, another source container with an object on it, another target.
NOVEL_CONFUSERS = {
    ("cutting_board", "basket"): ("distractor_source", "distractor_target"),
    ("cutting_board", "cardboard_box"): ("distractor_obj", "distractor_target"),
    ("cutting_board", "pan"): ("distractor_source",),
    ("cutting_board", "pot"): ("distractor_target",),
    ("cutting_board", "tiered_basket"): ("distractor_obj", "distractor_target"),
    ("placemat", "basket"): ("distractor_source",),
    ("placemat", "bowl"): ("distractor_obj", "distractor_source"),
    ("placemat", "plate"): ("distractor_obj",),
    ("placemat", "tiered_shelf"): ("distractor_obj", "distractor_source", "distractor_target"),
    ("plate", "bowl"): ("distractor_obj", "distractor_source"),
    ("plate", "cardboard_box"): ("distractor_obj",),
    ("plate", "pan"): ("distractor_obj",),
    ("plate", "plate"): (),
    ("tray", "cardboard_box"): (),
    ("tray", "plate"): ("distractor_target",),
    ("tray", "pot"): (),
    ("tray", "tiered_basket"): ("distractor_source", "distractor_target"),
    ("tray", "tiered_shelf"): ("distractor_obj", "distractor_source", "distractor_target"),
}

Pose = tuple[float, float, float, float]   # x, y, z of the resting surface, yaw
Region = tuple[tuple[float, float], tuple[float, float]]   # (x range, y range) in our table frame


def _region(pos, size, margin=PLACEMENT_MARGIN) -> Region:
    """Upstream's placement on the table (`pos` normalised in [-1, 1], `size` in metres, both in its table
    frame: tx lateral, +tx the robot's right; ty depth) -> our (x range, y range)."""
    outer = (1.22 - margin, 0.75 - margin)
    inner = [min(o, s) for o, s in zip(outer, size)]
    centre = [(o - i) / 2 * p for o, i, p in zip(outer, inner, pos)]
    tx = (centre[0] - inner[0] / 2, centre[0] + inner[0] / 2)
    ty = (centre[1] - inner[1] / 2, centre[1] + inner[1] / 2)
    return ty, (-tx[1], -tx[0])


# Where things start (upstream's placements, in our frame).
NOVEL_SOURCE_REGION = _region((0.85, -0.9), (0.7, 0.3))      # the object's region, taken by its container
NOVEL_TARGET_REGION = _region((0.75, -0.15), (0.6, 0.2))
CONFUSER_REGION = _region((0.0, -0.6), (1.1, 0.45))          # distractor source / target containers
NOVEL_BACK_EDGE = _region((0.0, 0.9), (1.0, 0.1))            # toaster, plant, one packaged item
FIXTURE_BACK_EDGE = _region((0.0, 1.0), (1.2, 0.4))          # toaster, plant, 1-4 vegetables
OBJECT_ON_SOURCE = 0.05                                      # objects within +-5 cm of their container's centre
FIXTURE_OBJECT_REGION = {  # 0.2 x 0.2 m at the hand's side
    "drawer": _region((-0.5, -0.7), (0.2, 0.2)),
    "cabinet": _region((-0.5, -0.8), (0.2, 0.2)),
    "microwave": _region((0.5, -0.8), (0.2, 0.2)),
}
# Fixture positions: upstream's layouts place them with size (0, 0) and no margin, so exactly at `pos`.
FIXTURE_POSE = {name: (float(np.mean(r[0])), float(np.mean(r[1])))
                for name, r in {"drawer": _region((0.4, 0.4), (0, 0), 0), "cabinet": _region((0, 0.05), (0, 0), 0),
                                "microwave": _region((0.3, 0.2), (0, 0), 0)}.items()}
PAPER_TOWEL_Y = 0.61             # the fixture layouts' paper towel stands against the robot's left table edge
PAPER_TOWEL_X = (-0.375, 0.225)


@dataclass(frozen=True)
class Placed:
    """One thing the scene puts on the table besides the task's object, source and target."""

    role: str       # back_edge | vegetable | paper_towel | distractor_obj | distractor_source | distractor_source_obj | distractor_target
    body: str       # the scene's body for it (`scene_assets`)
    pose: Pose


@dataclass(frozen=True)
class SceneSample:
    seed: int
    split: str                          # eval | train: which stream of scenes the seed indexes
    instances: str                      # A | B: which half of each category's instances the scene draws from
    object: str                         # the task object's category (the instruction names it)
    object_body: str                    # its instance's body in the scene
    object_pose: Pose
    source_pose: Pose | None
    target_pose: Pose | None
    distractors: tuple[Placed, ...]
    fixture_open: float                 # 0 closed .. 1 fully open (fixture families)
    robot_base: tuple[float, float, float]
    arm_qpos: np.ndarray                # 14 arm joints before the perturbation: right arm then left arm
    arm_offset: np.ndarray              # 14 perturbations of them
    waist: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def summary(self) -> dict:
        """A JSON-friendly description in the world frame (for comparing scenes across processes, and for records)."""
        return {"seed": self.seed, "split": self.split, "instances": self.instances, "object": self.object,
                "object_instance": self.object_body.removeprefix("obj_"), "object_pose": _round(self.object_pose),
                "source_pose": _round(self.source_pose), "target_pose": _round(self.target_pose),
                "distractors": [[p.role, p.body, _round(p.pose)] for p in self.distractors],
                "fixture_open": round(self.fixture_open, 6), "robot_base": _round(self.robot_base),
                "arm_qpos": _round(self.arm_qpos), "arm_offset": _round(self.arm_offset), "waist": _round(self.waist)}


def _round(values):
    return None if values is None else [round(float(v), 6) for v in values]


SCENE_SPLITS = ("eval", "train")   # evaluation trials; demonstrations and anything else trained on


def validate_split(split: str) -> str:
    if split not in SCENE_SPLITS:
        raise ValueError(f"scene split must be one of {SCENE_SPLITS} (evaluation or demonstration scenes), got {split!r}")
    return split


def scene_rng(task_name: str, seed: int, split: str = "eval", redraw: int = 0) -> np.random.Generator:
    key = f"{task_name}|{validate_split(split)}|{seed}" + (f"|{redraw}" if redraw else "")
    digest = hashlib.sha256(key.encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def validate_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return int(seed)


# ---------------------------------------------------------------- what a task's scene may hold


def target_asset(spec: TaskSpec) -> assets.Asset:
    return assets.CONTAINERS[spec.target].scaled(OBJ_SCALES.get(spec.target, 1.0))


def confuser_kinds(spec: TaskSpec) -> dict[str, tuple[str, ...]]:
    """The container kinds each of a novel task's confusers may be: upstream's pools without the task's own
    kinds and the ones like them."""
    taken = {spec.source, spec.target, *SIMILAR.get(spec.source, ()), *SIMILAR.get(spec.target, ())}
    roles = NOVEL_CONFUSERS[(spec.source, spec.target)]
    return {role: tuple(k for k in pool if k not in taken) for role, pool in
            (("distractor_source", SOURCES), ("distractor_target", TARGETS)) if role in roles}


@functools.cache
def scene_assets(spec: TaskSpec, instances: str = "A") -> dict[str, assets.Asset]:
    """Every body a task's scenes may place, by its key in the scene: one model serves every episode."""
    if spec.fixture:
        found = {f"obj_{name}": assets.OBJECTS[name].scaled(spec.object_scale) for name in spec.objects}
        found.update({f"veg_{name}": assets.OBJECTS[name] for name in VEGETABLES})
        found.update({f"back_{name}": assets.BACK_EDGE[name] for name in ("toaster", "plant")})
        found["paper_towel"] = assets.PAPER_TOWEL
        return found
    found = {f"obj_{a.name}": a for category in spec.objects for a in assets.instance_split(category, instances)}
    found["source"], found["target"] = assets.CONTAINERS[spec.source], target_asset(spec)
    for kinds in confuser_kinds(spec).values():
        found.update({f"container_{kind}": assets.CONTAINERS[kind] for kind in kinds})
    found.update({f"back_{name}": assets.BACK_EDGE[name] for name in ("toaster", "plant", *BACK_EDGE_ITEMS)})
    return found


# ---------------------------------------------------------------- drawing a scene


class _NoRoom(Exception):
    """A required placement found no room: upstream draws the whole scene again."""


def sample_scene(spec: TaskSpec, seed: int, split: str = "eval", instances: str = "A", redraw: int = 0) -> SceneSample:
    """Scene `seed` of a task; `redraw` k > 0 draws it anew from the seed's k-th side stream (the environment
    does when the robot's resting arms would start inside what the first draw placed)."""
    seed = validate_seed(seed)
    assets.validate_instances(instances)
    rng = scene_rng(spec.name, seed, split, redraw)
    bodies = scene_assets(spec, instances)
    draw = _draw_novel if spec.family == "novel" else _draw_fixture
    for _ in range(SCENE_TRIES):
        try:
            return draw(spec, rng, bodies, seed, split, instances)
        except _NoRoom:
            continue
    raise RuntimeError(f"{spec.name}: no scene found in {SCENE_TRIES} draws from seed {seed}")


class _Table:
    """What stands on the table so far, and placements that keep clear of it."""

    def __init__(self, rng, bodies):
        self.rng, self.bodies, self.taken = rng, bodies, []

    def place(self, body: str, draw, inside: Region | None = None, required: bool = True,
              tries: int | None = None) -> Pose | None:
        """The first pose from `draw()` clear of everything placed (and, with `inside`, wholly in that region)."""
        asset = self.bodies[body]
        for _ in range(tries or PLACEMENT_TRIES[required]):
            pose = draw()
            shape = footprint(asset, pose)
            if inside is not None and not _within(shape[0], inside):
                continue
            if not any(footprints_overlap(shape, other) for other in self.taken):
                self.taken.append(shape)
                return pose
        if required:
            raise _NoRoom(body)
        return None

    def uniform(self, region: Region, yaw_range, z=TABLE_TOP_Z):
        (x0, x1), (y0, y1) = region
        return lambda: (float(self.rng.uniform(x0, x1)), float(self.rng.uniform(y0, y1)), z,
                        float(self.rng.uniform(*yaw_range)))


def _within(outline: np.ndarray, region: Region) -> bool:
    (x0, x1), (y0, y1) = region
    return bool(np.all((outline[..., 0] >= x0) & (outline[..., 0] <= x1) & (outline[..., 1] >= y0) & (outline[..., 1] <= y1)))


QUARTER, EIGHTH = (-math.pi / 2, math.pi / 2), (-math.pi / 4, math.pi / 4)


def _on(table: _Table, body: str, under: Pose, under_asset: assets.Asset, required=True) -> Pose | None:
    """An object within +-5 cm of a container's centre, resting on its floor, or on its rim where it
    reaches over the rim (upstream drops it from 1 cm above the container's top)."""
    x, y, z, _ = under
    region = ((x - OBJECT_ON_SOURCE, x + OBJECT_ON_SOURCE), (y - OBJECT_ON_SOURCE, y + OBJECT_ON_SOURCE))
    on_floor = table.uniform(region, EIGHTH, z + under_asset.surface)
    support = footprint(under_asset, under)

    def draw() -> Pose:
        pose = on_floor()
        if footprints_overlap(footprint(table.bodies[body], pose), support, margin=0.0):
            return pose[0], pose[1], z + under_asset.top, pose[3]
        return pose
    return table.place(body, draw, required=required, tries=OBJECT_TRIES)


def _draw_novel(spec, rng, bodies, seed, split, instances) -> SceneSample:
    table = _Table(rng, bodies)
    # Upstream adds +0.05 - U(0, 0.05) to its world x (the robot's right) and y (ahead), -0.05 - U(0, 0.05) to z.
    u = rng.uniform(0, BASE_JITTER, 3)
    base = (ROBOT_BASE[0] + BASE_JITTER - u[1], ROBOT_BASE[1] - (BASE_JITTER - u[0]), ROBOT_BASE[2] - BASE_JITTER - u[2])
    arm_offset = rng.uniform(-ARM_PERTURBATION, ARM_PERTURBATION, size=14)
    waist = rng.normal(0.0, INIT_NOISE, size=3)
    placed = []
    # Upstream's fixture pass first: the toaster and the plant at the back edge, facing the robot.
    back_yaw = (math.pi / 2, math.pi / 2)
    for name in ("toaster", "plant"):
        pose = table.place(f"back_{name}", table.uniform(NOVEL_BACK_EDGE, back_yaw), required=False)
        if pose is not None:
            placed.append(Placed("back_edge", f"back_{name}", pose))
    confusers = confuser_kinds(spec)
    source_pose = table.place("source", table.uniform(NOVEL_SOURCE_REGION, QUARTER), inside=NOVEL_SOURCE_REGION)
    if "distractor_source" in confusers:
        kind = confusers["distractor_source"][int(rng.integers(len(confusers["distractor_source"])))]
        pose = table.place(f"container_{kind}", table.uniform(CONFUSER_REGION, EIGHTH))
        placed.append(Placed("distractor_source", f"container_{kind}", pose))
    target_pose = table.place("target", table.uniform(NOVEL_TARGET_REGION, QUARTER))
    category = spec.objects[int(rng.integers(len(spec.objects)))]
    used: list[str] = []

    def instance(category: str) -> str:
        """An instance of `category` drawn uniformly among those not yet in the scene (one body each)."""
        pool = [f"obj_{a.name}" for a in assets.instance_split(category, instances) if f"obj_{a.name}" not in used]
        used.append(pool[int(rng.integers(len(pool)))])
        return used[-1]

    def other_category() -> str:
        """A distractor's category: any but the task object's (upstream excludes the task's categories)."""
        others = [c for c in spec.objects if c != category]
        return others[int(rng.integers(len(others)))]

    object_body = instance(category)
    object_pose = _on(table, object_body, source_pose, bodies["source"])
    if rng.integers(0, 2):
        name = BACK_EDGE_ITEMS[int(rng.integers(len(BACK_EDGE_ITEMS)))]
        pose = table.place(f"back_{name}", table.uniform(NOVEL_BACK_EDGE, back_yaw), required=False)
        if pose is not None:
            placed.append(Placed("back_edge", f"back_{name}", pose))
    if "distractor_obj" in NOVEL_CONFUSERS[(spec.source, spec.target)]:
        body = instance(other_category())
        placed.append(Placed("distractor_obj", body, _on(table, body, source_pose, bodies["source"])))
    if "distractor_source" in confusers:
        holder = next(p for p in placed if p.role == "distractor_source")
        body = instance(other_category())
        placed.append(Placed("distractor_source_obj", body, _on(table, body, holder.pose, bodies[holder.body])))
    if "distractor_target" in confusers:
        kind = confusers["distractor_target"][int(rng.integers(len(confusers["distractor_target"])))]
        pose = table.place(f"container_{kind}", table.uniform(CONFUSER_REGION, EIGHTH))
        placed.append(Placed("distractor_target", f"container_{kind}", pose))
    return SceneSample(seed, split, instances, category, object_body, object_pose, source_pose, target_pose,
                       tuple(placed), 0.0, tuple(float(v) for v in base), COTRAIN_ARMS.copy(), arm_offset, waist)


def _draw_fixture(spec, rng, bodies, seed, split, instances) -> SceneSample:
    table = _Table(rng, bodies)
    fixture = assets.FIXTURES[spec.fixture]
    table.taken.append(footprint(fixture, (*FIXTURE_POSE[spec.fixture], TABLE_TOP_Z, 0.0)))
    noise = rng.normal(0.0, INIT_NOISE, size=17)
    arm_offset = noise[3:].copy()
    arm_offset[list(ELBOWS)] = 0.0
    arm_qpos = INIT_ARMS.copy()
    arm_qpos[list(ELBOWS)] = FIXTURE_ELBOW
    placed = []
    towel = assets.PAPER_TOWEL
    towel_y = PAPER_TOWEL_Y - towel.half[1] - 0.0025
    pose = table.place("paper_towel", table.uniform((PAPER_TOWEL_X, (towel_y, towel_y)), (0.0, 0.0)), required=False)
    if pose is not None:
        placed.append(Placed("paper_towel", "paper_towel", pose))
    for name in ("toaster", "plant"):
        pose = table.place(f"back_{name}", table.uniform(FIXTURE_BACK_EDGE, EIGHTH), inside=FIXTURE_BACK_EDGE,
                           required=False)
        if pose is not None:
            placed.append(Placed("back_edge", f"back_{name}", pose))
    category = spec.objects[int(rng.integers(len(spec.objects)))]
    region = FIXTURE_OBJECT_REGION[spec.family]
    object_pose = table.place(f"obj_{category}", table.uniform(region, EIGHTH), inside=region)
    kinds = [k for k in VEGETABLES if k != category]
    count = int(rng.integers(1, 5))
    for i, k in enumerate(rng.choice(len(kinds), size=count, replace=False)):
        body = f"veg_{kinds[k]}"
        pose = table.place(body, table.uniform(FIXTURE_BACK_EDGE, EIGHTH), inside=FIXTURE_BACK_EDGE, required=i == 0)
        if pose is not None:
            placed.append(Placed("vegetable", body, pose))
    fixture_open = float(rng.uniform(*DOOR_OPEN_RANGE))
    return SceneSample(seed, split, instances, category, f"obj_{category}", object_pose, None, None, tuple(placed),
                       fixture_open, ROBOT_BASE, arm_qpos, arm_offset, noise[:3])


# ---------------------------------------------------------------- nothing starts inside anything else


def footprint(asset, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Where each colliding part of `asset` at `pose` is: its outline on the table (parts, 4 corners, xy)
    and its height range (parts, 2), as `TabletopScene.apply` places it."""
    x, y, z, yaw = pose
    c, s = np.cos(yaw), np.sin(yaw)
    corners, heights = _part_boxes(asset)
    return corners @ np.array([[c, s], [-s, c]]) + np.array([x, y]), heights + z


_SIGNS = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
_BOXES: dict[int, tuple] = {}


def _part_boxes(asset) -> tuple[np.ndarray, np.ndarray]:
    """The asset's colliding parts as outline corners and height ranges in its own frame (computed once)."""
    cached = _BOXES.get(id(asset))
    if cached is None or cached[0] is not asset:
        parts = [p for p in asset.parts if p.collide]
        centers = np.array([p.pos for p in parts])
        halves = np.array([p.half_extents() for p in parts])
        corners = centers[:, None, :2] + _SIGNS[None] * halves[:, None, :2]
        heights = centers[:, 2:] - asset.bottom + np.array([-1.0, 1.0]) * halves[:, 2:]
        cached = _BOXES[id(asset)] = (asset, corners, heights)
    return cached[1], cached[2]


def footprints_overlap(a, b, margin: float = FOOTPRINT_MARGIN) -> bool:
    """Whether a part of `a` comes within `margin` of a part of `b` on the table, at heights they share."""
    lo_a, hi_a, lo_b, hi_b = a[0].min(axis=(0, 1)), a[0].max(axis=(0, 1)), b[0].min(axis=(0, 1)), b[0].max(axis=(0, 1))
    if np.any(lo_a > hi_b + margin) or np.any(lo_b > hi_a + margin):
        return False                  # their bounding boxes are apart: most pairs end here
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
