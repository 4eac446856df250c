"""The policy adapter of every model family: a checkpoint written by `lda-bench train` / `finetune` acting
through its policy objective (policies/lda.py, policies/gr00t.py and policies/uwm.py register it under
their names).

A checkpoint records its network (and family), the action and feature statistics, and the encoders it was
trained with (a VLM finetuned with `--unfreeze-vlm` as finetuned). Each call encodes the current egoview,
samples an action chunk in the family's few steps (Euler; UWM's DDIM) and returns the first `execute`
steps of it in absolute radians.

The policy keeps what training conditioned on: the frame features (DINO's; UWM's VAE latents) of its
previous frame (history 2: with `execute` = the config's frame stride, that frame is exactly one stride
back) and the actions it last commanded; at the start of an episode the current frame and joints stand in
for both (a family whose network does not read them, GR00T's or UWM's past actions, is given them all the
same and leaves them unread).
torch is imported when a policy is built, so listing policies stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lda_bench.policy import CHUNK_KEYS, LANGUAGE_KEY, VIDEO_KEY, current_state
from tasks.layout import ACTION_DIMS, ACTION_KEYS


# Below this many weights a CPU action chunk is a few hundred small ops whose cost is per-op overhead: one
# intra-op thread is faster than two (no fork/join per op), and it leaves the other cores to the evaluation
# workers running beside it. Larger networks keep torch's default.
SMALL_NETWORK_PARAMS = 20_000_000


def cpu_threads(model) -> int | None:
    """The intra-op thread count for acting with `model` on the CPU; None keeps torch's default."""
    return 1 if model.num_params() < SMALL_NETWORK_PARAMS else None


class CheckpointPolicy:
    """Acts with a model checkpoint of any family (`family`, `backbone`: what a registered name promises)."""

    family: str | None = None    # None accepts any
    backbone: str | None = None  # LDA's and UWM's: "mmdit" or "dit"; None accepts any

    def __init__(self, checkpoint: Path, execute: int | None = None, steps: int | None = None,
                 device: str = "cpu", seed: int = 0):
        import torch

        from model.data import state_features
        from model.train import load_model

        self._torch, self._state_features = torch, state_features
        self.model, self.normalizer, self.dino, self.vlm = load_model(checkpoint, device)
        config = self.model.config
        if self.family and config.family != self.family:
            raise ValueError(f"{checkpoint} holds a {config.family!r} network ({config.name}); this policy runs "
                             f"{self.family!r} checkpoints")
        if self.backbone and config.backbone != self.backbone:
            raise ValueError(f"{checkpoint} holds a {config.backbone!r} {config.family.upper()} ({config.name}); this "
                             f"policy runs {self.backbone!r} checkpoints")
        self.config, self.device, self.seed = config, torch.device(device), seed
        threads = cpu_threads(self.model) if self.device.type == "cpu" else None
        if threads:
            torch.set_num_threads(threads)
        self.execute = execute or config.execute_steps
        self.steps = steps or config.sample_steps
        if not 1 <= self.execute <= config.action_chunk:
            raise ValueError(f"execute must be 1..{config.action_chunk}; got {self.execute}")
        self.reset("", "")

    def reset(self, task: str, instruction: str) -> None:
        self.instruction = instruction
        self._frames: list[Any] = []          # normalised frame features of the frames seen, newest last
        self._past: np.ndarray | None = None  # the last `history` commanded actions (radians)
        self._generator = self._torch.Generator().manual_seed(self.seed)

    def get_action(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        torch, c = self._torch, self.config
        joints = np.concatenate([current_state(obs)[part] for part in ACTION_KEYS]).astype(np.float32)
        image = np.asarray(obs[VIDEO_KEY])
        instruction = str(obs.get(LANGUAGE_KEY) or self.instruction)
        with torch.inference_mode():
            frame = self.dino.encode(image[None])[0].cpu().numpy()
            frame = torch.from_numpy(self.normalizer.visual(frame))
            self._frames = ((self._frames or [frame] * (c.history - 1)) + [frame])[-c.history:]
            vlm, mask = self.vlm.encode(image[None], [instruction])
            past = self._past if self._past is not None else np.repeat(joints[None], c.history, axis=0)
            to = lambda a: torch.as_tensor(np.asarray(a, np.float32))[None].to(self.device)  # noqa: E731
            noise = torch.randn(1, c.action_chunk, c.action_dim, generator=self._generator).to(self.device)
            chunk = self.model.sample(0, obs=torch.stack(self._frames)[None].to(self.device),
                                      past_actions=to(self.normalizer.actions(past)),
                                      state=to(self._state_features(joints)), vlm=vlm, vlm_mask=mask,
                                      steps=self.steps, noise=noise)
        actions = self.normalizer.unactions(chunk[0].float().cpu().numpy())[:self.execute]
        self._past = np.concatenate([past, actions])[-c.history:]
        out, start = {}, 0
        for part in ACTION_KEYS:
            out[CHUNK_KEYS[part]] = actions[:, start:start + ACTION_DIMS[part]].astype(np.float64)
            start += ACTION_DIMS[part]
        return out
