"""LDA model configurations: one dataclass, and the presets that the policies and training name.

Rates for the 20 Hz RoboCasa-GR1 tasks. The paper samples the visual stream at about 3 Hz and actions at
10 Hz (chunk 16 = 1.6 s). Our demonstrations and the simulator run at 20 Hz with absolute joint targets, so:

- actions stay at 20 Hz (``action_stride`` 1): resampling absolute targets to 10 Hz would halve the
  control resolution of the fingers for nothing, and GR00T N1.5 trains a chunk of 16 at 20 Hz on the very
  same data. A chunk of 16 covers 0.8 s; a rollout executes ``execute_steps`` = 8 of them per call.
- the visual stream takes one frame every ``frame_stride`` = 8 control steps (2.5 Hz, the nearest
  divisor-friendly rate to the paper's 3 Hz): history frames are t - 8 and t.
- the predicted future frame is ``future_offset`` = 16 steps ahead, the frame in which the chunk has just
  finished. Forward dynamics p(o' | o, a) then predicts exactly the consequence of the chunk it is given,
  and inverse dynamics p(a | o, o') recovers the chunk that leads from o to o'; a nearer frame would leave
  half the chunk unobserved, a farther one would depend on actions outside it.
- executing 8 steps per call (= ``frame_stride``) makes the policy's previous frame exactly the history
  frame it was trained with.
- past actions: the ``history`` actions commanded just before t (t-2, t-1). With absolute joint targets
  they carry the commanded velocity that the state alone does not.
- VLM tokens are encoded every ``vlm_stride`` = 8 frames, and a sample reads the latest encoded frame at or
  before t (at most 0.35 s old; a policy executing 8 steps per call sees the same). Qwen3-VL-4B tokens are
  2560 wide, about 0.4 MB per frame in float16: for every frame of GR00T's 24 x 1000 demonstrations that
  would be terabytes, and instruction and scene change slowly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from tasks.layout import ACTION_DIM

# The four objectives of the unified world model, in the order of the task embedding table.
OBJECTIVES = ("policy", "forward_dynamics", "inverse_dynamics", "visual_forecasting")
POLICY, FORWARD, INVERSE, FORECAST = range(4)
ACTION_TARGET = (POLICY, INVERSE)   # objectives whose noised target is the action chunk
VISUAL_TARGET = (FORWARD, FORECAST)  # objectives whose noised target is the future frame's features


@dataclass(frozen=True)
class LDAConfig:
    """Everything that fixes the shapes of an LDA network, and the sampling rates its data is cut at."""

    name: str = "tiny"
    backbone: str = "mmdit"          # "mmdit": a stream per modality; "dit": one shared stream
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    # Robot (GR1 in GR00T's key order: left_arm 7, right_arm 7, left_hand 6, right_hand 6, waist 3).
    action_dim: int = ACTION_DIM
    state_dim: int = 2 * ACTION_DIM  # sin and cos of each joint position
    action_chunk: int = 16
    history: int = 2
    # Frozen encoders' outputs: DINO patch grid and width, VLM token width.
    image_size: int = 224
    patch_grid: int = 14
    dino_dim: int = 384
    vlm_dim: int = 2560              # Qwen3-VL-4B hidden size
    # Rates, in control steps of the 20 Hz tasks (see the module docstring).
    control_hz: int = 20
    frame_stride: int = 8
    future_offset: int = 16
    execute_steps: int = 8
    vlm_stride: int = 8
    # Flow matching (GR00T's): t = (s - Beta(alpha, beta)) / s; Euler steps at inference.
    flow_beta_alpha: float = 1.5
    flow_beta_beta: float = 1.0
    flow_s: float = 0.999
    sample_steps: int = 4
    grad_checkpointing: bool = False

    def __post_init__(self):
        if self.backbone not in ("mmdit", "dit"):
            raise ValueError(f"backbone must be 'mmdit' or 'dit'; got {self.backbone!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.history < 1 or self.action_chunk < 1:
            raise ValueError("history and action_chunk must be >= 1")

    @property
    def patches(self) -> int:
        return self.patch_grid * self.patch_grid

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LDAConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown LDAConfig field(s) {unknown}")
        return cls(**values)

    def with_(self, **changes: Any) -> LDAConfig:
        return replace(self, **changes)


PRESETS: dict[str, LDAConfig] = {
    # Runs on a laptop CPU: the encoders are tiny random ones (64 px images, 16 px patches -> 4x4 grid).
    "tiny": LDAConfig(name="tiny", hidden=128, layers=4, heads=4, image_size=64, patch_grid=4, dino_dim=32,
                      vlm_dim=32),
    # The tiny network reading the encoder pretrained here on the benchmark's frames (`lda-bench encoder
    # pretrain`, model/vision.py: 96 px, 16 px patches -> 6x6 grid, width 64) in place of DINOv3's weights.
    "tiny-vision": LDAConfig(name="tiny-vision", hidden=128, layers=4, heads=4, image_size=96, patch_grid=6, dino_dim=64,
                             vlm_dim=32),
    # Table V of the paper: hidden 1536, 16 layers, 32 heads, DINOv3 ViT-S/16 latents 14x14x384 at 224 px.
    "lda-1b": LDAConfig(name="lda-1b", hidden=1536, layers=16, heads=32, grad_checkpointing=True),
    "lda-0.5b": LDAConfig(name="lda-0.5b", hidden=1024, layers=16, heads=16, grad_checkpointing=True),
    # One shared stream in place of the MM-DiT's two. Its blocks carry about half the weights of an MM-DiT
    # block, so 30 layers make it the same size as lda-1b (the comparison of Table VI is at equal size).
    "lda-dit": LDAConfig(name="lda-dit", backbone="dit", hidden=1536, layers=30, heads=32, grad_checkpointing=True),
}


def get_config(name: str, **overrides: Any) -> LDAConfig:
    """A preset by name, with optional field overrides."""
    if name not in PRESETS:
        raise KeyError(f"unknown LDA preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name].with_(**overrides) if overrides else PRESETS[name]


__all__ = ["LDAConfig", "PRESETS", "get_config", "OBJECTIVES", "POLICY", "FORWARD", "INVERSE", "FORECAST",
           "ACTION_TARGET", "VISUAL_TARGET"]
