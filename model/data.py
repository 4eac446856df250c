"""Training samples for LDA and the baselines, cut from LeRobot episodes and cached encoder features.

The frame features are those of the family's frame encoder (`ModelConfig.frame_encoder`): DINO patch
features, or for UWM the VAE's latents; "dino" below names whichever it is.

A sample is anchored at frame t of an episode (see model/config.py for the rates):
history frames t - (H-1)*stride .. t, the future frame t + future_offset, the action chunk a[t : t+K],
the past actions a[t-H : t], the state at t as sin/cos of its joints, and the VLM tokens of frame t with
the episode's instruction. Indices past either end of the episode are clamped: the robot holds its last
target after the end, and the first frame stands in for frames before the start. In a relative action
space (`ModelConfig.action_space`) the chunk is taken relative to `action_reference`, a[t-1] (at t = 0 the
joints, as the policy has them); past actions and state stay absolute.

When the VLM trains (finetuning with it unfrozen), its tokens change with every step, so a sample carries
what the VLM reads in their place, the frame and the instruction, for the training step to encode.

Every episode has a data role (universal data ingestion): `high` quality trains all four objectives, `low`
quality all but the policy, action-free `video` only visual forecasting. The role travels with the sample
as a mask over the objectives, which the model's loss honours.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lda_bench.lerobot import LeRobotDataset, find_datasets
from model.cache import FeatureCache
from model.config import FORECAST, OBJECTIVES, POLICY, LDAConfig
from tasks.layout import ACTION_KEYS

ROLES = {
    "high": np.ones(len(OBJECTIVES), dtype=bool),
    "low": np.array([k != POLICY for k in range(len(OBJECTIVES))]),
    "video": np.array([k == FORECAST for k in range(len(OBJECTIVES))]),
}
VIEW = "ego_view"


@dataclass
class Episode:
    """One episode's low-dimensional data, held in memory (features stay on disk)."""

    dataset: LeRobotDataset
    index: int
    length: int
    quality: str
    instruction: str
    actions: np.ndarray | None  # (T, A) float32, None for action-free video
    joints: np.ndarray | None   # (T, J) float32 joint positions, None for action-free video


def state_features(joints: np.ndarray) -> np.ndarray:
    """Joint positions (..., J) -> (..., 2J) [sin, cos]: angles without the wrap-around at +-pi."""
    return np.concatenate([np.sin(joints), np.cos(joints)], axis=-1).astype(np.float32)


def load_episodes(paths: list[Path | str], action_keys: tuple[str, ...] = ACTION_KEYS,
                  state_keys: tuple[str, ...] | None = None) -> list[Episode]:
    """Every episode under the given dataset folders (GR00T's per-task folder layout included)."""
    state_keys = action_keys if state_keys is None else state_keys
    episodes = []
    for path in paths:
        for root in find_datasets(path):
            dataset = LeRobotDataset.open(root)
            for index in range(dataset.num_episodes):
                quality = dataset.quality(index)
                actions = joints = None
                if quality != "video":
                    parts = dataset.episode_actions(index, list(action_keys))
                    actions = np.concatenate([parts[k] for k in action_keys], axis=1).astype(np.float32)
                    parts = dataset.episode_states(index, list(state_keys))
                    joints = np.concatenate([parts[k] for k in state_keys], axis=1).astype(np.float32)
                length = len(actions) if actions is not None else dataset.episode_length(index)
                episodes.append(Episode(dataset, index, length, quality, dataset.instruction(index), actions, joints))
    return episodes


def split_episodes(episodes: list[Episode], holdout: float, seed: int = 0) -> tuple[list[Episode], list[Episode]]:
    """Hold out a fraction of the episodes that carry actions (for action errors), chosen by seed."""
    order = list(range(len(episodes)))
    random.Random(seed).shuffle(order)
    acting = [i for i in order if episodes[i].actions is not None]
    held = set(acting[:int(round(holdout * len(acting)))])
    return [e for i, e in enumerate(episodes) if i not in held], [e for i, e in enumerate(episodes) if i in held]


def action_reference(episode: Episode, t: int | np.ndarray) -> np.ndarray:
    """The absolute action a relative chunk anchored at t is relative to: the last action commanded before
    t, a[t-1]; at the episode's start, where none has been commanded yet, the joints at t = 0, which is what
    the policy has in its place at its first call (policies/checkpoint.py). Takes one anchor or an array."""
    t = np.asarray(t)
    return np.where((t > 0)[..., None], episode.actions[np.maximum(t - 1, 0)], episode.joints[0])


@dataclass
class Normalizer:
    """Per-dimension statistics of the actions and of the DINO features; kept in every checkpoint.

    `relative_std` is set for a network that generates relative action chunks (`ModelConfig.action_space`):
    the per-dimension scale of a chunk's steps minus their reference (`action_reference`). `chunk` and
    `unchunk` map a chunk between absolute radians and the network's space, whichever it is."""

    action_mean: np.ndarray
    action_std: np.ndarray
    visual_mean: np.ndarray
    visual_std: np.ndarray
    relative_std: np.ndarray | None = None

    @classmethod
    def fit(cls, episodes: list[Episode], visual: np.ndarray, action_keys: tuple[str, ...] = ACTION_KEYS,
            relative_chunk: int | None = None) -> Normalizer:
        """Action statistics from meta/stats.json when every dataset has them, else from the episodes;
        visual statistics from a sample of cached features (N, D); with `relative_chunk` (the chunk length of
        a relative action space), the relative chunks' scale from the episodes."""
        mean, std = _stats_json(episodes, action_keys)
        if mean is None:
            actions = np.concatenate([e.actions for e in episodes if e.actions is not None])
            mean, std = actions.mean(0), actions.std(0)
        relative = None if relative_chunk is None else np.maximum(_relative_scale(episodes, relative_chunk), 1e-3)
        return cls(np.asarray(mean, np.float32), np.maximum(np.asarray(std, np.float32), 1e-3),
                   visual.mean(0).astype(np.float32), np.maximum(visual.std(0), 1e-3).astype(np.float32), relative)

    def to_dict(self) -> dict[str, list[float]]:
        keys = ("action_mean", "action_std", "visual_mean", "visual_std") + (("relative_std",) if self.relative else ())
        return {k: getattr(self, k).tolist() for k in keys}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Normalizer:
        """Checkpoints from before relative action spaces hold no `relative_std`: they are absolute."""
        return cls(**{k: np.asarray(v, np.float32) for k, v in values.items()})

    @property
    def relative(self) -> bool:
        return self.relative_std is not None

    def check(self, config: LDAConfig) -> None:
        """Raise unless these statistics serve the action space of `config`."""
        if self.relative != config.relative:
            raise ValueError(f"{config.name} generates {config.action_space} action chunks, but the normaliser "
                             f"{'has' if self.relative else 'lacks'} relative statistics (relative_std)")

    def actions(self, a: np.ndarray) -> np.ndarray:
        return (a - self.action_mean) / self.action_std

    def unactions(self, a: np.ndarray) -> np.ndarray:
        return a * self.action_std + self.action_mean

    def chunk(self, a: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Absolute chunks (..., K, A) -> the network's space; `reference` (..., A): their `action_reference`."""
        if not self.relative:
            return self.actions(a)
        return (a - reference[..., None, :]) / self.relative_std

    def unchunk(self, x: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """The network's chunks (..., K, A) -> absolute radians; the inverse of `chunk`."""
        if not self.relative:
            return self.unactions(x)
        return x * self.relative_std + reference[..., None, :]

    @property
    def chunk_std(self) -> np.ndarray:
        """Radians per unit of the network's chunk, per dimension."""
        return self.relative_std if self.relative else self.action_std

    def visual(self, f: np.ndarray) -> np.ndarray:
        return (f - self.visual_mean) / self.visual_std


def _relative_scale(episodes: list[Episode], chunk: int) -> np.ndarray:
    """Root mean square, per dimension, of a chunk's steps minus their reference over every anchor of every
    episode with actions. Not the std about their mean: zero, holding still, is what the network's space
    centres on, so the scale is taken about it."""
    squares, count = 0.0, 0
    for e in episodes:
        if e.actions is None:
            continue
        t = np.arange(e.length)
        steps = e.actions[np.minimum(t[:, None] + np.arange(chunk), e.length - 1)]
        squares = squares + ((steps - action_reference(e, t)[:, None]).astype(np.float64) ** 2).sum((0, 1))
        count += steps.shape[0] * steps.shape[1]
    return np.sqrt(squares / count).astype(np.float32)


def _stats_json(episodes: list[Episode], keys: tuple[str, ...]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Pool the per-key mean/std of meta/stats.json over datasets, weighted by their frame counts."""
    datasets = {id(e.dataset): e.dataset for e in episodes if e.actions is not None}
    means, variances, weights = [], [], []
    for dataset in datasets.values():
        parts = [dataset.key_stats("action", key) for key in keys]
        if any(p is None or "mean" not in p or "std" not in p for p in parts):
            return None, None
        means.append(np.concatenate([p["mean"] for p in parts]))
        variances.append(np.concatenate([p["std"] for p in parts]) ** 2)
        weights.append(float(dataset.info.get("total_frames", 1)))
    if not means:
        return None, None
    w = np.asarray(weights)[:, None] / sum(weights)
    mean = (w * np.stack(means)).sum(0)
    var = (w * (np.stack(variances) + (np.stack(means) - mean) ** 2)).sum(0)
    return mean, np.sqrt(var)


def vlm_cache_id(vlm_id: str, stride: int) -> str:
    return f"{vlm_id}@every{stride}"


def vlm_frames_id(view: str, stride: int) -> str:
    """Names the cached frames a live VLM reads: raw data, the same whatever the encoder's weights."""
    return f"frames:{view}@every{stride}"


def encode_episodes(episodes: list[Episode], cache: FeatureCache, dino, vlm, vlm_stride: int = 1, batch: int = 32,
                    view: str = VIEW, log=print) -> None:
    """Encode each episode not yet in the cache, once: frame features (`dino`: DINO's, or UWM's VAE latents)
    of every frame, VLM tokens of every
    `vlm_stride`-th frame. With `vlm` None (the VLM trains, so its tokens are encoded live in each step),
    those frames themselves are cached, for the samples to carry."""
    # named once: a random or finetuned encoder's id hashes all its weights
    dino_id = dino.encoder_id
    vlm_id = vlm_cache_id(vlm.encoder_id, vlm_stride) if vlm is not None else vlm_frames_id(view, vlm_stride)
    todo = [e for e in episodes if not (cache.has(e.dataset, dino_id, e.index)
                                        and cache.has(e.dataset, vlm_id, e.index))]
    for n, episode in enumerate(todo):
        frames = episode.dataset.episode_frames(episode.index, view)
        with torch.no_grad():
            cache.ensure(episode.dataset, dino_id, episode.index, lambda: {"features": np.concatenate(
                [dino.encode(frames[i:i + batch]).cpu().numpy() for i in range(0, len(frames), batch)]
            ).astype(np.float16)})
            cache.ensure(episode.dataset, vlm_id, episode.index,
                         lambda: _vlm_arrays(vlm, frames[::vlm_stride], episode.instruction, batch) if vlm is not None
                         else {"frames": frames[::vlm_stride]})
        if log and (n + 1) % 50 == 0:
            log(f"encoded {n + 1}/{len(todo)} episodes")


def _vlm_arrays(vlm, frames: np.ndarray, instruction: str, batch: int) -> dict[str, np.ndarray]:
    tokens, masks = [], []
    for i in range(0, len(frames), batch):
        t, m = vlm.encode(frames[i:i + batch], [instruction] * len(frames[i:i + batch]))
        tokens.append(t.cpu().numpy())
        masks.append(m.cpu().numpy())
    width = max(t.shape[1] for t in tokens)
    pad = lambda a: np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2))  # noqa: E731
    return {"features": np.concatenate([pad(t) for t in tokens]).astype(np.float16),
            "mask": np.concatenate([pad(m) for m in masks]).astype(np.uint8)}


def sample_frames(config: LDAConfig, t: int, length: int) -> dict[str, np.ndarray]:
    """The frame indices one sample anchored at t reads, clamped to the episode (shared with the policy)."""
    last = length - 1
    return {
        "history": np.clip([t - (config.history - 1 - i) * config.frame_stride for i in range(config.history)], 0, last),
        "future": np.array([min(t + config.future_offset, last)]),
        "chunk": np.clip(np.arange(t, t + config.action_chunk), 0, last),
        "past": np.clip(np.arange(t - config.history, t), 0, last),
    }


class LDASamples(Dataset):
    """Every frame of every episode as an anchor; features are read from the cache on demand.

    With `vlm_id` None the VLM is encoded live: a sample carries the cached frame it reads (`vlm_image`)
    and the instruction, the very inputs its cached tokens would have been encoded from."""

    def __init__(self, episodes: list[Episode], config: LDAConfig, cache: FeatureCache, dino_id: str,
                 vlm_id: str | None, normalizer: Normalizer, view: str = VIEW):
        normalizer.check(config)
        self.episodes, self.config, self.cache, self.dino_id, self.normalizer = episodes, config, cache, dino_id, normalizer
        self.vlm_id = vlm_cache_id(vlm_id, config.vlm_stride) if vlm_id is not None else None
        self.frames_id = vlm_frames_id(view, config.vlm_stride)
        self.index = [(e, t) for e in range(len(episodes)) for t in range(episodes[e].length)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        c = self.config
        e, t = self.index[i]
        episode = self.episodes[e]
        at = sample_frames(c, t, episode.length)
        visual = self.cache.read(episode.dataset, self.dino_id, episode.index, "features",
                                 np.concatenate([at["history"], at["future"]])).astype(np.float32)
        visual = self.normalizer.visual(visual)
        row = [t // c.vlm_stride]  # the latest frame whose VLM tokens were encoded
        if self.vlm_id is not None:
            vlm = self.cache.read(episode.dataset, self.vlm_id, episode.index, "features", row)[0]
            mask = self.cache.read(episode.dataset, self.vlm_id, episode.index, "mask", row)[0].astype(bool)
            language = {"vlm": torch.from_numpy(vlm[mask].astype(np.float32))}
        else:
            image = self.cache.read(episode.dataset, self.frames_id, episode.index, "frames", row)[0]
            language = {"vlm_image": torch.from_numpy(image), "instruction": episode.instruction}
        if episode.actions is not None:
            actions = self.normalizer.chunk(episode.actions[at["chunk"]], action_reference(episode, t))
            past = self.normalizer.actions(episode.actions[at["past"]])
            state = state_features(episode.joints[t])
        else:
            actions = np.zeros((c.action_chunk, c.action_dim), np.float32)
            past = np.zeros((c.history, c.action_dim), np.float32)
            state = np.zeros(c.state_dim, np.float32)
        return {
            "obs": torch.from_numpy(visual[:-1]), "future": torch.from_numpy(visual[-1]),
            "actions": torch.from_numpy(np.asarray(actions, np.float32)),
            "past_actions": torch.from_numpy(np.asarray(past, np.float32)),
            "state": torch.from_numpy(state),
            **language,
            "roles": torch.from_numpy(ROLES[episode.quality].copy()),
            "has_actions": torch.tensor(episode.actions is not None),
        }


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples; cached VLM token sequences are right-padded to the longest, with a mask; the
    instructions of a live VLM stay a list of strings."""
    batch = {key: torch.stack([s[key] for s in samples]) for key in samples[0] if key not in ("vlm", "instruction")}
    if "instruction" in samples[0]:
        batch["instruction"] = [s["instruction"] for s in samples]
    if "vlm" in samples[0]:
        width = max(s["vlm"].shape[0] for s in samples)
        batch["vlm"] = torch.stack([torch.nn.functional.pad(s["vlm"], (0, 0, 0, width - s["vlm"].shape[0]))
                                    for s in samples])
        batch["vlm_mask"] = torch.stack([torch.arange(width) < s["vlm"].shape[0] for s in samples])
    return batch


def visual_sample(episodes: list[Episode], cache: FeatureCache, dino_id: str, per_episode: int = 4,
                  limit: int = 256, seed: int = 0) -> np.ndarray:
    """A few frames' DINO features from up to `limit` episodes, flattened to (N, D), to fit the normaliser."""
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(episodes))[:limit]
    rows = []
    for i in chosen:
        e = episodes[i]
        frames = np.sort(rng.choice(e.length, size=min(per_episode, e.length), replace=False))
        rows.append(cache.read(e.dataset, dino_id, e.index, "features", frames).astype(np.float32))
    stacked = np.concatenate(rows)
    return stacked.reshape(-1, stacked.shape[-1])
