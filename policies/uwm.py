"""The UWM family's policies: a checkpoint of model/uwm.py's network acting in its policy mode (the chunk
denoised with the future frame held at pure noise) through the policy adapter of every family
(policies/checkpoint.py).

`uwm` (the Unified World Model, 140 M), `uwm-xl` (UWM at 1 B reading Qwen3-VL tokens) and `uwm-mmdit` (UWM-XL
with LDA's MM-DiT backbone); the name says which of Table VI's columns the checkpoint stands for.
"""

from __future__ import annotations

from lda_bench.policy import register_policy
from policies.checkpoint import CheckpointPolicy


class UWMFamilyPolicy(CheckpointPolicy):
    """Acts with a UWM checkpoint (checkpoint=PATH)."""

    family = "uwm"


@register_policy("uwm", "UWM: Unified World Model, action and video diffusion in one DiT, from a checkpoint "
                        "(checkpoint=PATH)")
class UWMPolicy(UWMFamilyPolicy):
    """UWM: one DiT over action tokens and future-frame VAE latents, two timesteps (checkpoint=PATH)."""

    backbone = "dit"


@register_policy("uwm-xl", "UWM-XL: UWM at 1 B with Qwen3-VL conditioning, from a checkpoint (checkpoint=PATH)")
class UWMXLPolicy(UWMFamilyPolicy):
    """UWM-XL: UWM at 1 B reading Qwen3-VL tokens (checkpoint=PATH)."""

    backbone = "dit"


@register_policy("uwm-mmdit", "UWM+MMDiT: UWM with LDA's MM-DiT backbone, from a checkpoint (checkpoint=PATH)")
class UWMMMDiTPolicy(UWMFamilyPolicy):
    """UWM+MMDiT: UWM-XL with a stream per modality (checkpoint=PATH)."""

    backbone = "mmdit"
