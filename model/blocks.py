"""The pieces every model family is built from: flow matching (time distribution, noising, Euler
integration), the DDPM schedule with DDIM sampling, timestep embedding, the transformer block (joint
self-attention over one or more token streams, cross-attention to a memory of conditioning tokens, FFN,
AdaLN-Zero modulation), the output head and input MLPs, and the per-sample objectives of the data roles.

LDA (model/lda.py) runs them over two streams and four objectives, GR00T-N1.6 (model/gr00t.py) over one
stream and the policy alone, UWM (model/uwm.py) over one or two streams with a DDPM timestep per modality.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from model.config import OBJECTIVES, ModelConfig

MODULATIONS = 9  # shift, scale, gate for each of self-attention, cross-attention and FFN


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def sample_flow_time(n: int, config: ModelConfig, device=None) -> torch.Tensor:
    """GR00T's flow time, u ~ Beta(alpha, beta): t = (s - u) / s (`flow_time` "shifted", GR00T N1.5's
    and LDA's) or t = s (1 - u) ("scaled", GR00T N1.6's).

    Beta(1.5, 1) puts more mass near u = 1, i.e. near t = 0 (mostly noise), where the velocity is hardest
    to predict. With s < 1 the shifted form keeps a little mass below t = 0, so that the first Euler step
    is trained too; the scaled one keeps t in [0, s], never quite the clean target.
    """
    beta = torch.distributions.Beta(torch.tensor(config.flow_beta_alpha), torch.tensor(config.flow_beta_beta))
    u = beta.sample((n,))
    t = (config.flow_s - u) / config.flow_s if config.flow_time == "shifted" else config.flow_s * (1 - u)
    return t.to(device)


def noised(clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The flow's point at time t (B,) between noise (t = 0) and the clean target (t = 1); its velocity,
    what the network learns to predict, is clean - noise."""
    t = t.view(-1, *[1] * (clean.ndim - 1))
    return (1 - t) * noise + t * clean


def euler(velocity, x: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) from t = 0 to 1 in `steps` Euler steps (4 at GR00T's inference)."""
    for i in range(steps):
        t = torch.full((x.shape[0],), i / steps, device=x.device, dtype=x.dtype)
        x = x + velocity(x, t) / steps
    return x


class DiffusionSchedule:
    """DDPM's discrete noise schedule for training (diffusers' `DDPMScheduler`) and deterministic DDIM
    sampling over it (`DDIMScheduler`, eta 0), the network predicting the noise: how UWM trains and samples.

    Timestep k of `steps` (0: clean, steps - 1: as good as pure noise) noises x to
    sqrt(abar_k) x + sqrt(1 - abar_k) noise. `clip` bounds the clean sample that each DDIM step estimates
    (0: unbounded).
    """

    def __init__(self, steps: int, beta_schedule: str, clip: float):
        from diffusers import DDIMScheduler, DDPMScheduler

        with torch.device("cpu"):  # its tables, also when a network is built on the meta device to be counted
            self.noising = DDPMScheduler(num_train_timesteps=steps, beta_schedule=beta_schedule,
                                         clip_sample=clip > 0, clip_sample_range=clip or 1.0)
            self.sampler = DDIMScheduler.from_config(self.noising.config)
        self.steps = steps

    def add_noise(self, clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x at timesteps t (B,) (long)."""
        return self.noising.add_noise(clean, noise, t)

    def sample(self, predict_noise, x: torch.Tensor, steps: int) -> torch.Tensor:
        """Denoise x, pure noise, in `steps` DDIM steps; predict_noise(x, t) is the network's noise estimate
        at timesteps t (B,) (long)."""
        self.sampler.set_timesteps(steps)
        for t in self.sampler.timesteps.tolist():
            timesteps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            x = self.sampler.step(predict_noise(x, timesteps), t, x).prev_sample
        return x


def draw_objectives(roles: torch.Tensor, objective: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's objective and its weight. roles (B, 4) bool says which objectives a sample's data role
    allows (high quality all four, low quality all but the policy, action-free video only forecasting); the
    objective is drawn uniformly among them unless given, and one that its role forbids weighs zero."""
    roles = roles.bool()
    if objective is None:
        objective = torch.multinomial(roles.float(), 1).squeeze(1)
    return objective, roles.gather(1, objective[:, None]).squeeze(1).float()


def objective_losses(errors: torch.Tensor, objective: torch.Tensor, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """The loss of per-sample errors (B,) under `draw_objectives`' weights: "loss" (to minimise) and, per
    objective, its mean loss and sample count (both detached)."""
    per_sample = errors.float() * weight
    out = {"loss": per_sample.sum() / weight.sum().clamp(min=1)}
    for k, name in enumerate(OBJECTIVES):
        on = (objective == k).float() * weight
        out[f"count/{name}"] = on.sum().detach()
        out[f"loss/{name}"] = ((per_sample * on).sum() / on.sum().clamp(min=1)).detach()
    return out


def timestep_features(t: torch.Tensor, width: int) -> torch.Tensor:
    """Sinusoidal features (B, width) of 1000 t: the flow time on DiT's timestep scale."""
    half = width // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Flow time (or diffusion timestep over its count) in [0, 1] -> a hidden vector: sinusoidal features of
    1000 t, then an MLP (as in DiT)."""

    def __init__(self, hidden: int, frequencies: int = 256):
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_features(t, self.frequencies).to(self.mlp[0].weight.dtype))


class StreamLayers(nn.Module):
    """The weights that one stream owns inside a block: its QKV, projections, cross-attention query and FFN."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        head_dim = hidden // heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.q_norm, self.k_norm = nn.RMSNorm(head_dim, eps=1e-6), nn.RMSNorm(head_dim, eps=1e-6)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.cross_q = nn.Linear(hidden, hidden)
        self.cross_q_norm = nn.RMSNorm(head_dim, eps=1e-6)
        self.cross_proj = nn.Linear(hidden, hidden)
        self.norm3 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        inner = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, hidden))


class Block(nn.Module):
    """Joint self-attention over all streams, cross-attention to the memory (VLM tokens; UWM: the current
    observation's tokens), FFN; each AdaLN-Zero gated.

    The memory's keys/values are projected once per block and read by every stream: they are the same
    memory for both, and sharing them saves 2 hidden^2 weights per block.
    """

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, streams: int):
        super().__init__()
        self.heads = heads
        self.streams = nn.ModuleList(StreamLayers(hidden, heads, mlp_ratio) for _ in range(streams))
        self.cross_kv = nn.Linear(hidden, 2 * hidden)
        self.cross_k_norm = nn.RMSNorm(hidden // heads, eps=1e-6)
        # AdaLN-single (PixArt-alpha): one conditioning projection for the whole network, plus this learned
        # per-block offset. A full per-block projection would add ~0.45B weights to the 1B preset.
        self.modulation = nn.Parameter(torch.zeros(streams, MODULATIONS, hidden))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, hidden) -> (B, heads, N, head_dim)
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(b, n, -1)

    def memory(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-attention keys and values of the VLM tokens: they depend on neither the flow time nor
        the noised target, so sampling projects them once per chunk."""
        k, v = self.cross_kv(ctx).chunk(2, dim=-1)
        return self.cross_k_norm(self._heads(k)), self._heads(v)

    def forward(self, xs: list[torch.Tensor], mods: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor],
                ctx_mask: torch.Tensor, keep: tuple[int, ...] | None = None) -> list[torch.Tensor | None]:
        """One block. `keep` lists the streams whose output is read afterwards (all by default): the others
        still take part in the joint self-attention as keys and values, but their queries, cross-attention
        and FFN are skipped and they come back as None (the last block of a policy-only sample)."""
        keep = range(len(xs)) if keep is None else keep
        mods = (mods + self.modulation).unbind(2)  # 9 x (B, streams, hidden)
        mod = [[m[:, i] for m in mods] for i in range(len(xs))]
        # 1) one self-attention over the tokens of every stream, each stream with its own weights
        qs, ks, vs = [], [], []
        for i, (x, layers, m) in enumerate(zip(xs, self.streams, mod)):
            q, k, v = layers.qkv(modulate(layers.norm1(x), m[0], m[1])).chunk(3, dim=-1)
            if i in keep:
                qs.append(layers.q_norm(self._heads(q)))
            ks.append(layers.k_norm(self._heads(k)))
            vs.append(self._heads(v))
        out = F.scaled_dot_product_attention(torch.cat(qs, 2), torch.cat(ks, 2), torch.cat(vs, 2))
        out = iter(self._merge(out).split([xs[i].shape[1] for i in keep], dim=1))
        # 2) cross-attention from each stream's tokens to the VLM tokens, 3) feed-forward
        k, v = memory
        mask = ctx_mask[:, None, None, :]
        new = []
        for i, (x, layers, m) in enumerate(zip(xs, self.streams, mod)):
            if i not in keep:
                new.append(None)
                continue
            x = x + m[2].unsqueeze(1) * layers.proj(next(out))
            q = layers.cross_q_norm(self._heads(layers.cross_q(modulate(layers.norm2(x), m[3], m[4]))))
            x = x + m[5].unsqueeze(1) * layers.cross_proj(self._merge(F.scaled_dot_product_attention(q, k, v, mask)))
            x = x + m[8].unsqueeze(1) * layers.mlp(modulate(layers.norm3(x), m[6], m[7]))
            new.append(x)
        return new


class OutputHead(nn.Module):
    """Final AdaLN (shift, scale) and a linear map from hidden to the modality's width."""

    def __init__(self, hidden: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.linear = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(cond).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


def two_layer_mlp(in_dim: int, out_dim: int, inner: int | None = None,
                  activation: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    """in_dim -> inner (default out_dim) -> out_dim: the modalities' input heads, GR00T's action decoder."""
    inner = inner or out_dim
    return nn.Sequential(nn.Linear(in_dim, inner), activation(), nn.Linear(inner, out_dim))


class FlowTransformer(nn.Module):
    """What every family's network shares around its blocks: the trainer and the policy adapter call
    `loss(batch)`, `sample(objective, ...)`, `num_params()`; `objectives` names what `loss` trains. (UWM,
    a diffusion model, shares it too: nothing here is particular to flow matching.)"""

    objectives: tuple[str, ...] = ()
    blocks: nn.ModuleList

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def initialize(self, embeddings: tuple[torch.Tensor, ...], zero_layers: tuple[nn.Linear, ...]) -> None:
        """Xavier linears, small embeddings and time MLPs, and AdaLN-Zero: the AdaLN projection, every block's
        modulation and `zero_layers` (the output heads) start at zero, so each block is the identity and
        the network predicts zero velocity until training moves them."""
        def linear_init(module):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.apply(linear_init)
        for p in embeddings:
            nn.init.normal_(p, std=0.02)
        for embedder in (m for m in self.modules() if isinstance(m, TimestepEmbedder)):
            for layer in (embedder.mlp[0], embedder.mlp[2]):
                nn.init.normal_(layer.weight, std=0.02)
        for layer in (self.adaln[-1], *zero_layers):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        for block in self.blocks:
            nn.init.zeros_(block.modulation)

    def compile_blocks(self, **options) -> FlowTransformer:
        """torch.compile each block: the blocks share their code and shapes, so one compiled graph serves
        all of them (compiling in seconds, not minutes, where compiling the whole loss unrolls every block),
        and it fuses the norms, modulations, gates and GELU between the matrix products."""
        for block in self.blocks:
            block.compile(**options)
        return self

    def run_blocks(self, xs: list[torch.Tensor], mods: torch.Tensor, memories: list, ctx_mask: torch.Tensor,
                   last_keep: tuple[int, ...] | None = None) -> list[torch.Tensor | None]:
        """Every block in turn (gradient-checkpointed when the config asks and gradients flow); `last_keep`
        is the last block's `keep` (the streams whose output is read)."""
        checkpointing = self.config.grad_checkpointing and self.training and torch.is_grad_enabled()
        for i, (block, memory) in enumerate(zip(self.blocks, memories)):
            keep = last_keep if i == len(self.blocks) - 1 else None
            if checkpointing:
                xs = checkpoint(block, xs, mods, memory, ctx_mask, keep, use_reentrant=False)
            else:
                xs = block(xs, mods, memory, ctx_mask, keep)
        return xs
