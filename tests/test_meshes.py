import numpy as np

from tasks.meshes import lighten_visual_meshes, read_stl, write_stl


def test_stl_round_trip(tmp_path):
    points = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    triangles = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    write_stl(str(tmp_path / "t.stl"), points, triangles)
    back_points, back_triangles = read_stl(str(tmp_path / "t.stl"))
    assert len(back_points) == 4 and len(back_triangles) == 4
    np.testing.assert_allclose(np.sort(back_points[back_triangles].reshape(-1, 9), axis=0),
                               np.sort(points[triangles].reshape(-1, 9), axis=0), atol=1e-6)


def test_only_visual_meshes_are_decimated():
    from robosuite.models.grippers import FourierRightHand

    from tasks.robot import GR1ArmsAndWaistFourierHands

    robot = GR1ArmsAndWaistFourierHands()
    robot.add_gripper(FourierRightHand(idn="0_right"), robot.eef_name["right"])
    before = {m.get("name"): m.get("file") for m in robot.asset.iter("mesh")}
    assert lighten_visual_meshes(robot, max_faces=2000) > 10
    colliding = {g.get("mesh") for g in robot.worldbody.iter("geom")
                 if g.get("mesh") and not (g.get("contype") == "0" and g.get("conaffinity") == "0")}
    for mesh in robot.asset.iter("mesh"):
        name, file = mesh.get("name"), mesh.get("file")
        if file != before[name]:
            assert name not in colliding, f"{name} is used by a colliding geom: physics must keep its mesh"
            assert len(read_stl(file)[1]) < len(read_stl(before[name])[1])
    assert any(before[n] == m.get("file") for n in colliding for m in robot.asset.iter("mesh") if m.get("name") == n)
