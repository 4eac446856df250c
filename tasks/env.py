"""The Gymnasium face of a task: GR00T's observation and action keys over a `TabletopScene`.

Observations: `video.ego_view` (uint8 HxWx3 from the head camera, by default upstream's `bg_crop_pad` picture
at 256 x 256, with both of upstream's 256-pixel variants under their own keys beside it: `tasks/images.py`),
`state.left_arm` (7), `state.right_arm` (7), `state.left_hand` (6), `state.right_hand` (6), `state.waist` (3)
in radians, and the instruction `annotation.human.coarse_action` with upstream's `unlocked_waist: ` prefix. Actions: a dict of absolute joint targets with the same parts under
`action.*` (29 values), bounded by the joint limits. `info["success"]` is checked every step.
"""

from __future__ import annotations

import atexit
from collections import OrderedDict

import gymnasium as gym
import mujoco
import numpy as np

from tasks import images, success
from tasks.layout import ACTION_DIMS, ACTION_KEYS, HAND_RANGE, LANGUAGE_KEY, ROBOSUITE_SLICES, VIDEO_KEY
from tasks.robot import to_robosuite
from tasks.assets import validate_instances
from tasks.sampling import SceneSample, sample_scene, validate_seed, validate_split
from tasks.scene import EGOVIEW, TabletopScene
from tasks.specs import TaskSpec, get_task

_TEXT_CHARSET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.:_'-"
# Robot parts the head camera never sees; leaving them out of the egoview makes it ~5x cheaper to draw.
_EGOVIEW_PARTS = tuple(f"robot0_{side}_{link}" for side in "rl" for link in ("upper", "lower", "hand")) + (
    "robot0_right", "robot0_left", "gripper0")
_HIDDEN_GROUP = 5
SCENE_REDRAWS = 20
ENVIRONMENT_STATE = ("object_x", "object_y", "object_z", "object_cos_yaw", "object_sin_yaw", "target_x", "target_y",
                     "target_z", "fixture_open", "right_hand_x", "right_hand_y", "right_hand_z", "left_hand_x",
                     "left_hand_y", "left_hand_z")


class GR1TabletopEnv(gym.Env):
    """One RoboCasa-GR1 tabletop task. `reset(seed=s)` gives the same scene in any process.

    `scene_split` picks the stream of scenes seeds index: `eval` (evaluation trials, the default) or `train`
    (demonstrations). `image_variant` is the picture `video.ego_view` holds (`tasks/images.py`);
    `image_size` its size (default 256 for upstream's variants, 224 for `square`). `instances` is the half
    of each object category's instances the novel tasks draw from: `A` (the 24 tasks) or `B` (held out, as
    upstream's EvalPnPNovel...SplitB tasks).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task: str | TaskSpec, image_size: int | tuple[int, int] | None = None,
                 render_mode: str | None = "rgb_array", image_variant: str = images.DEFAULT_VARIANT,
                 scene_split: str = "eval", instances: str = "A"):
        self.spec_ = task if isinstance(task, TaskSpec) else get_task(task)
        self.image_variant = images.validate_variant(image_variant)
        self.image_hw = _image_hw(image_size, image_variant)
        self.scene_split = validate_split(scene_split)
        self.instances = validate_instances(instances)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.scene = TabletopScene(self.spec_, instances=instances)
        self.scene.reset()  # robosuite's own first reset builds controllers; later resets only re-place things
        m = self.scene.sim.model._model
        self._model, self._data = m, self.scene.sim.data._data
        action_qpos = self.scene.control.action_qpos
        self._qpos_index = {part: action_qpos[ROBOSUITE_SLICES[part]] for part in ACTION_KEYS}
        low, high = self._joint_bounds()
        # OrderedDicts keep GR00T's key order (a plain dict would be sorted by gymnasium).
        self.action_space = gym.spaces.Dict(OrderedDict(
            (f"action.{k}", gym.spaces.Box(low[k], high[k], dtype=np.float64)) for k in ACTION_KEYS))
        h, w = self.image_hw
        side = images.DELIVERED
        self.observation_space = gym.spaces.Dict(OrderedDict(
            [(VIDEO_KEY, gym.spaces.Box(0, 255, (h, w, 3), dtype=np.uint8))]
            + [(key, gym.spaces.Box(0, 255, (side, side, 3), dtype=np.uint8))
               for key in (() if image_variant == "square" else images.VARIANT_KEYS.values())]
            + [(f"state.{k}", gym.spaces.Box(low[k] - 0.1, high[k] + 0.1, dtype=np.float64)) for k in ACTION_KEYS]
            + [(LANGUAGE_KEY, gym.spaces.Text(max_length=256, min_length=1, charset=_TEXT_CHARSET))]))
        self._renderer: mujoco.Renderer | None = None
        self._scene_option = mujoco.MjvOption()
        self.sample: SceneSample | None = None
        self.instruction = ""
        self.elapsed_steps = 0

    # ------------------------------------------------------------ spaces and state

    def _joint_bounds(self):
        m = self._model
        qpos_to_joint = {m.jnt_qposadr[j]: j for j in range(m.njnt)}
        low, high = {}, {}
        for part in ACTION_KEYS:
            if part.endswith("hand"):
                low[part], high[part] = np.full(ACTION_DIMS[part], HAND_RANGE[0]), np.full(ACTION_DIMS[part], HAND_RANGE[1])
            else:
                joints = [qpos_to_joint[q] for q in self._qpos_index[part]]
                low[part], high[part] = m.jnt_range[joints, 0].copy(), m.jnt_range[joints, 1].copy()
        return low, high

    def joint_state(self) -> dict[str, np.ndarray]:
        q = self._data.qpos
        return {part: q[self._qpos_index[part]].copy() for part in ACTION_KEYS}

    def environment_state(self) -> np.ndarray:
        """What the simulator knows and the camera should show, for teaching a vision encoder where things are
        (`ENVIRONMENT_STATE` names the 15 values): the task object's position and heading, its target's (the
        container, or the fixture) position, how far the fixture is open (0 for the novel tasks), and where
        the two hands are. Positions are relative to the robot's base, which carries the head camera: the
        novel tasks jitter the base by up to 5 cm, which no egocentric picture shows in world coordinates.
        Never an input of a policy."""
        d = self._data
        obj = self.scene.bodies[self.sample.object_body]
        target = self.scene.bodies["fixture" if self.spec_.fixture else "target"]
        xmat = d.xmat[obj.body_id].reshape(3, 3)
        heading = np.arctan2(xmat[1, 0], xmat[0, 0])
        opening = success.door_state(self.scene) if self.spec_.fixture else 0.0
        base = np.asarray(self.sample.robot_base)
        hands = d.site_xpos[self.scene.hand_site_ids] - base
        return np.concatenate([d.xpos[obj.body_id] - base, [np.cos(heading), np.sin(heading)],
                               d.xpos[target.body_id] - base, [opening], hands[0], hands[1]]).astype(np.float32)

    def _observation(self) -> dict:
        obs = images.deliver(self._render_frame(), self.image_variant, self.image_hw[0])
        obs.update({f"state.{k}": v for k, v in self.joint_state().items()})
        obs[LANGUAGE_KEY] = self.instruction
        return obs

    # ------------------------------------------------------------ gym API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            validate_seed(seed)
        super().reset(seed=seed)
        scene_seed = seed if seed is not None else int(self.np_random.integers(2**31))
        # Upstream lets physics push out whatever its resting hands start inside (a confuser container where a
        # hand hangs is flung aside), and produce dropped onto a rim falls over (users report about 16% of its
        # initial states with a tipped object): here such a scene is drawn again from the seed's side streams.
        for redraw in range(SCENE_REDRAWS):
            self.sample = sample_scene(self.spec_, scene_seed, self.scene_split, self.instances, redraw)
            mujoco.mj_resetData(self._model, self._data)
            if self.scene.apply(self.sample):
                break
        else:
            raise RuntimeError(f"{self.spec_.name} seed {scene_seed}: no scene that starts clear of the robot and "
                               f"settles in place in {SCENE_REDRAWS} draws")
        self.instruction = self.spec_.language(self.sample.object)
        self.elapsed_steps = 0
        scene = {**self.sample.summary(), "arm_offset_scale": self.scene.arm_offset_scale, "redraws": redraw}
        info = {"success": self._success(), "seed": scene_seed, "scene": scene, "instruction": self.instruction}
        return self._observation(), info

    def step(self, action: dict):
        self._apply(action)
        ok = self._success()
        return self._observation(), float(ok), ok, False, {"success": ok}

    def step_chunk(self, chunk: dict[str, np.ndarray], render: bool = True):
        """Execute K actions (arrays of shape (K, dim) per key), checking success after each; stop at the
        first success. Renders once at the end: the cheap way for a harness that queries a policy per chunk.
        Returns (obs, steps taken, success, first success step within the episode or None)."""
        steps = len(next(iter(chunk.values())))
        for i in range(steps):
            self._apply({k: v[i] for k, v in chunk.items()})
            if self._success():
                return self._observation() if render else None, i + 1, True, self.elapsed_steps
        return self._observation() if render else None, steps, False, None

    def _apply(self, action: dict) -> None:
        parts = {}
        for part in ACTION_KEYS:
            value = action.get(f"action.{part}", action.get(part)) if isinstance(action, dict) else None
            if value is None:
                raise KeyError(f"action lacks 'action.{part}'; expected keys {[f'action.{k}' for k in ACTION_KEYS]}")
            value = np.asarray(value, dtype=np.float64).reshape(-1)
            if value.shape != (ACTION_DIMS[part],) or not np.all(np.isfinite(value)):
                raise ValueError(f"'action.{part}' must be {ACTION_DIMS[part]} finite values, got {value!r}")
            space = self.action_space[f"action.{part}"]
            parts[part] = np.clip(value, space.low, space.high)
        self.scene.step(to_robosuite(parts))
        self.elapsed_steps += 1

    def _success(self) -> bool:
        if not success.may_succeed(self.scene, self.sample.object_body):
            return False
        return success.is_success(self.conditions())

    def conditions(self) -> dict[str, bool]:
        """Each success condition on its own (what failed, when an episode fails)."""
        obj_key = self.sample.object_body
        if self.spec_.fixture:
            return success.fixture_conditions(success.measure_fixture(self.scene, obj_key))
        # Upstream's "no distractor in the container" looks at the second object on the source only.
        distractors = [p.body for p in self.sample.distractors if p.role == "distractor_obj"]
        return success.novel_conditions(success.measure_novel(self.scene, obj_key, distractors))

    def render(self) -> np.ndarray:
        """The egoview as `video.ego_view` delivers it."""
        return images.deliver(self._render_frame(), self.image_variant, self.image_hw[0])[VIDEO_KEY]

    def _render_frame(self) -> np.ndarray:
        """One render of the head camera at the size the delivered pictures need."""
        if self._renderer is None:
            self._renderer = self._make_renderer()
        self._renderer.update_scene(self._data, camera=EGOVIEW, scene_option=self._scene_option)
        return self._renderer.render()

    def _make_renderer(self) -> mujoco.Renderer:
        """A fast egoview: no reflections or multisampling, robot parts the head never sees left out."""
        m = self._model
        m.vis.quality.offsamples = 0
        m.mat_reflectance[:] = 0.0
        for g in range(m.ngeom):
            body = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, m.geom_bodyid[g]) or ""
            if body.startswith(("robot0_", "gripper0_", "mobilebase")) and (
                    m.geom_group[g] == 0 or not body.startswith(_EGOVIEW_PARTS)):
                m.geom_group[g] = _HIDDEN_GROUP
        self._scene_option.geomgroup[_HIDDEN_GROUP] = 0
        h, w = images.render_hw(self.image_variant, self.image_hw[0]) if self.image_variant != "square" else self.image_hw
        m.vis.global_.offwidth, m.vis.global_.offheight = max(w, m.vis.global_.offwidth), max(h, m.vis.global_.offheight)
        try:
            renderer = mujoco.Renderer(m, h, w)
        except mujoco.FatalError as e:
            raise RuntimeError(
                f"cannot open an OpenGL context for the egoview ({e}); headless machines need MUJOCO_GL=egl (or "
                f"osmesa) set before mujoco is first imported: import `tasks` first, or export MUJOCO_GL=egl") from e
        atexit.register(renderer.close)  # runs before mujoco's own atexit terminates the EGL display
        for flag in (mujoco.mjtRndFlag.mjRND_SKYBOX, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_HAZE):
            renderer.scene.flags[flag] = 0
        return renderer

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.scene.close()


BACKENDS = ("lda_bench", "robocasa")


def make_env(task: str | TaskSpec, image_size: int | tuple[int, int] | None = None, backend: str = "lda_bench",
             render_mode: str | None = "rgb_array", image_variant: str = images.DEFAULT_VARIANT,
             scene_split: str = "eval", instances: str = "A") -> gym.Env:
    """Build a task with this suite's own scenes (`lda_bench`) or upstream's robocasa package (`robocasa`)."""
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    hw = _image_hw(image_size, images.validate_variant(image_variant))
    if backend == "lda_bench":
        return GR1TabletopEnv(spec, image_size=hw, render_mode=render_mode, image_variant=image_variant,
                              scene_split=scene_split, instances=instances)
    if backend == "robocasa":
        from tasks.upstream import make_upstream_env

        return make_upstream_env(spec, hw, image_variant, scene_split, instances)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _image_hw(image_size, variant: str) -> tuple[int, int]:
    if image_size is None:
        image_size = images.default_size(variant)
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and 16 <= v <= 2048 for v in size):
        raise ValueError(f"image_size must be an int or (height, width) between 16 and 2048 pixels, got {image_size!r}")
    if variant != "square" and size[0] != size[1]:
        raise ValueError(f"the {variant!r} picture is square; give one size, got {image_size!r} (or image_variant='square')")
    return int(size[0]), int(size[1])
