"""The scene distributions are upstream's: the numbers tasks/FIDELITY.md claims, and what many seeds draw.

These tests draw scenes only (no simulation), so they check hundreds of seeds in seconds.
"""

import math

import numpy as np
import pytest
from PIL import Image

from tasks import assets, images
from tasks.sampling import (BACK_EDGE_ITEMS, CONFUSER_REGION, COTRAIN_ARMS, FIXTURE_BACK_EDGE, FIXTURE_OBJECT_REGION,
                            FIXTURE_POSE, NOVEL_BACK_EDGE, NOVEL_CONFUSERS, NOVEL_SOURCE_REGION, NOVEL_TARGET_REGION,
                            OBJ_SCALES, ROBOT_BASE, TABLE_TOP_Z, footprint, sample_scene, scene_rng, target_asset)
from tasks.specs import TASKS, get_task

NOVEL = [t for t in TASKS if t.family == "novel"]
FIXTURE = [t for t in TASKS if t.family != "novel"]
SEEDS = range(100)


def _samples(spec, seeds=SEEDS, **kwargs):
    return [sample_scene(spec, s, **kwargs) for s in seeds]


def test_upstream_placements_convert_to_our_frame():
    """Upstream's normalised placements (pos in [-1, 1] within the table top less a 0.04 margin), read in
    robocasa-gr1-tabletop-tasks, as ranges in our frame (x ahead, y to the robot's left)."""
    np.testing.assert_allclose(NOVEL_SOURCE_REGION, ((-0.3345, -0.0345), (-0.554, 0.146)), atol=1e-9)
    np.testing.assert_allclose(NOVEL_TARGET_REGION, ((-0.13825, 0.06175), (-0.5175, 0.0825)), atol=1e-9)
    np.testing.assert_allclose(CONFUSER_REGION, ((-0.303, 0.147), (-0.55, 0.55)), atol=1e-9)
    np.testing.assert_allclose(NOVEL_BACK_EDGE, ((0.2245, 0.3245), (-0.5, 0.5)), atol=1e-9)
    np.testing.assert_allclose(FIXTURE_BACK_EDGE, ((-0.045, 0.355), (-0.59, 0.59)), atol=1e-9)
    np.testing.assert_allclose(FIXTURE_OBJECT_REGION["drawer"], ((-0.2785, -0.0785), (0.145, 0.345)), atol=1e-9)
    np.testing.assert_allclose(FIXTURE_OBJECT_REGION["microwave"], ((-0.304, -0.104), (-0.345, -0.145)), atol=1e-9)
    np.testing.assert_allclose(FIXTURE_POSE["drawer"], (0.15, -0.244), atol=1e-9)
    np.testing.assert_allclose(FIXTURE_POSE["cabinet"], (0.01875, 0.0), atol=1e-9)
    np.testing.assert_allclose(FIXTURE_POSE["microwave"], (0.075, -0.183), atol=1e-9)
    assert TABLE_TOP_Z == 0.92 and ROBOT_BASE == (-0.525, 0.0, 0.97)
    assert OBJ_SCALES == {"tiered_shelf": 0.7, "tiered_basket": 0.7, "plate": 1.2, "cardboard_box": 0.9,
                          "placemat": 0.8, "tray": 0.8, "cutting_board": 0.8}


def _inside(outline, region, tol=1e-9):
    (x0, x1), (y0, y1) = region
    return np.all(outline[..., 0] >= x0 - tol) and np.all(outline[..., 0] <= x1 + tol) and \
        np.all(outline[..., 1] >= y0 - tol) and np.all(outline[..., 1] <= y1 + tol)


def _spans(values, low, high, fraction=0.7):
    return max(values) - min(values) >= fraction * (high - low)


@pytest.mark.parametrize("spec", NOVEL, ids=lambda s: s.name)
def test_novel_regions_rotations_and_objects(spec):
    samples = _samples(spec)
    source = assets.CONTAINERS[spec.source]
    for s in samples:
        assert _inside(footprint(source, s.source_pose)[0], NOVEL_SOURCE_REGION)        # the whole source inside
        (x0, x1), (y0, y1) = NOVEL_TARGET_REGION
        assert x0 <= s.target_pose[0] <= x1 and y0 <= s.target_pose[1] <= y1            # the target's centre
        assert abs(s.object_pose[0] - s.source_pose[0]) <= 0.05 and abs(s.object_pose[1] - s.source_pose[1]) <= 0.05
        assert abs(s.object_pose[3]) <= math.pi / 4 and abs(s.source_pose[3]) <= math.pi / 2
        assert abs(s.target_pose[3]) <= math.pi / 2
        assert s.object_pose[2] > s.source_pose[2]                                      # on the source, not the table
    yaws = [s.target_pose[3] for s in samples]
    assert _spans(yaws, -math.pi / 2, math.pi / 2)
    assert _spans([s.target_pose[1] for s in samples], *NOVEL_TARGET_REGION[1])
    drawn = {s.object for s in samples}
    assert drawn == set(spec.objects), "every one of the ten categories is drawn"


@pytest.mark.parametrize("spec", NOVEL, ids=lambda s: s.name)
def test_each_novel_task_has_its_confusers_and_back_edge(spec):
    roles = set(NOVEL_CONFUSERS[(spec.source, spec.target)])
    expected = roles | ({"distractor_source_obj"} if "distractor_source" in roles else set())
    packaged = 0
    for s in _samples(spec, range(60)):
        by_role = {}
        for p in s.distractors:
            by_role.setdefault(p.role, []).append(p)
        assert set(by_role) - {"back_edge"} == expected
        for role in ("distractor_source", "distractor_target"):
            for p in by_role.get(role, []):
                kind = p.body.removeprefix("container_")
                assert kind not in (spec.source, spec.target)
                assert CONFUSER_REGION[0][0] <= p.pose[0] <= CONFUSER_REGION[0][1]
        for p in by_role.get("distractor_obj", []):
            assert p.body != s.object_body and not p.body.startswith(f"obj_{s.object}_")
        back = [p.body.removeprefix("back_") for p in by_role["back_edge"]]
        assert {"toaster", "plant"} <= set(back)
        packaged += any(b in BACK_EDGE_ITEMS for b in back)
        for p in by_role["back_edge"]:
            assert NOVEL_BACK_EDGE[0][0] <= p.pose[0] <= NOVEL_BACK_EDGE[0][1]
    assert 15 <= packaged <= 45, f"a packaged item at the back edge about half the time, got {packaged}/60"


@pytest.mark.parametrize("spec", FIXTURE, ids=lambda s: s.name)
def test_fixture_regions_distractors_and_door(spec):
    region = FIXTURE_OBJECT_REGION[spec.family]
    obj = assets.OBJECTS[spec.objects[0]].scaled(spec.object_scale)
    counts = []
    for s in _samples(spec, range(80)):
        assert _inside(footprint(obj, s.object_pose)[0], region)
        assert abs(s.object_pose[3]) <= math.pi / 4 and 0.9 <= s.fixture_open <= 1.0
        vegetables = [p for p in s.distractors if p.role == "vegetable"]
        counts.append(len(vegetables))
        for p in s.distractors:
            if p.role in ("vegetable", "back_edge"):
                assert _inside(footprint(assets.OBJECTS.get(p.body[4:]) or assets.BACK_EDGE[p.body[5:]], p.pose)[0],
                               FIXTURE_BACK_EDGE)
        assert s.robot_base == ROBOT_BASE
        assert s.arm_qpos[3] == s.arm_qpos[10] == -2.1          # elbows set as upstream's fixture tasks do
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) >= 3


def test_robot_start_and_base_jitter():
    spec = get_task("PnP Novel From Tray To Pot")
    samples = _samples(spec)
    base = np.array([s.robot_base for s in samples])
    lo, hi = base.min(axis=0), base.max(axis=0)
    assert -0.525 <= lo[0] and hi[0] <= -0.475 and -0.05 <= lo[1] and hi[1] <= 0.0 and 0.87 <= lo[2] and hi[2] <= 0.92
    assert np.all(hi - lo > 0.04), "every axis jitters over most of its 5 cm"
    offsets = np.array([s.arm_offset for s in samples])
    assert np.all(np.abs(offsets) <= 0.2) and offsets.min() < -0.18 and offsets.max() > 0.18
    np.testing.assert_allclose(samples[0].arm_qpos, COTRAIN_ARMS)
    noise = np.array([s.arm_offset for s in _samples(get_task("PnP Can To Drawer Close"))])
    assert 0.015 < noise[:, [0, 1, 2, 4]].std() < 0.025                 # N(0, 0.02) on the fixture tasks


def test_target_containers_carry_upstreams_scale():
    spec = get_task("PnP Novel From Tray To Tieredshelf")
    shelf, built = target_asset(spec), assets.CONTAINERS["tiered_shelf"]
    assert shelf.half[2] == pytest.approx(0.7 * built.half[2])
    # what success measures scales with what is built: the top tier sits on the scaled upper board
    assert shelf.top_tier.center[2] == pytest.approx(0.7 * built.top_tier.center[2])
    assert shelf.top_tier.half[0] == pytest.approx(0.7 * built.top_tier.half[0])
    assert target_asset(get_task("PnP Novel From Tray To Pot")).half[2] == assets.CONTAINERS["pot"].half[2]


def test_instance_splits_are_disjoint_and_selectable():
    spec = get_task("PnP Novel From Placemat To Tieredshelf")
    a = {s.object_body for s in _samples(spec, instances="A")}
    b = {s.object_body for s in _samples(spec, instances="B")}
    names_a = {f"obj_{x.name}" for c in spec.objects for x in assets.instance_split(c, "A")}
    names_b = {f"obj_{x.name}" for c in spec.objects for x in assets.instance_split(c, "B")}
    assert a <= names_a and b <= names_b and not names_a & names_b
    assert len(a) >= 15 and len(b) >= 15
    with pytest.raises(ValueError, match="instances"):
        sample_scene(spec, 0, instances="C")


def test_evaluation_scenes_are_in_no_demonstration_run():
    """The 51 evaluation scenes of every task come from streams that no demonstration seed reaches: the scene
    generators' first draws differ from those of 5,000 demonstration seeds, and the scenes themselves differ."""
    for spec in TASKS:
        evaluation = {tuple(scene_rng(spec.name, i, "eval").integers(0, 2**62, 2)) for i in range(51)}
        assert len(evaluation) == 51
        for seed in range(5000):
            assert tuple(scene_rng(spec.name, seed, "train").integers(0, 2**62, 2)) not in evaluation
    for spec in (get_task("PnP Can To Drawer Close"), get_task("PnP Novel From Plate To Bowl")):
        evaluation = {str(s.summary()["object_pose"]) for s in _samples(spec, range(51), split="eval")}
        training = {str(s.summary()["object_pose"]) for s in _samples(spec, range(51), split="train")}
        assert not evaluation & training
    with pytest.raises(ValueError, match="split"):
        scene_rng("PnP Can To Drawer Close", 0, "test")


def _window_frame(h, w):
    """A frame white inside bg_crop_pad's window and black outside it."""
    frame = np.zeros((h, w, 3), np.uint8)
    rows = [round(r * h / 800) for r in images.CROP_ROWS]
    cols = [round(c * w / 1280) for c in images.CROP_COLS]
    frame[rows[0]:rows[1], cols[0]:cols[1]] = 255
    return frame


def test_the_crop_is_upstreams_window_stretched_and_padded():
    h, w = images.render_hw("bg_crop_pad", 256)
    assert (h, w) == (202, 322) and w / h == pytest.approx(1.6, abs=0.01)
    picture = images.bg_crop_pad(_window_frame(h, w))
    assert picture.shape == (256, 256, 3)
    band = round(256 * 480 / 720)                       # 720 x 480 padded to 720 x 720: the picture's middle 2/3
    top = (256 - band) // 2
    assert picture[top + 2:top + band - 2].min() == 255, "the window fills the band: it is the window"
    assert picture[:top - 1].max() == 0 and picture[top + band + 1:].max() == 0, "black above and below"


def test_the_pad_picture_is_the_whole_frame_padded():
    h, w = images.render_hw("pad", 256)
    frame = np.full((h, w, 3), 200, np.uint8)
    picture = images.pad(frame)
    band = round(256 * h / w)
    top = (256 - band) // 2
    assert picture.shape == (256, 256, 3)
    assert picture[top + 2:top + band - 2].min() == 200 and picture[:top - 1].max() == 0
    # one render gives all three pictures, and video.ego_view is the cropped one by default
    delivered = images.deliver(_window_frame(h, w), "bg_crop_pad", 256)
    assert set(delivered) == {"video.ego_view", *images.VARIANT_KEYS.values()}
    np.testing.assert_array_equal(delivered["video.ego_view"], delivered["video.ego_view_bg_crop_pad_res256_freq20"])
    small = images.deliver(_window_frame(h, w), "pad", 64)["video.ego_view"]
    assert small.shape == (64, 64, 3)
    big = Image.fromarray(delivered["video.ego_view_pad_res256_freq20"]).resize((64, 64), Image.BILINEAR)
    assert np.abs(np.asarray(big, float) - small).mean() < 8


def test_tier_keypoints_are_upstreams_fifteen_eroded_points():
    """Upstream counts 15 points of the object in the top tier: corners, face centres and centre, pulled 20%
    towards the centre. A croissant lying across the 0.7-scale shelf's tier (narrower than the croissant is
    long) still has several of them inside, where it would have no corner inside."""
    croissant = assets.OBJECT_INSTANCES["croissant"][0]
    points = croissant.eroded_keypoints
    assert points.shape == (15, 3)
    np.testing.assert_allclose(points[-1], croissant.center)
    np.testing.assert_allclose(np.abs(points[:8] - croissant.center), 0.8 * np.broadcast_to(croissant.half, (8, 3)))
    tier = target_asset(get_task("PnP Novel From Tray To Tieredshelf")).top_tier
    floor = np.array(tier.center) - [0, 0, tier.half[2]]
    resting = points - croissant.center + floor + [0, 0, croissant.half[2] + 0.002]
    rotated = resting.copy()
    rotated[:, :2] = (resting[:, :2] - floor[:2]) @ np.array([[0, 1], [-1, 0]]) + floor[:2]   # across the tier
    assert tier.contains(rotated).sum() >= 2
    corners = croissant.keypoints - croissant.center + floor + [0, 0, croissant.half[2] + 0.002]
    corners[:, :2] = (corners[:, :2] - floor[:2]) @ np.array([[0, 1], [-1, 0]]) + floor[:2]
    assert tier.contains(corners).sum() == 0
