"""Small LDA pieces for the model tests: a tiny network config, random batches, a synthetic dataset, a
checkpoint a policy can act from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.config import LDAConfig, get_config
from model.data import Normalizer
from model.encoders import FRAME_ENCODERS, VLMEncoder
from model.train import checkpoint_payload, save_checkpoint

FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/lerobot_v21_sim_pick_place"


def small_config(**changes) -> LDAConfig:
    """Smaller than `tiny` (hidden 64, 2 layers) so that optimisation tests take a second."""
    return get_config("tiny", hidden=64, layers=2, heads=4, **changes)


def random_batch(config: LDAConfig, size: int = 4, seed: int = 0, vlm_tokens: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    mask = torch.ones(size, vlm_tokens, dtype=torch.bool)
    mask[0, vlm_tokens // 2:] = False  # one padded sequence
    return {
        "obs": randn(size, config.history, config.patches, config.dino_dim),
        "future": randn(size, config.patches, config.dino_dim),
        "actions": randn(size, config.action_chunk, config.action_dim),
        "past_actions": randn(size, config.history, config.action_dim),
        "state": randn(size, config.state_dim),
        "vlm": randn(size, vlm_tokens, config.vlm_dim),
        "vlm_mask": mask,
        "roles": torch.ones(size, 4, dtype=torch.bool),
        "has_actions": torch.ones(size, dtype=torch.bool),
    }


def moved(network, scale: float = 0.05):
    """Every weight off its AdaLN-Zero / zero-head start, so that outputs depend on all of them."""
    with torch.no_grad():
        for p in network.parameters():
            p.add_(scale * torch.randn_like(p))
    return network


def saved_checkpoint(path: Path, config, network) -> Path:
    """A checkpoint of `network` with the tiny encoders its family reads (DINO, or UWM's VAE) and unit
    statistics."""
    normalizer = Normalizer(np.zeros(29, np.float32), np.ones(29, np.float32), np.zeros(config.dino_dim, np.float32),
                            np.ones(config.dino_dim, np.float32))
    return save_checkpoint(path, checkpoint_payload(config, network.state_dict(), normalizer,
                                                    FRAME_ENCODERS[config.frame_encoder].tiny(config.image_size),
                                                    VLMEncoder.tiny(), step=0))
