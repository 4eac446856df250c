"""The object instances, the back-edge clutter and the fixtures: their variety, sizes, and that they stand still."""

import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest

from tasks import assets
from tasks.assets import BACK_EDGE, FIXTURES, OBJECT_INSTANCES, PAPER_TOWEL, instance_split, to_mjcf

CATEGORIES = ["sweet_potato", "bell_pepper", "lemon", "croissant", "pear", "squash", "cupcake", "can", "tomato",
              "eggplant"]
INSTANCES = [a for instances in OBJECT_INSTANCES.values() for a in instances]
CLUTTER = [*BACK_EDGE.values(), PAPER_TOWEL]


def test_every_category_has_four_distinct_instances():
    assert sorted(OBJECT_INSTANCES) == sorted(CATEGORIES)
    for category, instances in OBJECT_INSTANCES.items():
        assert [a.name for a in instances] == [f"{category}_{k}" for k in range(4)]
        looks = {tuple((p.kind, p.size, p.rgba) for p in a.parts) for a in instances}
        assert len(looks) == 4, category
    assert len({a.name for a in INSTANCES}) == len(INSTANCES)


def test_splits_are_disjoint_halves():
    for category, instances in OBJECT_INSTANCES.items():
        a, b = instance_split(category, "A"), instance_split(category, "B")
        assert a == instances[:2] and b == instances[2:]
        assert not {x.name for x in a} & {x.name for x in b}
    with pytest.raises(ValueError, match="'A', 'B'"):
        instance_split("can", "C")
    with pytest.raises(ValueError, match="eggplant"):
        instance_split("potato", "A")


@pytest.mark.parametrize("category", CATEGORIES)
def test_instances_stay_graspable_like_the_first(category):
    first, *others = OBJECT_INSTANCES[category]
    size0 = 2 * first.half
    for a in others:
        size = 2 * a.half
        assert size[0] * size[1] <= 1.26 * size0[0] * size0[1], a.name
        assert 0.75 <= size[2] / size0[2] <= 1.25, a.name
        assert 0.8 <= (np.prod(size) / np.prod(size0)) ** (1 / 3) <= 1.2, a.name
        # Same density as the first, within what the recolouring of visual parts changes.
        assert a.mass / first.mass == pytest.approx(_volume(a) / _volume(first), rel=1e-6)
        assert a.bottom == pytest.approx(0.0, abs=1e-9) and a.kind == "object"


def _volume(a):
    return sum(p.volume() for p in a.parts if p.collide)


def _dropped(a: assets.Asset) -> mujoco.MjModel:
    """A floor and the asset as a free body standing on it, with the contact parameters that `to_mjcf` gives."""
    root = ET.fromstring(to_mjcf(a))
    body = root.find("worldbody/body")
    body.set("pos", f"0 0 {-a.bottom:.6g}")
    body.insert(0, ET.Element("freejoint"))
    body.find("body").set("gravcomp", "0")
    ET.SubElement(root, "option", timestep="0.002", impratio="20", cone="elliptic")
    floor = ET.Element("geom", type="plane", size="1 1 0.1", friction="1 0.005 0.0001", condim="4",
                       solref="0.004 1", solimp="0.95 0.99 0.001")
    root.find("worldbody").insert(0, floor)
    return mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))


@pytest.mark.parametrize("asset", INSTANCES + CLUTTER, ids=lambda a: a.name)
def test_stands_still_on_a_table(asset):
    model = _dropped(asset)
    assert model.body_subtreemass[1] == pytest.approx(asset.mass, rel=1e-3) and asset.mass > 0
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    start = data.qpos[:3].copy()
    mujoco.mj_step(model, data, nstep=1000)  # 2 s
    assert np.linalg.norm(data.qpos[:3] - start) < 0.01, asset.name
    up = np.zeros(9)
    mujoco.mju_quat2Mat(up, data.qpos[3:7])
    # Its z axis still points up (an eggplant leans a degree or three towards its stem) and it has come to rest.
    assert up[8] > np.cos(np.radians(5)), asset.name
    assert np.linalg.norm(data.qvel) < 0.01, asset.name


@pytest.mark.parametrize("name,size", [("drawer", (0.30, 0.45, 0.25)), ("cabinet", (0.30, 0.30, 0.80)),
                                       ("microwave", (0.40, 0.35, 0.30))])
def test_fixtures_have_upstream_sizes(name, size):
    f = FIXTURES[name]
    np.testing.assert_allclose(2 * f.half, size, atol=0.01)  # depth (x), width (y), height (z)
    assert f.bottom == pytest.approx(0.0) and f.top == pytest.approx(size[2])
    # robosuite's world compiles angles in radians, as the hinge's range is written.
    model = mujoco.MjModel.from_xml_string(to_mjcf(f).replace("<worldbody>", '<compiler angle="radian"/><worldbody>'))
    assert model.njnt == 1 and model.jnt_range[0, 1] == pytest.approx(f.joint.open_value, abs=1e-4)
    # The interior lies inside the fixture's walls (a drawer's when the drawer is shut).
    offset = np.asarray(f.joint.pos) if f.interior_on_joint else np.zeros(3)
    lo = offset + np.asarray(f.interior.center) - f.interior.half
    hi = offset + np.asarray(f.interior.center) + f.interior.half
    assert np.all(lo >= f.center - f.half - 1e-9) and np.all(hi <= f.center + f.half + 1e-9)


def test_drawer_opens_by_055_of_its_depth():
    assert FIXTURES["drawer"].joint.open_value == pytest.approx(0.165)
