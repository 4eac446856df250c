"""The GR00T-N1.6 family's policies: a checkpoint of model/gr00t.py's network acting through the policy
adapter of every family (policies/checkpoint.py).

`gr00t-n1.6` (GR00T-N1.6's action model over a VLM's tokens), `starvla` (the same head over Qwen3-VL-4B,
trained from scratch on the benchmark data: starVLA's Qwen-GR00T) and `gr00t-ei` (the network whose VLM
trains in finetuning: the paper's GR00T-EI10k) run one network; the name says which of Table VI's columns
the checkpoint stands for.
"""

from __future__ import annotations

from lda_bench.policy import register_policy
from policies.checkpoint import CheckpointPolicy


class GR00TFamilyPolicy(CheckpointPolicy):
    """Acts with a GR00T-family checkpoint (checkpoint=PATH)."""

    family = "gr00t"


@register_policy("gr00t-n1.6", "GR00T-N1.6: flow-matching DiT action head over VLM tokens, from a checkpoint "
                               "(checkpoint=PATH)")
class GR00TN16Policy(GR00TFamilyPolicy):
    """GR00T-N1.6: the DiT action head over VLM tokens (checkpoint=PATH)."""


@register_policy("starvla", "StarVLA (Qwen-GR00T): GR00T's action head over Qwen3-VL, from a checkpoint "
                            "(checkpoint=PATH)")
class StarVLAPolicy(GR00TFamilyPolicy):
    """StarVLA: GR00T's action head over Qwen3-VL, trained from scratch (checkpoint=PATH)."""


@register_policy("gr00t-ei", "GR00T-EI: the GR00T-N1.6 network with its VLM finetuned, from a checkpoint "
                             "(checkpoint=PATH)")
class GR00TEIPolicy(GR00TFamilyPolicy):
    """GR00T-EI: the GR00T-N1.6 network with its VLM finetuned (checkpoint=PATH)."""
