"""Baseline policies that need no model: noise, standing still, and replaying a recorded episode.

They give the benchmark its floor (a learned policy must beat `random` and `hold`) and let the harness be
run end to end without a GPU; `replay` checks that recorded demonstrations still succeed in our scenes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lda_bench.lerobot import LeRobotDataset
from lda_bench.policy import CHUNK_KEYS, current_state, register_policy
from tasks.layout import ACTION_DIMS, ACTION_KEYS, HAND_RANGE

HANDS = ("left_hand", "right_hand")


@register_policy("random", "uniform noise: arms and waist within +-scale rad of the current joints, hands anywhere")
class RandomPolicy:
    """Uniform random targets; the same sequence after every reset, for a given seed."""

    def __init__(self, seed: int = 0, scale: float = 0.1, chunk: int = 8):
        if chunk < 1 or scale < 0:
            raise ValueError(f"random policy needs chunk >= 1 and scale >= 0; got chunk={chunk}, scale={scale}")
        self.seed, self.scale, self.chunk = seed, scale, chunk
        self._rng = np.random.default_rng(seed)

    def reset(self, task: str, instruction: str) -> None:
        self._rng = np.random.default_rng(self.seed)

    def get_action(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        state = current_state(obs)
        chunk = {}
        for part in ACTION_KEYS:
            shape = (self.chunk, ACTION_DIMS[part])
            if part in HANDS:
                chunk[CHUNK_KEYS[part]] = self._rng.uniform(*HAND_RANGE, size=shape)
            else:
                chunk[CHUNK_KEYS[part]] = state[part] + self._rng.uniform(-self.scale, self.scale, size=shape)
        return chunk


@register_policy("hold", "keeps every joint where it is (the do-nothing baseline)")
class HoldPolicy:
    """Targets the current joint positions, one step at a time."""

    def reset(self, task: str, instruction: str) -> None:
        pass

    def get_action(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        return {CHUNK_KEYS[part]: value[None] for part, value in current_state(obs).items()}


@register_policy("replay", "plays back the actions of one episode of a LeRobot v2.1 dataset (GR00T flavour)")
class ReplayPolicy:
    """Steps through one recorded episode, `chunk` frames per call, then holds its last action.

    Only the dataset's action keys that GR1 has (`left_arm`, ...) are replayed; the others hold the
    current joints. It assumes the rollout executes every step of each chunk it receives.
    """

    def __init__(self, dataset: Path, episode: int = 0, chunk: int = 8):
        if chunk < 1:
            raise ValueError(f"replay policy needs chunk >= 1; got {chunk}")
        data = LeRobotDataset.open(dataset)
        matching = [part for part in ACTION_KEYS if part in data.action_slices]
        if not matching:
            raise ValueError(f"{data.root} has action keys {data.action_keys}, none of which GR1 has "
                             f"({', '.join(ACTION_KEYS)}): nothing to replay")
        self.actions = data.episode_actions(episode, matching)
        for part, values in self.actions.items():
            if values.shape[1] != ACTION_DIMS[part]:
                raise ValueError(f"{data.root}: action key {part!r} has {values.shape[1]} values per frame; "
                                 f"GR1's {part} has {ACTION_DIMS[part]}")
        self.num_frames = len(next(iter(self.actions.values())))
        if self.num_frames == 0:
            raise ValueError(f"episode {episode} of {data.root} has no frames")
        self.chunk = chunk
        self._frame = 0

    def reset(self, task: str, instruction: str) -> None:
        self._frame = 0

    def get_action(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        state = current_state(obs)
        frames = np.minimum(np.arange(self._frame, self._frame + self.chunk), self.num_frames - 1)
        self._frame += self.chunk
        return {CHUNK_KEYS[part]: self.actions[part][frames] if part in self.actions
                else np.repeat(state[part][None], self.chunk, axis=0)
                for part in ACTION_KEYS}
