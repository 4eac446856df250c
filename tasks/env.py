"""The Gymnasium face of a task: GR00T's observation and action keys over a `TabletopScene`.

Observations: `video.ego_view` (uint8 HxWx3 from the head camera), `state.left_arm` (7), `state.right_arm`
(7), `state.left_hand` (6), `state.right_hand` (6), `state.waist` (3) in radians, and the instruction
`annotation.human.coarse_action`. Actions: a dict of absolute joint targets with the same parts under
`action.*` (29 values), bounded by the joint limits. `info["success"]` is checked every step.
"""

from __future__ import annotations

import atexit
from collections import OrderedDict

import gymnasium as gym
import mujoco
import numpy as np

from tasks import success
from tasks.layout import ACTION_DIMS, ACTION_KEYS, HAND_RANGE, LANGUAGE_KEY, ROBOSUITE_SLICES, VIDEO_KEY
from tasks.robot import to_robosuite
from tasks.sampling import SceneSample, sample_scene, validate_seed
from tasks.scene import EGOVIEW, TabletopScene
from tasks.specs import TaskSpec, get_task

_TEXT_CHARSET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.'-"
# Robot parts the head camera never sees; leaving them out of the egoview makes it ~5x cheaper to draw.
_EGOVIEW_PARTS = tuple(f"robot0_{side}_{link}" for side in "rl" for link in ("upper", "lower", "hand")) + (
    "robot0_right", "robot0_left", "gripper0")
_HIDDEN_GROUP = 5


class GR1TabletopEnv(gym.Env):
    """One RoboCasa-GR1 tabletop task. `reset(seed=s)` gives the same scene in any process."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task: str | TaskSpec, image_size: int | tuple[int, int] = 224, render_mode: str | None = "rgb_array"):
        self.spec_ = task if isinstance(task, TaskSpec) else get_task(task)
        self.image_hw = _image_hw(image_size)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.scene = TabletopScene(self.spec_)
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
        self.observation_space = gym.spaces.Dict(OrderedDict(
            [(VIDEO_KEY, gym.spaces.Box(0, 255, (h, w, 3), dtype=np.uint8))]
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

    def _observation(self, image: np.ndarray | None = None) -> dict:
        obs = {VIDEO_KEY: self.render() if image is None else image}
        obs.update({f"state.{k}": v for k, v in self.joint_state().items()})
        obs[LANGUAGE_KEY] = self.instruction
        return obs

    # ------------------------------------------------------------ gym API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            validate_seed(seed)
        super().reset(seed=seed)
        scene_seed = seed if seed is not None else int(self.np_random.integers(2**31))
        self.sample = sample_scene(self.spec_, scene_seed)
        mujoco.mj_resetData(self._model, self._data)
        self.scene.apply(self.sample)
        self.instruction = self.spec_.instruction(self.sample.object)
        self.elapsed_steps = 0
        scene = {**self.sample.summary(), "arm_offset_scale": self.scene.arm_offset_scale}
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
        if not success.may_succeed(self.scene, f"obj_{self.sample.object}"):
            return False
        return success.is_success(self.conditions())

    def conditions(self) -> dict[str, bool]:
        """Each success condition on its own (what failed, when an episode fails)."""
        obj_key = f"obj_{self.sample.object}"
        if self.spec_.fixture:
            return success.fixture_conditions(success.measure_fixture(self.scene, obj_key))
        distractors = [f"distractor_{name}" for name, _ in self.sample.distractors]
        return success.novel_conditions(success.measure_novel(self.scene, obj_key, distractors))

    def render(self) -> np.ndarray:
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
        h, w = self.image_hw
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


def make_env(task: str | TaskSpec, image_size: int | tuple[int, int] = 224, backend: str = "lda_bench",
             render_mode: str | None = "rgb_array") -> gym.Env:
    """Build a task with this suite's own scenes (`lda_bench`) or upstream's robocasa package (`robocasa`)."""
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    hw = _image_hw(image_size)
    if backend == "lda_bench":
        return GR1TabletopEnv(spec, image_size=hw, render_mode=render_mode)
    if backend == "robocasa":
        from tasks.upstream import make_upstream_env

        return make_upstream_env(spec, hw)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _image_hw(image_size) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and 16 <= v <= 2048 for v in size):
        raise ValueError(f"image_size must be an int or (height, width) between 16 and 2048 pixels, got {image_size!r}")
    return int(size[0]), int(size[1])
