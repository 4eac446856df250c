"""A small vision encoder pretrained here, on the benchmark's own frames, to stand in for DINOv3's weights.

The machines this project is built on cannot download DINOv3, and LDA reads the world only through its
frozen patch features. A random tiny ViT tells the network little about where the object is (a tiny LDA
trained on its features barely beats holding the last action), so this module teaches a DINOv3 ViT of our
own size what the simulator knows: from each egoview frame of the demonstrations it regresses the
`observation.environment_state` recorded beside it (`tasks/env.py::ENVIRONMENT_STATE`: the object's position
and heading, its target's position, how far the fixture is open, both hands' positions, all relative to the
robot's base, which carries the camera). The head is one
linear map over all patch tokens, so the patch tokens themselves must say where things are, and those are
what LDA reads. Only the demonstrations' training-split scenes are seen; the simulator state is a training
target here and never an input of any policy.

The result is an ordinary `DINOv3ViTModel` folder (`save_pretrained`) plus `pretrain.json`: `lda-bench train
--dino FOLDER` reads it through the same `DinoEncoder` interface as the real weights. Such an encoder has no
published source, so, like a random one, its weights travel inside every LDA checkpoint trained on it.

    lda-bench encoder pretrain --data DEMOS --out ENCODER [--image-size 96 --steps 3000]
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lda_bench.lerobot import LeRobotDataset, find_datasets
from model.encoders import IMAGENET_MEAN, IMAGENET_STD, as_image_batch

MARKER = "pretrain.json"   # in an encoder folder made here: its settings, statistics and held-out errors


@dataclass
class PretrainConfig:
    image_size: int = 96
    patch_size: int = 16
    hidden: int = 64
    layers: int = 4
    heads: int = 4
    frame_stride: int = 2       # every n-th frame of each episode
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    holdout: float = 0.1        # episodes held out for the errors
    seed: int = 0


def is_pretrained_here(folder: str | Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def resize(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, size, size, 3), resized as `DinoEncoder.encode` resizes."""
    x = F.interpolate(as_image_batch(frames), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def load_frames(paths: list[str | Path], cfg: PretrainConfig, log=print) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Every `frame_stride`-th frame (resized, uint8 N x S x S x 3), its environment state (N x D), the
    episode each comes from (N), and the state's names. Datasets without environment state are refused."""
    from tasks.env import ENVIRONMENT_STATE

    frames, states, episodes = [], [], []
    for path in paths:
        roots = find_datasets(path)
        if not roots:
            raise FileNotFoundError(f"no LeRobot dataset under {path}")
        for root in roots:
            dataset = LeRobotDataset.open(root)
            for index in range(dataset.num_episodes):
                environment = dataset.episode_environment(index)
                if environment is None:
                    raise ValueError(f"{root} episode {index} has no observation.environment_state: record it with "
                                     f"`lda-bench demos generate` (datasets made before it was recorded lack it)")
                if environment.shape[1] != len(ENVIRONMENT_STATE):
                    raise ValueError(f"{root} records {environment.shape[1]} environment values; this version names "
                                     f"{len(ENVIRONMENT_STATE)}: {ENVIRONMENT_STATE}")
                video = resize(dataset.episode_frames(index)[::cfg.frame_stride], cfg.image_size)
                frames.append(video)
                states.append(environment[::cfg.frame_stride][:len(video)].astype(np.float32))
                episodes.append(np.full(len(video), len(episodes)))
            log(f"read {dataset.num_episodes} episodes of {root.name}")
    return np.concatenate(frames), np.concatenate(states), np.concatenate(episodes), list(ENVIRONMENT_STATE)


class StatePredictor(nn.Module):
    """A DINOv3 ViT and one linear map from all its patch tokens to the normalised environment state."""

    def __init__(self, cfg: PretrainConfig, outputs: int):
        super().__init__()
        from transformers import DINOv3ViTConfig, DINOv3ViTModel

        config = DINOv3ViTConfig(hidden_size=cfg.hidden, intermediate_size=4 * cfg.hidden, num_hidden_layers=cfg.layers,
                                 num_attention_heads=cfg.heads, image_size=cfg.image_size, patch_size=cfg.patch_size,
                                 num_register_tokens=4)
        self.vit = DINOv3ViTModel(config)
        self.skip = 1 + config.num_register_tokens
        patches = (cfg.image_size // cfg.patch_size) ** 2
        self.head = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.Flatten(), nn.Linear(patches * cfg.hidden, outputs))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, S, S, 3) -> (N, outputs). The same preprocessing as `DinoEncoder.encode`."""
        x = (images.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
        return self.head(self.vit(pixel_values=x).last_hidden_state[:, self.skip:])


def held_out_errors(model: StatePredictor, frames: np.ndarray, targets: np.ndarray, std: np.ndarray,
                    names: list[str], batch: int = 256) -> dict[str, float]:
    """Mean absolute error per named value in its own units (metres for positions)."""
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(torch.from_numpy(frames[i:i + batch])) for i in range(0, len(frames), batch)])
    model.train()
    error = np.abs(predicted.numpy() - targets).mean(0) * std
    return {name: float(e) for name, e in zip(names, error)}


def pretrain(data: list[str | Path], out: str | Path, cfg: PretrainConfig = PretrainConfig(), log=print) -> dict[str, Any]:
    """Train the encoder and write its folder; returns what `pretrain.json` holds."""
    out = Path(out)
    frames, states, episodes, names = load_frames(data, cfg, log)
    rng = np.random.default_rng(cfg.seed)
    count = int(episodes.max()) + 1
    held = rng.permutation(count)[:max(1, int(round(cfg.holdout * count)))]
    test = np.isin(episodes, held)
    if test.all():
        raise ValueError(f"{count} episode(s) are too few to hold any out; record more demonstrations")
    mean, std = states[~test].mean(0), np.maximum(states[~test].std(0), 1e-3)
    targets = (states - mean) / std
    torch.manual_seed(cfg.seed)
    model = StatePredictor(cfg, len(names))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, cfg.steps // 20)  # then a cosine decay to zero
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + np.cos(np.pi * min(1.0, max(0, s - warmup) / max(1, cfg.steps - warmup))))))
    train_rows = np.flatnonzero(~test)
    # the yardstick: always predicting the training mean
    baseline = {name: float(e) for name, e in zip(names, np.abs(targets[test]).mean(0) * std)}
    log(f"{len(train_rows)} training frames from {count - len(held)} episodes, {int(test.sum())} held out; "
        f"{sum(p.numel() for p in model.vit.parameters()) / 1e6:.2f}M encoder parameters")
    started = time.time()
    for step in range(1, cfg.steps + 1):
        rows = rng.choice(train_rows, cfg.batch_size)
        loss = F.smooth_l1_loss(model(torch.from_numpy(frames[rows])), torch.from_numpy(targets[rows]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == cfg.steps:
            log(f"step {step}/{cfg.steps} loss {loss.item():.4f} ({step * cfg.batch_size / (time.time() - started):.0f} frames/s)")
    errors = held_out_errors(model, frames[test], targets[test], std, names)
    out.mkdir(parents=True, exist_ok=True)
    model.vit.save_pretrained(out)
    summary = {"config": asdict(cfg), "state_names": names, "state_mean": mean.tolist(), "state_std": std.tolist(),
               "train_frames": int(len(train_rows)), "held_out_frames": int(test.sum()),
               "held_out_error": errors, "mean_prediction_error": baseline,
               "data": [str(p) for p in data], "seconds": round(time.time() - started, 1)}
    (out / MARKER).write_text(json.dumps(summary, indent=2))
    width = max(len(n) for n in names)
    log(f"held-out mean absolute error (metres for positions) against always predicting the mean:")
    for name in names:
        log(f"  {name:<{width}}  {errors[name]:.4f}   mean: {baseline[name]:.4f}")
    return summary
