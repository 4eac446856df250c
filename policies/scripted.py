"""`scripted`: an expert that solves the tasks from the simulator's state, with honest physics.

It reads object, source, target and fixture poses from the simulation (never writes them), plans palm
waypoints, turns each into joint targets with inverse kinematics over the waist and one arm
(`policies/ik.py`), and grasps with the Fourier hand's power grasp: palm beside the object in a
"handshake" pose (fingers forward, thumb up), fingers closed around it. Once the hand has closed it plans
the place from where the object sits in the hand, then transports, lowers, releases and retreats. It
pushes a drawer shut with the fist; the other hand sweeps a cabinet or microwave door shut.
Nothing is welded or teleported; the physics is the task suite's, the same for every policy.

The expert needs the environment itself: the rollout hands it over through `bind_env(env)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np

from lda_bench.policy import register_policy
from policies.ik import HandIK
from tasks.layout import ACTION_KEYS, ROBOSUITE_SLICES
from tasks.sampling import TABLE_TOP_Z as TABLE_Z
from tasks.success import interior_frame

OPEN = np.array([0.0, 0.0, 0.0, 0.0, 0.3, 1.2])        # fingers open, thumb rotated across the palm
THUMB_UP = np.zeros(6)                                  # fingers straight, thumb pointing up out of the way
CLOSED = np.array([1.5, 1.5, 1.5, 1.5, 1.0, 1.2])      # power grasp
# The hand's shape while the palm approaches, per kind of grasp (`_grasp_pose`): the thumb across the palm
# would strike an object it passes over (lying produce) or beside (tall objects), so it stays up there.
APPROACH = {"side": THUMB_UP, "upright": OPEN, "rolled": OPEN, "lying": THUMB_UP}
FIST = np.array([1.6, 1.6, 1.6, 1.6, 1.2, 0.6])         # for pushing doors and drawers
GRASP_FORWARD = 0.1         # object centre ahead of the palm site along the fingers: at the knuckles (9.7 cm)
GRASP_SIDE_GAP = 0.012      # palm surface to object, beyond the object's half width
GRASP_UP = 0.02             # the fingers' mid-height above the site
PALM_CLEARANCE = 0.05       # the palm's lower edge is ~4.6 cm below the site
SIDE_HOLD = 0.115           # side grasps take the object at least this high above its base (a squash by its neck)
SHORT = 0.08                # objects lower than this are grasped with the palm rolled towards the table
SHORT_ROLL = 0.6
TALL = 0.15                 # upright objects taller than this are approached from the side
ELONGATED = 1.6             # long half-size over the others: lying produce (eggplant, sweet potato)
ROUND = 1.3                 # objects whose long horizontal side is under this times the short one are round
HAND_CLEARANCE_OVER = 0.04  # the hand's lowest point above a container's top while it carries the object over
RIM_MARGIN = 0.01           # the hand's clearance over a container's rim, and inside its opening
MAX_PALM_STEP = 0.008      # metres per control step: faster moves knock objects over
CLEAR_Z = 1.1              # palm height that clears open fixtures when moving across the table
TIP_FRACTION = 0.9          # an object tilted this share of the way to falling over is stood up before release
FIST_REACH = 0.1            # the curled fingers' front ahead of the palm site
# Turns of the grasp about the object's vertical to try, in order, when the hand would come closer than
# PICK_CLEARANCE to something beside the object (a second object on the same plate).
GRASP_TURNS = [-0.35, 0.35, -0.7, 0.7]
DOWN_YAWS = [0.0, 0.4, 0.8, -0.4, 1.2, -0.8]
PICK_CLEARANCE = 0.01
START_CLEARANCE = 0.1       # a hand that starts beside the object's top first rises this far above it
HOME = {"right": np.array([-0.28, -0.35, 1.12]), "left": np.array([-0.28, 0.35, 1.12])}


@dataclass
class Waypoint:
    """Move the palm to `pos` (orientation `rot`) over `steps` control steps, with the hand at `hand`."""

    pos: np.ndarray
    rot: np.ndarray | None          # None: the orientation it starts with
    hand: np.ndarray | None         # None: the hand shape it starts with
    steps: int
    hand_first: bool = False      # close/open the hand before moving
    dwell: int = 4                # hold the final targets this many steps (let joints and fingers arrive)
    side: str | None = None       # the hand that moves; None: the task's hand


@register_policy("scripted", "expert from simulator state: IK to palm poses, power grasp, place, close")
class ScriptedExpert:
    def __init__(self, chunk: int = 8, speed: float = 1.0):
        self.chunk = chunk
        self.speed = speed
        self.env = None

    def bind_env(self, env) -> None:
        """Give the expert the environment whose state it reads (`GR1TabletopEnv`, unwrapped)."""
        self.env = env
        m = env.scene.sim.model._model
        self._ik = {side: HandIK(m, side) for side in ("right", "left")}
        # The handshake orientation (fingers forward, thumb up) is the palm's orientation in the rest pose.
        qpos = m.qpos0.copy()
        robot = env.scene.robots[0]
        qpos[robot._ref_joint_pos_indexes] = robot.init_qpos
        self._rest_rot = {side: ik.palm_pose(qpos)[1] for side, ik in self._ik.items()}
        self._nominal = {part: qpos[env.scene.control.action_qpos[ROBOSUITE_SLICES[part]]] for part in ACTION_KEYS}

    def reset(self, task: str, instruction: str) -> None:
        if self.env is None:
            raise RuntimeError("the scripted expert reads the simulator: call bind_env(env) before reset")
        self._queue: list[dict[str, np.ndarray]] = []
        self._waypoints: list[Waypoint | Callable[[], list[Waypoint]]] | None = None
        self._commanded: dict[str, np.ndarray] | None = None
        self._side = self.env.spec_.hand

    def get_action(self, obs: dict) -> dict[str, np.ndarray]:
        steps = []
        while len(steps) < self.chunk:
            if not self._queue:
                self._queue = self._next_segment()
            steps.append(self._queue.pop(0))
        return {f"action.{k}": np.stack([s[k] for s in steps]) for k in ACTION_KEYS}

    # ------------------------------------------------------------ turning waypoints into joint targets

    def _next_segment(self) -> list[dict[str, np.ndarray]]:
        """The steps to the next waypoint, or holding still once the plan is done."""
        if self._waypoints is None:
            self._waypoints = self._plan()
        if self._waypoints and callable(self._waypoints[0]):
            self._waypoints[:1] = self._waypoints[0]()   # a plan step that needs the state of its moment
        if not self._waypoints:
            return [self._targets(None)]
        return self._interpolate(self._waypoints.pop(0))

    def _targets(self, updates: dict | None) -> dict[str, np.ndarray]:
        """The next full set of joint targets: the last commanded ones with `updates` applied."""
        current = self._commanded if self._commanded is not None else self.env.joint_state()
        out = {k: v.copy() for k, v in current.items()}
        out.update(updates or {})
        self._commanded = out
        return out

    def _interpolate(self, wp: Waypoint) -> list[dict[str, np.ndarray]]:
        side = wp.side or self._side
        ik = self._ik[side]
        first = self._commanded is None
        start = self._targets(None)
        qpos = self.env.scene.sim.data._data.qpos.copy()
        pos0, rot0 = ik.palm_pose(qpos)
        # Seed the IK with the commanded joints, so that segments chain smoothly; the first segment starts
        # from the nominal rest pose, so that every episode's solutions take the same branch whatever the
        # initial arm perturbation.
        seed = self._nominal if first else start
        action_qpos = self.env.scene.control.action_qpos
        for part in ("waist", f"{side}_arm"):
            qpos[action_qpos[ROBOSUITE_SLICES[part]]] = seed[part]
        if not first:
            pos0, rot0 = ik.palm_pose(qpos)
        hand_key = f"{side}_hand"
        hand0 = start[hand_key]
        # A waypoint without an orientation or a hand shape keeps the ones it starts with.
        wp = Waypoint(wp.pos, rot0 if wp.rot is None else wp.rot, hand0 if wp.hand is None else wp.hand, wp.steps,
                      wp.hand_first, wp.dwell, wp.side)
        out = []
        if wp.hand_first and not np.allclose(hand0, wp.hand):
            out += [self._targets({hand_key: hand0 + (wp.hand - hand0) * i / 8}) for i in range(1, 9)]
            hand0 = wp.hand
        steps = max(1, int(round(wp.steps / self.speed)), int(np.linalg.norm(wp.pos - pos0) / (MAX_PALM_STEP * self.speed)))
        for i in range(1, steps + 1):
            a = _smooth(i / steps)
            q, _ = ik.solve(qpos, pos0 + (wp.pos - pos0) * a, _slerp(rot0, wp.rot, a))
            qpos[ik.qpos] = q
            out.append(self._targets({"waist": q[:3], f"{side}_arm": q[3:], hand_key: hand0 + (wp.hand - hand0) * a}))
        return out + [self._targets(None) for _ in range(wp.dwell)]

    # ------------------------------------------------------------ plans

    def _plan(self) -> list[Waypoint]:
        """Pick the object, then place it (and close the fixture) as the task's family needs."""
        best = None
        for turn, down in self._grasp_options():
            pick, rot, kind = self._pick(turn, down)
            gap = self._pick_clearance(pick)
            if best is None or gap > best[0]:
                best = (gap, pick, rot, kind)
            if gap >= PICK_CLEARANCE:
                break
        _, pick, rot, self._kind = best
        return pick + [lambda: self._place(rot)]  # a step planned when it is reached

    def _grasp_options(self) -> list[tuple[float, float | None]]:
        """The grasps to try, as (turn, palm-down yaw or None), the usual one first. A second object on the
        source often stands where the hand would go (8 of 26 episodes of Plate To Bowl, Plate To Pan and Tray
        To Tieredshelf never lifted the object, the hand landing on the other one): the palm over the object,
        its fingers turned away from the other, passes it by. Palm down at yaw 0, 0.4 or 0.8 took every one
        of 8 objects off a plate."""
        options = [(0.0, None)]
        if self.env.spec_.fixture is not None:
            return options
        obj, obj_rot, center = self._object()
        *_, kind = self._grasp_pose(self._side, obj.asset, center, obj_rot, self._support_top())
        if kind == "lying" or _is_boxy(obj.asset):
            return options
        return options + [(0.0, yaw) for yaw in DOWN_YAWS] + [(turn, None) for turn in GRASP_TURNS]

    def _reach(self, qpos: np.ndarray, pos: np.ndarray, rot: np.ndarray, steps: int = 8) -> np.ndarray:
        """The waist and arm joints that the move from the pose of `qpos` to (`pos`, `rot`) ends with, solved
        along the way as `_interpolate` does (one solve from afar does not converge)."""
        ik = self._ik[self._side]
        qpos = qpos.copy()
        pos0, rot0 = ik.palm_pose(qpos)
        for i in range(1, steps + 1):
            a = _smooth(i / steps)
            qpos[ik.qpos], _ = ik.solve(qpos, pos0 + (pos - pos0) * a, _slerp(rot0, rot, a))
        return qpos[ik.qpos]

    def _commanded_qpos(self) -> np.ndarray:
        """The simulator's joint positions with the waist and arms at their last commanded targets."""
        qpos = self.env.scene.sim.data._data.qpos.copy()
        action_qpos = self.env.scene.control.action_qpos
        for part in ("waist", "right_arm", "left_arm"):
            qpos[action_qpos[ROBOSUITE_SLICES[part]]] = self._commanded[part]
        return qpos

    def _pick_clearance(self, pick: list[Waypoint]) -> float:
        """The least gap between the hand and the things near the object (not the object, nor the table or
        the source it stands on) along the approach, by inverse kinematics from the rest pose; minus a
        palm's unreached distance."""
        env = self.env
        d = env.scene.sim.data._data
        obj, _, center = self._object()
        near = [b for k, b in env.scene.bodies.items() if b.free and b is not obj and k != "source"
                and np.linalg.norm(d.xpos[b.body_id][:2] - center[:2]) < 0.35]
        geoms = np.concatenate([b.geom_ids for b in near]) if near else np.zeros(0, int)
        ik = self._ik[self._side]
        qpos = d.qpos.copy()
        action_qpos = env.scene.control.action_qpos
        for part in ("waist", f"{self._side}_arm"):
            qpos[action_qpos[ROBOSUITE_SLICES[part]]] = self._nominal[part]
        gap = np.inf
        previous = None
        for wp in pick[1:-1]:
            if wp.rot is None:
                continue
            points = [wp.pos] if previous is None else [previous + (wp.pos - previous) * a for a in (0.5, 1.0)]
            for p in points:
                q, err = ik.solve(qpos, p, wp.rot)
                qpos[ik.qpos] = q
                gap = min(gap, (ik.clearance(qpos, q, geoms) if len(geoms) else 0.05) - err)
            previous = wp.pos
        return gap

    def _pick(self, turn: float = 0.0, down: float | None = None) -> tuple[list[Waypoint], np.ndarray, str]:
        """The waypoints that take the object, with the grasp turned by `turn` about the vertical through
        the object's centre (or the palm down, turned by `down`), the grasp's orientation and its kind."""
        obj, obj_rot, center = self._object()
        grasp, rot, normal, kind = self._grasp_pose(self._side, obj.asset, center, obj_rot, self._support_top(), turn, down)
        # First up and out to the side (the hand's outer side), so the hand never sweeps over the object.
        ready = [Waypoint(HOME[self._side] + np.array([0.0, 0.0, 0.05]), rot, OPEN, 20)]
        palm, _ = self._ik[self._side].palm_pose(self.env.scene.sim.data._data.qpos)
        top = center[2] + float(np.abs(obj_rot[2]) @ obj.asset.half)
        if np.linalg.norm(palm[:2] - center[:2]) < 0.15 and palm[2] < top + START_CLEARANCE:
            # The fixture tasks' arms start with the hand beside a tall bottle's top: moved straight across,
            # the palm caught the wine's neck and dragged it over.
            ready.insert(0, Waypoint(np.append(palm[:2], top + START_CLEARANCE), None, None, 15))
        hand = APPROACH[kind]
        if kind != "side":     # from above, coming down just clear of the object
            above = grasp + np.array([0.0, 0.0, 0.12]) - 0.02 * normal
            if self.env.spec_.fixture:
                above[2] = max(above[2], CLEAR_Z)  # over an open drawer or door on the way
            pick = ready + [Waypoint(above, rot, hand, 30), Waypoint(grasp, rot, hand, 20)]
        else:                  # from the side along the palm normal, until the palm touches
            beside = grasp - 0.08 * normal
            above = beside.copy()
            above[2] = max(beside[2] + 0.12, CLEAR_Z)
            pick = ready + [Waypoint(above, rot, hand, 30), Waypoint(beside, rot, hand, 20),
                       Waypoint(grasp, rot, hand, 20)]
        pick.append(Waypoint(grasp, rot, CLOSED, 1, hand_first=True, dwell=10))
        return pick, rot, kind

    def _object(self):
        """The task object's body, its rotation and the world centre of its bounding box, as they are now."""
        d = self.env.scene.sim.data._data
        obj = self.env.scene.bodies[self.env.sample.object_body]
        obj_rot = d.xmat[obj.body_id].reshape(3, 3)
        return obj, obj_rot, d.xpos[obj.body_id] + obj_rot @ obj.asset.center

    def _support_top(self) -> float:
        """The height of what the object stands on: its source's top (a plate's rim) or the table."""
        source = self.env.scene.bodies.get("source")
        if source is None:
            return TABLE_Z
        return float(self.env.scene.sim.data._data.xpos[source.body_id][2] + source.asset.top)

    def _place(self, rot: np.ndarray) -> list[Waypoint]:
        """Planned once the hand has closed, from where the object sits in it then: closing the fingers
        pushes and tilts it a little, and the place is for the object, not for the palm."""
        env = self.env
        d = env.scene.sim.data._data
        obj, obj_rot, center = self._object()
        below = center[2] - float(np.min((obj_rot @ obj.asset.keypoints.T)[2] + d.xpos[obj.body_id][2]))
        palm, _ = self._ik[self._side].palm_pose(d.qpos)
        offset = palm - center                     # palm relative to the object's centre while it is held
        if env.spec_.fixture is None:
            return self._place_in_container(palm, offset, below, rot)
        if env.spec_.fixture == "drawer":
            return self._place_in_drawer(palm, offset, below, rot) + self._close_drawer()
        return self._place_behind_door(palm, offset, below, rot) + self._close_door()

    def _place_in_container(self, palm, offset, below, rot) -> list[Waypoint]:
        env = self.env
        d = env.scene.sim.data._data
        target = env.scene.bodies["target"]
        tpos = d.xpos[target.body_id]
        floor = self._target_floor(target)
        carry = max(tpos[2] + target.asset.top, floor) + below + 0.08
        lift = palm + np.array([0.0, 0.0, 0.2])
        # The whole hand and forearm pass over the container's top too: a palm facing down, turned to reach
        # across the body, carries its wrist and forearm lower than the object, and they swept a shelf off its
        # place. How low they hang depends on the arm's posture there: found by inverse kinematics.
        above = np.array([tpos[0] + offset[0], tpos[1] + offset[1], max(carry + offset[2], lift[2])])
        ik, qpos = self._ik[self._side], self._commanded_qpos()
        for _ in range(3):
            q = self._reach(qpos, above, rot)
            corners = ik.corners_at(qpos, q, ik.arm_geoms)
            over = np.linalg.norm(corners[:, :2] - tpos[:2], axis=1) < target.asset.horizontal_radius + 0.03
            if not over.any():
                break
            lowest = corners[over, 2].min() - above[2]
            need = tpos[2] + target.asset.top + HAND_CLEARANCE_OVER - lowest
            if above[2] >= need - 1e-3:
                break
            above[2] = need
        return [
            Waypoint(lift, rot, CLOSED, 25),
            Waypoint(above, rot, CLOSED, 35, dwell=6),
            lambda: self._lower_into_container(rot, below, above[2]),
        ]

    def _along_tier(self, obj, obj_rot, target) -> float:
        """The turn about the vertical that lays the object's longer horizontal side along the tier's longer
        side; 0 for objects about as wide as long."""
        tier = np.asarray(target.asset.top_tier.half)
        lengths = obj.asset.half * np.linalg.norm(obj_rot[:2, :], axis=0)    # each axis' horizontal reach
        order = np.argsort(lengths)
        if lengths[order[2]] < ROUND * lengths[order[1]]:
            return 0.0
        axis = obj_rot[:, order[2]]
        trot = self.env.scene.sim.data._data.xmat[target.body_id].reshape(3, 3)
        tier_axis = trot[:, 0] if tier[0] >= tier[1] else trot[:, 1]
        return _wrap_half_pi(np.arctan2(tier_axis[1], tier_axis[0]) - np.arctan2(axis[1], axis[0]))

    def _target_floor(self, target) -> float:
        """The height an object set in the container rests on: its floor, or a tiered one's upper board, read
        off the parts the container is built of."""
        return float(self.env.scene.sim.data._data.xpos[target.body_id][2] + target.asset.surface)

    def _lower_into_container(self, rot, below, height) -> list[Waypoint]:
        """Planned over the container, from where the object hangs in the hand then: a held object slides
        and swings in the fingers while it is lifted and carried (a bell pepper 4 cm), and lowered by the
        offset measured at the grasp it landed on the edge of a tiered shelf's board and fell off."""
        env = self.env
        d = env.scene.sim.data._data
        target = env.scene.bodies["target"]
        tpos = d.xpos[target.body_id]
        obj, obj_rot, center = self._object()
        palm, _ = self._ik[self._side].palm_pose(d.qpos)
        offset = palm - center
        if target.asset.top_tier is not None:
            # Success counts points of the object's bounding box in the tier: a croissant lying across the
            # shelf's depth had most of them outside. Turned about the vertical through the object's centre,
            # its long side lies along the shelf's.
            turn = _rot_z(self._along_tier(obj, obj_rot, target))
            offset = turn @ offset
            rot = turn @ rot
        above = np.array([tpos[0] + offset[0], tpos[1] + offset[1], height])
        release = THUMB_UP if self._kind == "lying" else OPEN
        place = above.copy()
        place[2] = max(self._target_floor(target) + below + 0.03 + offset[2],
                       self._rim_clearing_height(place, palm, target))
        return [
            Waypoint(above, rot, CLOSED, 10),
            Waypoint(place, rot, CLOSED, 20),
            # A palm facing down lets go with the thumb up: turned across the palm, it is under the object, and
            # rising it tipped a croissant off a shelf.
            Waypoint(place, rot, release, 1, hand_first=True, dwell=8),
            # Straight up out of the container: pulled sideways, the open thumb hooked its rim and tipped it over.
            Waypoint(place + np.array([0.0, 0.0, 0.15]), rot, release, 15),
            lambda: self._retreat(rot),
        ]

    def _retreat(self, rot) -> list[Waypoint]:
        """Both hands to rest poses clear of the container and the object, by where they are now: success
        wants both hands 25 cm from each. The idle hand rests about that close to an object on a top tier,
        and the placing hand's own rest pose was 17 cm from a can on a shelf standing near the robot."""
        d = self.env.scene.sim.data._data
        _, _, center = self._object()
        avoid = np.array([center, d.xpos[self.env.scene.bodies["target"].body_id]])
        other = _other_side(self._side)
        return [Waypoint(_clear_rest(self._side, avoid), rot, OPEN, 30),
                Waypoint(_clear_rest(other, avoid), self._rest_rot[other], OPEN, 20, side=other)]

    def _rim_clearing_height(self, place: np.ndarray, palm: np.ndarray, target) -> float:
        """The lowest palm height at `place` at which no part of the hand, as it holds the object now, is below
        the container's rim outside its opening. A hand wider than a deep pot's opening lowered onto its rim
        and tipped it (a cupcake held in the rolled palm): the object then drops the rest of the way."""
        d = self.env.scene.sim.data._data
        corners = self._ik[self._side].hand_corners(d) - palm + place
        tpos, trot = d.xpos[target.body_id], d.xmat[target.body_id].reshape(3, 3)
        region = target.asset.top_tier or target.asset.interior
        local = (corners - tpos) @ trot - np.asarray(region.center)
        # The opening: the ellipse inside the region's footprint, less a margin (round containers are round).
        # (Clamped to the container's bounding box: an interior region may reach past the walls' inner faces.)
        half = np.minimum(region.half[:2], target.asset.half[:2]) - RIM_MARGIN
        outside = np.sum((local[:, :2] / half) ** 2, axis=1) > 1.0
        if not outside.any():
            return -np.inf
        rim = tpos[2] + target.asset.top + RIM_MARGIN
        return place[2] + rim - corners[outside, 2].min()

    def _grasp_pose(self, side: str, asset, center: np.ndarray, obj_rot: np.ndarray, support: float,
                    turn: float = 0.0, down: float | None = None):
        """Palm site position and orientation for a power grasp, the palm normal, and the kind of grasp.

        "side" and "upright": the handshake pose, palm beside the object, approached from the side (tall
        objects) or from above. "rolled" (low objects): the palm rolled towards the table so the fingers reach
        under them. "lying" (elongated produce lying down): the palm facing down with the fingers across the
        long axis, so they close around it. The object's centre sits at the knuckles, so the fingers wrap it.
        A box (a milk carton) is taken with the palm flat against one of its faces.
        """
        half_local = asset.half
        sign = -1.0 if side == "right" else 1.0      # rolling the palm normal towards the table
        yaw, roll, kind = 0.0, 0.0, "side" if 2 * half_local[2] > TALL else "upright"
        long = int(np.argmax(half_local[:2]))                 # the longer horizontal axis
        if half_local[long] > ELONGATED * max(half_local[1 - long], half_local[2]):
            axis = obj_rot[:, long]
            yaw = _wrap_half_pi(np.arctan2(axis[1], axis[0]) + np.pi / 2)
            roll, kind = np.pi / 2, "lying"
        elif 2 * half_local[2] < SHORT:
            roll, kind = SHORT_ROLL, "rolled"
        if down is not None:
            yaw, roll, kind = down, np.pi / 2, "lying"
        if kind in ("side", "upright") and _is_boxy(asset):
            # Palm flat against a face: on a box standing diagonally the fingers close on two edges, and it
            # turns in the hand.
            yaw = _outward_face_yaw(np.arctan2(obj_rot[1, 0], obj_rot[0, 0]), sign)
        elif kind != "lying":
            yaw = turn
        turn = _rot_z(yaw) @ _rot_x(sign * roll)
        rot = turn @ self._rest_rot[side]
        normal = turn @ np.array([0.0, -sign, 0.0])          # palm normal in the world
        along_normal = float(np.abs(obj_rot.T @ normal) @ half_local)
        offset = turn @ np.array([GRASP_FORWARD, -sign * (along_normal + GRASP_SIDE_GAP), GRASP_UP])
        grasp = center - offset
        # An upright palm's lower edge must clear the source's rim; a rolled palm reaches down into the source.
        floor = support if kind in ("side", "upright") else TABLE_Z
        grasp[2] = max(grasp[2], floor + PALM_CLEARANCE)
        if kind == "side":
            grasp[2] = max(grasp[2], center[2] - half_local[2] + SIDE_HOLD)
        return grasp, rot, normal, kind

    def _fixture_interior(self) -> tuple[np.ndarray, np.ndarray]:
        """World centre and half sizes of the fixture's interior (the drawer's, for the drawer)."""
        env = self.env
        d = env.scene.sim.data._data
        frame = interior_frame(env.scene)
        region = env.scene.bodies["fixture"].asset.interior
        return d.xpos[frame] + d.xmat[frame].reshape(3, 3) @ np.asarray(region.center), np.asarray(region.half)

    def _place_in_drawer(self, palm, offset, below, rot) -> list[Waypoint]:
        inside, half = self._fixture_interior()
        floor = inside[2] - half[2]
        above = inside + offset
        above[2] = inside[2] + half[2] + below + 0.08 + offset[2]
        place = inside + offset
        place[2] = floor + below + 0.02 + offset[2]
        lift = palm + np.array([0.0, 0.0, 0.15])
        lift[2] = max(lift[2], above[2])
        return [
            Waypoint(lift, rot, CLOSED, 25),
            Waypoint(above, rot, CLOSED, 30),
            Waypoint(place, rot, CLOSED, 20),
            Waypoint(place, rot, OPEN, 1, hand_first=True, dwell=8),
            Waypoint(above + np.array([0.0, 0.0, 0.05]), rot, OPEN, 20),
        ]

    def _close_drawer(self) -> list[Waypoint]:
        """Push the drawer front shut with the fist, knuckles first."""
        env = self.env
        f = env.scene.bodies["fixture"]
        d = env.scene.sim.data._data
        front = d.xpos[f.moving_body_id]                      # the drawer's front, at mid-height
        closed_front = d.xpos[f.body_id] + np.asarray(f.asset.joint.pos)
        rot = self._rest_rot[self._side]
        start = front + np.array([-FIST_REACH - 0.05, 0.0, 0.02])
        end = closed_front + np.array([-FIST_REACH + 0.015, 0.0, 0.02])
        return [
            Waypoint(start + np.array([0.0, 0.0, 0.1]), rot, FIST, 25, hand_first=True),
            Waypoint(start, rot, FIST, 15),
            Waypoint(end, rot, FIST, 40, dwell=10),
            Waypoint(end + np.array([-0.03, 0.0, 0.0]), rot, FIST, 8),        # off the front first, then up:
            Waypoint(end + np.array([-0.03, 0.0, 0.12]), rot, OPEN, 15),      # never hook the handle
        ]

    def _place_behind_door(self, palm, offset, below, rot) -> list[Waypoint]:
        """Carry the object low through the front opening of a cabinet or microwave, and stand it up inside."""
        inside, half = self._fixture_interior()
        floor = inside[2] - half[2]
        front = inside[0] - half[0]
        place = inside + offset
        place[2] = floor + below + 0.025 + offset[2]
        outside = place.copy()
        outside[0] = front - 0.12 + offset[0]
        lift = palm.copy()
        lift[2] = place[2] + 0.01
        return [
            Waypoint(lift + np.array([0.0, 0.0, 0.02]), rot, CLOSED, 15),
            Waypoint(outside, rot, CLOSED, 25),
            lambda: self._stand_up_inside(inside, floor, outside[0] - offset[0]),
        ]

    def _stand_up_inside(self, inside: np.ndarray, floor: float, outside_x: float) -> list[Waypoint]:
        """Planned outside the opening, from how the object hangs in the hand then: a tall bottle swings in the
        fingers while it is carried (a wine bottle by 20 degrees or more), and let go tilted it fell over in
        the doorway. Turning the hand by the object's tilt stands it upright before it goes in."""
        d = self.env.scene.sim.data._data
        obj, obj_rot, center = self._object()
        palm, palm_rot = self._ik[self._side].palm_pose(d.qpos)
        goal = np.array([inside[0], inside[1], floor + 0.025 + obj.asset.center[2] - obj.asset.bottom])
        tilt = np.arccos(np.clip(obj_rot[2, 2], -1.0, 1.0))
        # Let go on its base past this tilt, it falls over: its centre of mass passes beyond the base's edge.
        com_height = self.env.scene.sim.model._model.body_ipos[obj.body_id][2] - obj.asset.bottom
        tipping = np.arctan2(min(obj.asset.half[:2]), com_height)
        # Turned only where it would fall over: a needless turn costs reach.
        upright = _rotation_onto_z(obj_rot[:, 2]) if tilt > TIP_FRACTION * tipping else np.eye(3)
        place = goal + upright @ (palm - center)
        rot = upright @ palm_rot
        # Turned, the wrist hangs lower: it must clear the fixture's floor (the object then drops a little).
        corners = place + (self._ik[self._side].hand_corners(d) - palm) @ upright.T
        place[2] += max(0.0, floor + RIM_MARGIN - corners[:, 2].min())
        outside = place.copy()
        outside[0] += outside_x - inside[0]
        return [
            Waypoint(outside, rot, CLOSED, 20),
            Waypoint(place, rot, CLOSED, 25),
            Waypoint(place, rot, OPEN, 1, hand_first=True, dwell=8),
            Waypoint(outside + np.array([-0.05, 0.0, 0.0]), rot, OPEN, 25),
        ]

    def _close_door(self) -> list[Waypoint]:
        """Sweep the other hand's fist along the door's arc, pushing its outer face, until it is shut.

        An open door stands between the placing hand and its own outer face (a door opens towards the side
        of the table that the fixture is not on), so the other hand, which is on that side, closes it."""
        env = self.env
        d = env.scene.sim.data._data
        f = env.scene.bodies["fixture"]
        joint = f.asset.joint
        hinge = d.xpos[f.body_id] + np.asarray(joint.pos)
        width = max(p.pos[1] + p.half_extents()[1] for p in joint.parts) if joint.axis[2] > 0 else \
            -min(p.pos[1] - p.half_extents()[1] for p in joint.parts)
        sign = joint.axis[2]                 # +1: hinge on the -y edge, the door runs towards +y when shut
        angle = float(d.qpos[f.joint_qpos_addr])
        side = "left" if self._side == "right" else "right"
        rot = self._rest_rot[side]
        height = hinge[2] + 0.12
        wps = []
        for k, a in enumerate(np.linspace(angle + 0.1, -0.02, 6)):
            along = np.array([-np.sin(a), sign * np.cos(a), 0.0])      # hinge -> free edge
            outward = np.array([-np.cos(a), -sign * np.sin(a), 0.0])   # the outer face's normal
            contact = hinge + 0.7 * width * along + outward * (0.06 if k == 0 else 0.03)
            palm = contact + np.array([0.0, 0.0, height - hinge[2]])
            wps.append(Waypoint(palm, rot, FIST, 30 if k == 0 else 12, hand_first=k == 0, side=side))
        away = Waypoint(HOME[self._side] + np.array([0.0, 0.0, 0.05]), self._rest_rot[self._side], OPEN, 25)
        return [away, Waypoint(wps[0].pos + np.array([-0.05, 0.0, 0.1]), rot, FIST, 20, hand_first=True, side=side)] + \
            wps + [Waypoint(wps[-1].pos + np.array([-0.15, 0.0, 0.05]), rot, OPEN, 20, side=side)]


def _other_side(side: str) -> str:
    return "left" if side == "right" else "right"


# Rest positions to try, nearest to HOME first (per side, y mirrored): outwards, back and up from it.
REST_STEPS = [np.array(v) for v in ((0.0, 0.0, 0.05), (-0.05, -0.1, -0.05), (-0.05, -0.15, 0.05), (-0.1, -0.15, 0.1),
                                    (-0.1, -0.2, -0.05), (-0.1, -0.05, 0.2))]
REST_CLEARANCE = 0.3        # success wants 0.25 m


def _clear_rest(side: str, avoid: np.ndarray) -> np.ndarray:
    """The first rest position (`REST_STEPS` from `HOME`) at least `REST_CLEARANCE` from every point of `avoid`,
    else the one farthest from them."""
    mirror = np.array([1.0, 1.0 if side == "right" else -1.0, 1.0])
    candidates = [HOME[side] + step * mirror for step in REST_STEPS]
    gaps = [np.linalg.norm(avoid - c, axis=1).min() for c in candidates]
    for c, g in zip(candidates, gaps):
        if g >= REST_CLEARANCE:
            return c
    return candidates[int(np.argmax(gaps))]


def _rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _wrap_half_pi(angle: float) -> float:
    """The same line direction, as an angle in [-pi/2, pi/2)."""
    return (angle + np.pi / 2) % np.pi - np.pi / 2


def _outward_face_yaw(angle: float, sign: float) -> float:
    """The hand's yaw that sets the palm flat against a face of a box whose own yaw is `angle`: of the four
    faces, the one reached by turning the fingers outwards (away from the body) by less than a quarter turn.
    Turned to the nearest face instead (inwards when the box stands turned that way), 6 of 16 Milk To
    Microwave Close episodes failed, all with inward turns; turned outwards, all 51 standard trials succeed."""
    return sign * ((sign * angle) % (np.pi / 2))


def _is_boxy(asset) -> bool:
    """Whether the object's bulk is a box (a carton), so that it has flat faces to grasp by."""
    return max((p for p in asset.parts if p.collide), key=lambda p: p.volume()).kind == "box"


def _rotation_onto_z(axis: np.ndarray) -> np.ndarray:
    """The rotation about a horizontal axis that turns the unit vector `axis` onto +z."""
    quat, matrix = np.zeros(4), np.zeros(9)
    mujoco.mju_quatZ2Vec(quat, np.asarray(axis, dtype=float))     # the one from +z onto `axis`
    mujoco.mju_quat2Mat(matrix, quat)
    return matrix.reshape(3, 3).T


def _smooth(a: float) -> float:
    return a * a * (3 - 2 * a)


def _slerp(r0: np.ndarray, r1: np.ndarray, a: float) -> np.ndarray:
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
