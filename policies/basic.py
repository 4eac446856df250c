"""Baseline policies that need no model: noise, standing still, and replaying a recorded episode.

They give the benchmark its floor (a learned policy must beat `random` and `hold`) and let the harness be
run end to end without a GPU; `replay` checks that recorded demonstrations still succeed in our scenes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

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


@dataclass(frozen=True)
class ActionSlice:
    """Where one action key lives: `column[start:end]` of each row of an episode's parquet file."""

    column: str
    start: int
    end: int


@dataclass(frozen=True)
class LeRobotDataset:
    """The action side of a LeRobot v2.x dataset in GR00T's flavour.

    GR00T's `meta/modality.json` names each action key's slice of a parquet column (`original_key`,
    default the concatenated `action` column); some datasets instead give every key its own column.
    Both layouts read the same way here.
    """

    root: Path
    info: dict[str, Any]
    action_slices: dict[str, ActionSlice]

    @classmethod
    def open(cls, root: Path | str) -> LeRobotDataset:
        root = Path(root)
        meta = {}
        for name in ("info", "modality"):
            path = root / "meta" / f"{name}.json"
            if not path.is_file():
                raise FileNotFoundError(f"{root} is not a LeRobot dataset in GR00T's flavour: {path} is missing")
            meta[name] = json.loads(path.read_text())
        version = meta["info"].get("codebase_version")
        if version not in ("v2.0", "v2.1"):
            raise ValueError(f"{root}: LeRobot codebase_version {version!r} is not supported (v2.0 or v2.1)")
        slices = {key: ActionSlice(spec.get("original_key", "action"), spec["start"], spec["end"])
                  for key, spec in meta["modality"].get("action", {}).items()}
        return cls(root, meta["info"], slices)

    @property
    def action_keys(self) -> list[str]:
        return list(self.action_slices)

    @property
    def num_episodes(self) -> int:
        return int(self.info["total_episodes"])

    def episode_path(self, episode: int) -> Path:
        if not 0 <= episode < self.num_episodes:
            raise IndexError(f"{self.root} has episodes 0..{self.num_episodes - 1}; asked for {episode}")
        template = self.info.get("data_path", "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet")
        chunk = episode // int(self.info.get("chunks_size", 1000))
        return self.root / template.format(episode_chunk=chunk, episode_index=episode)

    def episode_actions(self, episode: int, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        """The (frames, dim) float64 values of each requested action key (default: all) in one episode."""
        keys = self.action_keys if keys is None else keys
        path = self.episode_path(episode)
        if not path.is_file():
            raise FileNotFoundError(f"episode {episode} of {self.root} is missing: {path}")
        columns = sorted({self.action_slices[key].column for key in keys})
        present = set(pq.read_schema(path).names)
        absent = [column for column in columns if column not in present]
        if absent:
            raise ValueError(f"{path} lacks column(s) {absent} that meta/modality.json names for its actions")
        table = pd.read_parquet(path, columns=columns)
        values = {column: _as_matrix(table[column].to_numpy()) for column in columns}
        actions = {}
        for key in keys:
            where = self.action_slices[key]
            width = values[where.column].shape[1]
            if where.end > width:
                raise ValueError(f"action key {key!r} is [{where.start}:{where.end}] of column {where.column!r}, "
                                 f"which has only {width} values per frame")
            actions[key] = values[where.column][:, where.start:where.end]
        return actions


def _as_matrix(column: np.ndarray) -> np.ndarray:
    """A parquet column of per-frame lists (or scalars) as a (frames, width) float64 array."""
    rows = np.stack(column) if column.dtype == object else column
    return np.asarray(rows, dtype=np.float64).reshape(len(column), -1)


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
