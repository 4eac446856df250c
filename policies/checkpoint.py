"""The policy adapter of every model family: a checkpoint written by `lda-bench train` / `finetune` acting
through its policy objective (policies/lda.py, policies/gr00t.py and policies/uwm.py register it under
their names).

A checkpoint records its network (and family), the action and feature statistics, and the encoders it was
trained with (a VLM finetuned with `--unfreeze-vlm` as finetuned). Each call encodes the current egoview,
samples an action chunk in the family's few steps (Euler; UWM's DDIM) and returns the first `execute`
steps of it in absolute radians: a network of a relative action space (`ModelConfig.action_space`) has
each environment's last commanded action (at its first call its joints) added back, the very reference
its training chunks were taken relative to (model/data.py, `action_reference`).

The policy keeps what training conditioned on: the frame features (DINO's; UWM's VAE latents) of its
previous frame (history 2: with `execute` = the config's frame stride, that frame is exactly one stride
back) and the actions it last commanded; at the start of an episode the current frame and joints stand in
for both (a family whose network does not read them, GR00T's or UWM's past actions, is given them all the
same and leaves them unread).

One policy acts for many environments at once (`get_action_batch`, the `BatchPolicy` protocol): one
encoder and network forward for the whole batch, while each environment keeps its own history and its own
noise generator, seeded at its reset. An environment's actions are thus those it would get acting alone.
torch is imported when a policy is built, so listing policies stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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

    def reset(self, task: str, instruction: str, env_ids: Sequence[int] | None = None) -> None:
        """Start a new episode in the environments `env_ids` (default: in every one)."""
        if env_ids is None:
            self.instruction = instruction  # what an environment first seen later falls back on
            self._envs: dict[int, EnvironmentHistory] = {}
        for env_id in env_ids or ():
            self._envs[env_id] = self._fresh(instruction)

    def get_action(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        return self.get_action_batch([obs], [0])[0]

    def get_action_batch(self, observations: Sequence[dict[str, Any]],
                         env_ids: Sequence[int]) -> list[dict[str, np.ndarray]]:
        """Action chunks for the environments `env_ids`, one observation each, in one forward."""
        if len(observations) != len(env_ids) or len(set(env_ids)) != len(env_ids):
            raise ValueError(f"need one observation per distinct environment; got {len(observations)} "
                             f"observation(s) for environments {list(env_ids)}")
        torch, c = self._torch, self.config
        for env_id in env_ids:
            if env_id not in self._envs:  # first seen without a reset of its own
                self._envs[env_id] = self._fresh(self.instruction)
        envs = [self._envs[env_id] for env_id in env_ids]
        joints = np.stack([np.concatenate([current_state(obs)[part] for part in ACTION_KEYS])
                           for obs in observations]).astype(np.float32)
        images = np.stack([np.asarray(obs[VIDEO_KEY]) for obs in observations])
        instructions = [str(obs.get(LANGUAGE_KEY) or env.instruction) for obs, env in zip(observations, envs)]
        with torch.inference_mode():
            frames = torch.from_numpy(self.normalizer.visual(self.dino.encode(images).cpu().numpy()))
            for env, frame in zip(envs, frames):
                env.frames = ((env.frames or [frame] * (c.history - 1)) + [frame])[-c.history:]
            vlm, mask = self.vlm.encode(images, instructions)
            past = np.stack([env.past if env.past is not None else np.repeat(state[None], c.history, axis=0)
                             for env, state in zip(envs, joints)])
            to = lambda a: torch.as_tensor(np.asarray(a, np.float32)).to(self.device)  # noqa: E731
            noise = torch.cat([torch.randn(1, c.action_chunk, c.action_dim, generator=env.generator)
                               for env in envs]).to(self.device)
            chunks = self.model.sample(0, obs=torch.stack([torch.stack(env.frames) for env in envs]).to(self.device),
                                       past_actions=to(self.normalizer.actions(past)),
                                       state=to(self._state_features(joints)), vlm=vlm, vlm_mask=mask,
                                       steps=self.steps, noise=noise)
        # past[:, -1]: each environment's last commanded action, or at its first call its joints
        actions = self.normalizer.unchunk(chunks.float().cpu().numpy(), past[:, -1])[:, :self.execute]
        answers = []
        for env, env_past, env_actions in zip(envs, past, actions):
            env.past = np.concatenate([env_past, env_actions])[-c.history:]
            answers.append(_chunk(env_actions))
        return answers

    def _fresh(self, instruction: str) -> EnvironmentHistory:
        return EnvironmentHistory(instruction, self._torch.Generator().manual_seed(self.seed))


@dataclass
class EnvironmentHistory:
    """What one environment's episode has given the policy so far, and its own noise generator."""

    instruction: str
    generator: Any                   # torch.Generator, seeded with the policy's seed at the reset
    frames: list[Any] | None = None  # normalised frame features of the frames seen, newest last
    past: np.ndarray | None = None   # the last `history` commanded actions (radians)


def _chunk(actions: np.ndarray) -> dict[str, np.ndarray]:
    """(K, 29) actions in GR00T's key order -> an action chunk by key."""
    out, start = {}, 0
    for part in ACTION_KEYS:
        out[CHUNK_KEYS[part]] = actions[:, start:start + ACTION_DIMS[part]].astype(np.float64)
        start += ACTION_DIMS[part]
    return out
