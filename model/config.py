"""Model configurations: one dataclass per family (LDA, GR00T-N1.6, UWM), and the presets training names.

Every family shares `ModelConfig`: the robot, the frozen encoders' output shapes, the data rates below and
flow matching, so one dataset, feature cache and training loop serve them all. A family names the frozen
encoder its frames go through (`frame_encoder`: DINOv3 patch features, or for UWM an SDXL-style VAE's
latents); `patch_grid` and `dino_dim` are that encoder's grid and width. `--config PRESET` picks
from `PRESETS`, which holds the presets of every family; a checkpoint names its family (`to_dict`).

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
- ``action_space``: the chunk the network generates is "absolute" (a[t:t+K], normalised by the actions'
  per-dimension mean and std) or "relative" (a[t:t+K] minus the last action commanded before t, divided by
  the per-dimension scale of those differences; GR00T-N1.6 acts so for its arms). In relative space
  holding still is the zero prediction, so training spends itself on the motion rather than on re-deriving
  the current joint targets. Past actions and state are absolute in both (model/data.py).
- VLM tokens are encoded every ``vlm_stride`` = 8 frames, and a sample reads the latest encoded frame at or
  before t (at most 0.35 s old; a policy executing 8 steps per call sees the same). Qwen3-VL-4B tokens are
  2560 wide, about 0.4 MB per frame in float16: for every frame of GR00T's 24 x 1000 demonstrations that
  would be terabytes, and instruction and scene change slowly.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

from tasks.layout import ACTION_DIM

# The four objectives of the unified world model, in the order of the task embedding table.
OBJECTIVES = ("policy", "forward_dynamics", "inverse_dynamics", "visual_forecasting")
POLICY, FORWARD, INVERSE, FORECAST = range(4)
ACTION_SPACES = ("absolute", "relative")  # what the generated action chunk is (ModelConfig.action_space)
ACTION_TARGET = (POLICY, INVERSE)   # objectives whose noised target is the action chunk
VISUAL_TARGET = (FORWARD, FORECAST)  # objectives whose noised target is the future frame's features


@dataclass(frozen=True)
class ModelConfig:
    """What fixes the shapes of a family's network, and the sampling rates its data is cut at."""

    family: ClassVar[str] = ""
    frame_encoder: ClassVar[str] = "dinov3"  # the `kind` of model/encoders.py's FRAME_ENCODERS that frames go through
    name: str = "tiny"
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    # Robot (GR1 in GR00T's key order: left_arm 7, right_arm 7, left_hand 6, right_hand 6, waist 3).
    action_dim: int = ACTION_DIM
    state_dim: int = 2 * ACTION_DIM  # sin and cos of each joint position
    action_chunk: int = 16
    history: int = 2
    action_space: str = "absolute"   # "absolute" or "relative" chunks (see the module docstring)
    # Frozen encoders' outputs: the frame encoder's grid and width (DINO patches; VAE latents for UWM), VLM
    # token width.
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
    # Flow matching (GR00T's): u ~ Beta(alpha, beta), t = (s - u) / s ("shifted", GR00T N1.5 and LDA) or
    # t = s (1 - u) ("scaled", GR00T N1.6); Euler steps at inference.
    flow_beta_alpha: float = 1.5
    flow_beta_beta: float = 1.0
    flow_s: float = 0.999
    flow_time: str = "shifted"
    sample_steps: int = 4
    grad_checkpointing: bool = False
    # Finetuning trains the VLM too unless told otherwise (`lda-bench finetune` without --unfreeze-vlm).
    tune_vlm: bool = False

    def __post_init__(self):
        if self.flow_time not in ("shifted", "scaled"):
            raise ValueError(f"flow_time must be 'shifted' or 'scaled'; got {self.flow_time!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.history < 1 or self.action_chunk < 1:
            raise ValueError("history and action_chunk must be >= 1")
        if self.action_space not in ACTION_SPACES:
            raise ValueError(f"action_space must be 'absolute' or 'relative'; got {self.action_space!r}")

    @property
    def relative(self) -> bool:
        """Whether the network generates relative action chunks (`action_space`)."""
        return self.action_space == "relative"

    @property
    def patches(self) -> int:
        return self.patch_grid * self.patch_grid

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, **asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        values = dict(values)
        family = values.pop("family", "lda")  # checkpoints from before the GR00T family are LDA's
        if family != cls.family:
            raise ValueError(f"a {family!r} configuration is no {cls.__name__}")
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}")
        return cls(**values)

    def with_(self, **changes: Any) -> ModelConfig:
        return replace(self, **changes)


@dataclass(frozen=True)
class LDAConfig(ModelConfig):
    """LDA: the four objectives over action and DINO-feature tokens (model/lda.py)."""

    family: ClassVar[str] = "lda"
    backbone: str = "mmdit"          # "mmdit": a stream per modality; "dit": one shared stream

    def __post_init__(self):
        super().__post_init__()
        if self.backbone not in ("mmdit", "dit"):
            raise ValueError(f"backbone must be 'mmdit' or 'dit'; got {self.backbone!r}")


@dataclass(frozen=True)
class GR00TConfig(ModelConfig):
    """GR00T-N1.6's action model: a flow-matching DiT over the state and the action chunk that cross-attends
    to VLM tokens, trained on the policy only (model/gr00t.py says where each number comes from)."""

    family: ClassVar[str] = "gr00t"
    state_hidden: int = 64           # the state encoder's inner width (GR00T: hidden_size 1024)
    output_hidden: int = 64          # the DiT's output width and the action decoder's inner width (1024)
    flow_time: str = "scaled"


@dataclass(frozen=True)
class UWMConfig(ModelConfig):
    """UWM: one diffusion transformer over the action chunk and the future frame's VAE latents, a DDPM
    timestep per modality (model/uwm.py says where each number comes from). `patch_grid` x `patch_grid` x
    `dino_dim` is the VAE's latent grid (28 x 28 x 4 for SDXL's VAE at 224 px), cut into `latent_patch`
    squares, one token each."""

    family: ClassVar[str] = "uwm"
    frame_encoder: ClassVar[str] = "vae"
    backbone: str = "dit"             # "dit": one stream over all tokens; "mmdit": LDA's stream per modality
    language: bool = False            # read the VLM's tokens of the current image and instruction (UWM-XL)
    image_size: int = 224
    patch_grid: int = 28
    dino_dim: int = 4
    latent_patch: int = 4
    registers: int = 8
    diffusion_steps: int = 100        # DDPM training timesteps
    beta_schedule: str = "squaredcos_cap_v2"
    clip_sample: float = 5.0          # bound on each DDIM step's clean estimate, in normalised units (0: none)
    sample_steps: int = 10            # DDIM steps at inference

    def __post_init__(self):
        super().__post_init__()
        if self.backbone not in ("mmdit", "dit"):
            raise ValueError(f"backbone must be 'mmdit' or 'dit'; got {self.backbone!r}")
        if self.patch_grid % self.latent_patch:
            raise ValueError(f"latent grid {self.patch_grid} is not divisible by latent_patch {self.latent_patch}")


PRESETS: dict[str, ModelConfig] = {
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


def _gr00t_presets() -> dict[str, GR00TConfig]:
    """gr00t-n1.6, starvla and gr00t-ei: one network, three VLM set-ups (README, "GR00T-N1.6 family").

    The head follows GR00T-N1.6 (model/gr00t.py): width 1536 = 32 heads of 48, 16 of LDA's blocks each
    holding a self-attention, a cross-attention and an FFN of twice the usual width (GR00T interleaves 16
    cross-attention and 16 self-attention layers, each with its FFN), state encoder 58 -> 1024 -> 1536,
    output 1024, 4 Euler steps, chunk 16. gr00t-n1.6 reads 2048-wide tokens (Qwen3-VL-2B stands in for
    GR00T's Eagle-Block2A-2B, whose LLM is 2048 wide), starvla Qwen3-VL-4B's (2560), and gr00t-ei is
    gr00t-n1.6 with its VLM trained in finetuning. Each `-tiny` twin runs on a laptop CPU."""
    full = GR00TConfig(name="gr00t-n1.6", hidden=1536, layers=16, heads=32, mlp_ratio=8.0, state_hidden=1024,
                       output_hidden=1024, vlm_dim=2048, grad_checkpointing=True)
    tiny_encoders = {k: getattr(PRESETS["tiny"], k) for k in ("image_size", "patch_grid", "dino_dim", "vlm_dim")}
    tiny = GR00TConfig(name="gr00t-n1.6-tiny", hidden=128, layers=2, heads=4, mlp_ratio=8.0, **tiny_encoders)
    presets = {}
    for name, changes in (("gr00t-n1.6", {}), ("starvla", {"vlm_dim": 2560}), ("gr00t-ei", {"tune_vlm": True})):
        presets[name] = full.with_(name=name, **changes)
        presets[f"{name}-tiny"] = tiny.with_(name=f"{name}-tiny", **{k: v for k, v in changes.items() if k != "vlm_dim"})
    return presets


def _uwm_presets() -> dict[str, UWMConfig]:
    """uwm, uwm-xl and uwm-mmdit (README, "UWM family"), each with a `-tiny` twin that runs on a laptop CPU.

    `uwm` keeps upstream's width and heads (768 = 12 x 64), 8 registers, 4 x 4 latent patches, DDPM with 100
    steps and 10 DDIM steps; 14 of our blocks (upstream: 12) bring it to the paper's 140 M (143.0 M), as our
    blocks share one AdaLN projection where upstream's each project the condition themselves. `uwm-xl` is
    UWM at 1 B (1536 = 24 x 64, 26 blocks: 1.03 B) reading Qwen3-VL tokens; `uwm-mmdit` is uwm-xl with
    LDA's MM-DiT backbone (a stream per modality) at the same size (14 blocks: 1.06 B), so that the two
    differ by the backbone alone."""
    tiny = dict(hidden=128, layers=2, heads=4, image_size=64, patch_grid=8, latent_patch=2, vlm_dim=32)
    xl = dict(hidden=1536, heads=24, language=True, grad_checkpointing=True)
    return {
        "uwm": UWMConfig(name="uwm", hidden=768, layers=14, heads=12),
        "uwm-xl": UWMConfig(name="uwm-xl", layers=26, **xl),
        "uwm-mmdit": UWMConfig(name="uwm-mmdit", backbone="mmdit", layers=14, **xl),
        "uwm-tiny": UWMConfig(name="uwm-tiny", **tiny),
        "uwm-xl-tiny": UWMConfig(name="uwm-xl-tiny", language=True, **tiny),
        "uwm-mmdit-tiny": UWMConfig(name="uwm-mmdit-tiny", backbone="mmdit", language=True, **tiny),
    }


PRESETS.update(_gr00t_presets())
PRESETS.update(_uwm_presets())
CONFIGS: dict[str, type[ModelConfig]] = {"lda": LDAConfig, "gr00t": GR00TConfig, "uwm": UWMConfig}
NETWORKS = {"lda": "model.lda:LDA", "gr00t": "model.gr00t:GR00T", "uwm": "model.uwm:UWM"}


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """A preset by name, with optional field overrides."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name].with_(**overrides) if overrides else PRESETS[name]


def config_from_dict(values: dict[str, Any]) -> ModelConfig:
    """The configuration a checkpoint records, of whichever family it names."""
    family = values.get("family", "lda")
    if family not in CONFIGS:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(CONFIGS)}")
    return CONFIGS[family].from_dict(values)


def build_model(config: ModelConfig):
    """The network of a configuration's family (imported here, so that reading configurations needs no torch)."""
    module, _, name = NETWORKS[config.family].partition(":")
    return getattr(importlib.import_module(module), name)(config)


__all__ = ["ModelConfig", "LDAConfig", "GR00TConfig", "UWMConfig", "PRESETS", "get_config", "config_from_dict",
           "build_model", "OBJECTIVES", "ACTION_SPACES", "POLICY", "FORWARD", "INVERSE", "FORECAST", "ACTION_TARGET",
           "VISUAL_TARGET"]
