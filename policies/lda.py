"""LDA policies: a trained LDA checkpoint acting through its policy objective (policies/checkpoint.py).

`lda` (the MM-DiT, LDA-1B), `lda-0.5b` (the same at half width) and `lda-dit` (single-stream DiT).
"""

from __future__ import annotations

from lda_bench.policy import register_policy
from policies.checkpoint import CheckpointPolicy


class LDAFamilyPolicy(CheckpointPolicy):
    """Acts with an LDA checkpoint (checkpoint=PATH)."""

    family = "lda"


@register_policy("lda", "LDA-1B: MM-DiT latent dynamics action model from a checkpoint (checkpoint=PATH)")
class LDA1BPolicy(LDAFamilyPolicy):
    """LDA-1B: the MM-DiT world model acting as a policy (checkpoint=PATH)."""

    backbone = "mmdit"


@register_policy("lda-0.5b", "LDA-0.5B: the MM-DiT at half width, from a checkpoint (checkpoint=PATH)")
class LDAHalfBPolicy(LDAFamilyPolicy):
    """LDA-0.5B: the MM-DiT at half width (checkpoint=PATH)."""

    backbone = "mmdit"


@register_policy("lda-dit", "LDA(DiT): single-stream DiT in place of the MM-DiT, from a checkpoint (checkpoint=PATH)")
class LDADiTPolicy(LDAFamilyPolicy):
    """LDA(DiT): one shared stream in place of the MM-DiT (checkpoint=PATH)."""

    backbone = "dit"
