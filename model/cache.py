"""An on-disk cache of frozen-encoder features: each frame is encoded once, not once per epoch.

One safetensors file per (dataset, encoder, episode): `<root>/<dataset key>/<encoder id>/episode_000042.safetensors`
holding float16 arrays with one row per frame (DINO: `features` (T, P, D); a VAE's latents the same way, P
the latent grid's positions and D its channels; VLM: `features` (T, L, D) padded and `mask` (T, L)). Files are written to a temporary name and renamed, so a killed encoding job leaves no
half file, and readers slice single frames without loading the episode (`safe_open`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from lda_bench.lerobot import LeRobotDataset


def dataset_key(dataset: LeRobotDataset) -> str:
    """Folder name plus a hash of its absolute path: two datasets with one name do not share features."""
    digest = hashlib.sha1(str(dataset.root.resolve()).encode()).hexdigest()[:8]
    return f"{dataset.root.name}-{digest}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


class FeatureCache:
    """Encoded features by dataset, encoder and episode."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def path(self, dataset: LeRobotDataset, encoder_id: str, episode: int) -> Path:
        return self.root / dataset_key(dataset) / _safe(encoder_id) / f"episode_{episode:06d}.safetensors"

    def has(self, dataset: LeRobotDataset, encoder_id: str, episode: int) -> bool:
        return self.path(dataset, encoder_id, episode).is_file()

    def put(self, dataset: LeRobotDataset, encoder_id: str, episode: int, arrays: dict[str, np.ndarray]) -> Path:
        path = self.path(dataset, encoder_id, episode)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({name: np.ascontiguousarray(value) for name, value in arrays.items()}, str(tmp))
        os.replace(tmp, path)
        return path

    def ensure(self, dataset: LeRobotDataset, encoder_id: str, episode: int,
               encode: Callable[[], dict[str, np.ndarray]]) -> Path:
        """The episode's feature file, encoding it with `encode()` first if it is not cached yet."""
        path = self.path(dataset, encoder_id, episode)
        return path if path.is_file() else self.put(dataset, encoder_id, episode, encode())

    def read(self, dataset: LeRobotDataset, encoder_id: str, episode: int, name: str,
             frames: list[int] | np.ndarray | None = None) -> np.ndarray:
        """Rows `frames` (default all) of one array of a cached episode, as stored (float16 / uint8)."""
        path = self.path(dataset, encoder_id, episode)
        if not path.is_file():
            raise FileNotFoundError(f"no cached {encoder_id} features for episode {episode} of {dataset.root}: "
                                    f"{path} (encode the dataset first)")
        with safe_open(str(path), framework="numpy") as f:
            if frames is None:
                return f.get_tensor(name)
            view = f.get_slice(name)
            return np.stack([view[int(i)] for i in frames])
