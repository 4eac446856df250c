"""Small LDA pieces for the model tests: a tiny network config, random batches, a synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import torch

from model.config import LDAConfig, get_config

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
