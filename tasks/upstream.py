"""Optional backend: the same task IDs built by upstream's robocasa GR1 tabletop package, when installed.

Upstream is not on the package index and downloads about 5 GB of assets, so it is never a dependency.
When `robocasa` (robocasa/robocasa-gr1-tabletop-tasks) is importable, `make_upstream_env` builds the
upstream environment and presents it with this suite's interface: the same observation keys, the egoview
resized to the requested size, the instruction, and `info["success"]` as a bool.
"""

from __future__ import annotations

import importlib

import gymnasium as gym
import numpy as np

from tasks.images import VARIANT_KEYS
from tasks.specs import TaskSpec

INSTALL_HINT = (
    "the 'robocasa' backend needs upstream's robocasa GR1 tabletop package, which is not on the package index: "
    "clone robocasa/robocasa-gr1-tabletop-tasks, `pip install -e .` inside it, then run its "
    "`python robocasa/scripts/download_tabletop_assets.py -y` (about 5 GB). Or use backend='lda_bench' "
    "(the default), which ships its own assets.")


class UpstreamUnavailable(ImportError):
    pass


def make_upstream_env(spec: TaskSpec, image_size: tuple[int, int], image_variant: str = "bg_crop_pad",
                      scene_split: str = "eval", instances: str = "A") -> gym.Env:
    if image_variant not in VARIANT_KEYS or scene_split != "eval" or instances != "A":
        raise ValueError(f"the 'robocasa' backend delivers upstream's own scenes and pictures: image_variant one of "
                         f"{tuple(VARIANT_KEYS)}, scene_split 'eval' and instances 'A' (got {image_variant!r}, "
                         f"{scene_split!r}, {instances!r})")
    try:
        importlib.import_module("robocasa")
        importlib.import_module("robocasa.utils.gym_utils")  # registers the gr1_unified/* IDs
    except ImportError as e:
        raise UpstreamUnavailable(f"{INSTALL_HINT} (import failed: {e})") from e
    return UpstreamAdapter(gym.make(spec.upstream_gym_id), spec, image_size, image_variant)


class UpstreamAdapter(gym.Wrapper):
    """Upstream observations -> this suite's keys; upstream's success list -> one bool."""

    scene_split, instances = "eval", "A"     # what a rollout records: upstream's own scenes

    def __init__(self, env: gym.Env, spec: TaskSpec, image_size: tuple[int, int], image_variant: str = "bg_crop_pad"):
        super().__init__(env)
        self.task_spec, self.image_hw, self.image_variant = spec, image_size, image_variant

    def _convert(self, obs: dict) -> dict:
        from PIL import Image

        video_key = VARIANT_KEYS[self.image_variant]
        if video_key not in obs:
            raise KeyError(f"upstream observation has no {video_key!r}; keys: {sorted(obs)}")
        frame = np.asarray(obs[video_key])
        frame = frame[-1] if frame.ndim == 4 else frame
        h, w = self.image_hw
        out = {"video.ego_view": np.asarray(Image.fromarray(frame.astype(np.uint8)).resize((w, h)))}
        out.update({k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in obs.items() if k.startswith("state.")})
        language = next((v for k, v in obs.items() if k.startswith("annotation.")), "")
        out["annotation.human.coarse_action"] = str(language[0] if isinstance(language, (list, tuple)) else language)
        return out

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._convert(obs), {**info, "success": _any_success(info)}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        ok = _any_success(info)
        return self._convert(obs), reward, terminated or ok, truncated, {**info, "success": ok}


def _any_success(info: dict) -> bool:
    value = info.get("success", False)
    return bool(np.any(value))
