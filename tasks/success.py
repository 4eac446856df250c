"""Success as upstream (robocasa-gr1-tabletop-tasks) defines it, per family.

Each check is a pure function of a small measured state, so tests can build the states on both sides of
every condition; `measure_*` read that state off a `TabletopScene`.

- drawer / cabinet / microwave: the object's position (its centre, where upstream's objects have their
  origin; ours have it at their base) is inside the fixture's interior and the door or drawer is closed:
  its state (0 closed .. 1 open; hinge 0..pi/2, drawer 0..full travel) <= 0.005.
- novel pick-and-place: (a) both hands more than 0.25 m from the container and from the object, (b) the
  object in the receptacle: for a tiered basket or shelf at least 2 of its 15 keypoints (bounding box corners,
  face centres and centre, pulled 20% towards the centre, as upstream's) in the highest tier,
  otherwise touching the container with its xy distance to the container's centre under 0.7 x the
  container's horizontal radius, (c) the object not touching the table, (d) the container upright (its z
  axis' cosine to world z > 0.8), (e) no second object from the source (upstream's `distractor_obj`)
  inside the container.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLOSED_THRESHOLD = 0.005
HAND_CLEARANCE = 0.25
CENTRE_FRACTION = 0.7
UPRIGHT_COS = 0.8
MIN_TIER_KEYPOINTS = 2


@dataclass(frozen=True)
class FixtureState:
    object_inside: bool
    door_state: float          # 0 closed .. 1 fully open


@dataclass(frozen=True)
class NovelState:
    hand_to_container: tuple[float, float]   # metres, right and left hand
    hand_to_object: tuple[float, float]
    object_touches_container: bool
    object_xy_offset: float                  # object to container centre, in the xy plane
    container_radius: float                  # horizontal radius of the container
    keypoints_in_top_tier: int | None        # tiered containers only; None otherwise
    object_touches_table: bool
    container_up_cos: float
    distractor_inside: bool


def fixture_conditions(s: FixtureState) -> dict[str, bool]:
    return {"object_inside": s.object_inside, "closed": s.door_state <= CLOSED_THRESHOLD}


def novel_conditions(s: NovelState) -> dict[str, bool]:
    if s.keypoints_in_top_tier is not None:
        in_receptacle = s.keypoints_in_top_tier >= MIN_TIER_KEYPOINTS
    else:
        in_receptacle = s.object_touches_container and s.object_xy_offset < CENTRE_FRACTION * s.container_radius
    return {
        "hands_away": min(s.hand_to_container) > HAND_CLEARANCE and min(s.hand_to_object) > HAND_CLEARANCE,
        "in_receptacle": in_receptacle,
        "off_table": not s.object_touches_table,
        "container_upright": s.container_up_cos > UPRIGHT_COS,
        "no_distractor_inside": not s.distractor_inside,
    }


def is_success(conditions: dict[str, bool]) -> bool:
    return all(conditions.values())


# ---------------------------------------------------------------- measuring a scene

def _to_local(d, body_id: int, points: np.ndarray) -> np.ndarray:
    """World points -> the body's frame."""
    return (np.atleast_2d(points) - d.xpos[body_id]) @ d.xmat[body_id].reshape(3, 3)


def touching(d, mask_a: np.ndarray, mask_b: np.ndarray) -> bool:
    """Whether any contact joins a geom of `mask_a` to one of `mask_b` (boolean masks over all geoms)."""
    if d.ncon == 0:
        return False
    pairs = d.contact.geom
    return bool(np.any((mask_a[pairs[:, 0]] & mask_b[pairs[:, 1]]) | (mask_a[pairs[:, 1]] & mask_b[pairs[:, 0]])))


def door_state(scene) -> float:
    fixture = scene.bodies["fixture"]
    value = scene.sim.data._data.qpos[fixture.joint_qpos_addr] / fixture.asset.joint.open_value
    return float(np.clip(value, 0.0, 1.0))


def interior_frame(scene) -> int:
    """The body whose frame the fixture's interior is given in: the drawer's, or the fixture's own."""
    fixture = scene.bodies["fixture"]
    return fixture.moving_body_id if fixture.asset.interior_on_joint else fixture.body_id


def measure_fixture(scene, obj_key: str) -> FixtureState:
    d = scene.sim.data._data
    local = _to_local(d, interior_frame(scene), object_centre(scene, obj_key))
    interior = scene.bodies["fixture"].asset.interior
    return FixtureState(object_inside=bool(interior.contains(local)[0]), door_state=door_state(scene))


def object_centre(scene, key: str) -> np.ndarray:
    """The world centre of an object's bounding box: what upstream's object position is (its assets are
    centred on their origin; ours have it at their base, which for an object on a fixture's floor lies on
    the interior's lower face)."""
    d = scene.sim.data._data
    body = scene.bodies[key]
    return d.xpos[body.body_id] + d.xmat[body.body_id].reshape(3, 3) @ body.asset.center


def hand_distances(scene, obj_key: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """Distances of the (right, left) hands to the container and to the object."""
    d = scene.sim.data._data
    hands = d.site_xpos[scene.hand_site_ids]
    to_container = np.linalg.norm(hands - d.xpos[scene.bodies["target"].body_id], axis=1)
    to_object = np.linalg.norm(hands - object_centre(scene, obj_key), axis=1)
    return tuple(map(float, to_container)), tuple(map(float, to_object))


def may_succeed(scene, obj_key: str) -> bool:
    """Cheap necessary conditions, false through most of an episode, so a per-step check starts here: for
    a fixture, the door or drawer closed; otherwise the object within the container's horizontal radius
    (implied by (b)) and the hands away (a)."""
    if "fixture" in scene.bodies:
        return door_state(scene) <= CLOSED_THRESHOLD
    d = scene.sim.data._data
    target = scene.bodies["target"]
    offset = object_centre(scene, obj_key)[:2] - d.xpos[target.body_id][:2]
    if float(offset @ offset) >= target.asset.horizontal_radius ** 2:
        return False
    to_container, to_object = hand_distances(scene, obj_key)
    return min(to_container) > HAND_CLEARANCE and min(to_object) > HAND_CLEARANCE


def measure_novel(scene, obj_key: str, distractor_keys: list[str]) -> NovelState:
    d = scene.sim.data._data
    obj, target = scene.bodies[obj_key], scene.bodies["target"]
    obj_pos, target_pos = object_centre(scene, obj_key), d.xpos[target.body_id]
    to_container, to_object = hand_distances(scene, obj_key)
    keypoints = None
    if target.asset.top_tier is not None:
        world = d.xpos[obj.body_id] + obj.asset.eroded_keypoints @ d.xmat[obj.body_id].reshape(3, 3).T
        keypoints = int(target.asset.top_tier.contains(_to_local(d, target.body_id, world)).sum())
    distractor_inside = any(   # by its base: a tall distractor standing in a shallow bowl is in it
        target.asset.interior.contains(_to_local(d, target.body_id, d.xpos[scene.bodies[k].body_id]))[0]
        for k in distractor_keys)
    return NovelState(
        hand_to_container=to_container,
        hand_to_object=to_object,
        object_touches_container=touching(d, obj.geom_mask, target.geom_mask),
        object_xy_offset=float(np.linalg.norm(obj_pos[:2] - target_pos[:2])),
        container_radius=target.asset.horizontal_radius,
        keypoints_in_top_tier=keypoints,
        object_touches_table=touching(d, obj.geom_mask, scene.table_geom_mask),
        container_up_cos=float(d.xmat[target.body_id][8]),
        distractor_inside=bool(distractor_inside),
    )
