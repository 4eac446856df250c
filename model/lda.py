"""LDA: one flow-matching transformer for policy, forward dynamics, inverse dynamics and visual forecasting.

Two token streams meet in every block. The action stream holds the robot state, the past actions and the
16-step action chunk; the visual stream holds the DINO patch features of the history frames and of the
future frame. Which of the two is the target is a per-sample choice (the *objective*):

    policy               p(a | o, l)      chunk noised,         future frame -> visual register
    forward dynamics     p(o' | o, a)     future noised,        chunk clean
    inverse dynamics     p(a | o, o')     chunk noised,         future clean
    visual forecasting   p(o' | o, l)     future noised,        chunk -> action register

Only the target is noised, so a sample has one flow time; it and a learned objective embedding condition
every block through AdaLN-Zero. Instruction and current image enter as frozen VLM tokens through
cross-attention. ``backbone="mmdit"`` gives each stream its own QKV, output projection, cross-attention
query/output and FFN around one joint self-attention; ``backbone="dit"`` runs one shared set of weights over
the concatenated tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from model.config import ACTION_TARGET, FORECAST, OBJECTIVES, POLICY, VISUAL_TARGET, LDAConfig

MODULATIONS = 9  # shift, scale, gate for each of self-attention, cross-attention and FFN


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def sample_flow_time(n: int, config: LDAConfig, device=None) -> torch.Tensor:
    """GR00T's flow time: t = (s - u) / s with u ~ Beta(alpha, beta).

    Beta(1.5, 1) puts more mass near u = 1, i.e. near t = 0 (mostly noise), where the velocity is hardest
    to predict; s < 1 keeps a little mass below t = 0 so that the first Euler step is trained too.
    """
    beta = torch.distributions.Beta(torch.tensor(config.flow_beta_alpha), torch.tensor(config.flow_beta_beta))
    u = beta.sample((n,))
    return ((config.flow_s - u) / config.flow_s).to(device)


class TimestepEmbedder(nn.Module):
    """Flow time in [0, 1] -> a hidden vector: sinusoidal features of 1000 t, then an MLP (as in DiT)."""

    def __init__(self, hidden: int, frequencies: int = 256):
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.frequencies // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = 1000.0 * t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(self.mlp[0].weight.dtype))


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
    """Joint self-attention over all streams, cross-attention to the VLM tokens, FFN; each AdaLN-Zero gated.

    The VLM keys/values are projected once per block and read by every stream: they are the same memory
    for both, and sharing them saves 2 hidden^2 weights per block.
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


def _input_mlp(in_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))


class LDA(nn.Module):
    """The LDA network. ``forward`` predicts flow velocities; ``loss`` trains; ``sample`` integrates."""

    def __init__(self, config: LDAConfig):
        super().__init__()
        self.config = c = config
        h = c.hidden
        streams = 2 if c.backbone == "mmdit" else 1
        # modality-specific input heads
        self.state_in = _input_mlp(c.state_dim, h)
        self.action_in = _input_mlp(c.action_dim, h)
        self.visual_in = nn.Linear(c.dino_dim, h)
        self.vlm_in = nn.Sequential(nn.LayerNorm(c.vlm_dim), nn.Linear(c.vlm_dim, h))
        self.action_pos = nn.Parameter(torch.zeros(1 + c.history + c.action_chunk, h))
        self.patch_pos = nn.Parameter(torch.zeros(c.patches, h))
        self.frame_pos = nn.Parameter(torch.zeros(c.history + 1, h))
        # stand-ins for the modality that an objective does not use
        self.action_register = nn.Parameter(torch.zeros(h))
        self.visual_register = nn.Parameter(torch.zeros(h))
        # conditioning: flow time + objective, mapped once to every block's AdaLN parameters
        self.time_embed = TimestepEmbedder(h)
        self.objective_embed = nn.Embedding(len(OBJECTIVES), h)
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(h, streams * MODULATIONS * h))
        self.blocks = nn.ModuleList(Block(h, c.heads, c.mlp_ratio, streams) for _ in range(c.layers))
        self.action_out = OutputHead(h, c.action_dim)
        self.visual_out = OutputHead(h, c.dino_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier linears, small embeddings, and AdaLN-Zero: every gate and output head starts at zero, so
        each block is the identity and the network predicts zero velocity until training moves them."""
        def linear_init(module):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.apply(linear_init)
        for p in (self.action_pos, self.patch_pos, self.frame_pos, self.action_register, self.visual_register,
                  self.objective_embed.weight):
            nn.init.normal_(p, std=0.02)
        for layer in (self.time_embed.mlp[0], self.time_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        nn.init.zeros_(self.adaln[-1].weight)
        nn.init.zeros_(self.adaln[-1].bias)
        for block in self.blocks:
            nn.init.zeros_(block.modulation)
        for head in (self.action_out, self.visual_out):
            for layer in (head.modulation[-1], head.linear):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def compile_blocks(self, **options) -> LDA:
        """torch.compile each block: the blocks share their code and shapes, so one compiled graph serves
        all of them (compiling in seconds, not minutes, where compiling the whole loss unrolls every block),
        and it fuses the norms, modulations, gates and GELU between the matrix products."""
        for block in self.blocks:
            block.compile(**options)
        return self

    # --- the network -------------------------------------------------------------------------------

    def forward(self, actions: torch.Tensor, future: torch.Tensor, obs: torch.Tensor, past_actions: torch.Tensor,
                state: torch.Tensor, vlm: torch.Tensor, vlm_mask: torch.Tensor, t: torch.Tensor,
                objective: torch.Tensor, has_actions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocities for the action chunk (B, K, action_dim) and the future features (B, P, dino_dim).

        actions (B, K, A) and future (B, P, D) are noised when they are the objective's target, clean when
        they are its condition, and ignored (replaced by a register) when it does not use them. obs holds
        the history frames' features (B, H, P, D); has_actions (B,) is False for action-free video, whose
        state and past actions are replaced by the action register too.
        """
        context = self.context(obs, past_actions, state, vlm, vlm_mask, has_actions)
        return self.velocity(context, actions, future, t, objective)

    def context(self, obs: torch.Tensor, past_actions: torch.Tensor, state: torch.Tensor, vlm: torch.Tensor,
                vlm_mask: torch.Tensor, has_actions: torch.Tensor | None = None) -> dict:
        """What does not depend on the flow time or on the noised target: the state / past-action tokens,
        the history frames' tokens and every block's VLM keys and values. Sampling computes it once per
        chunk and reuses it in every Euler step."""
        c = self.config
        known = torch.cat([self.state_in(state)[:, None], self.action_in(past_actions)], dim=1)
        if has_actions is not None:
            known = torch.where(has_actions[:, None, None], known, self.action_register.to(known.dtype))
        history = self.visual_in(obs) + self.patch_pos + self.frame_pos[:c.history, None]
        ctx = self.vlm_in(vlm)
        return {"known": known, "history": history.reshape(obs.shape[0], -1, c.hidden),
                "memory": [block.memory(ctx) for block in self.blocks], "ctx_mask": vlm_mask.bool()}

    def velocity(self, context: dict, actions: torch.Tensor, future: torch.Tensor, t: torch.Tensor,
                 objective: torch.Tensor, outputs: tuple[bool, bool] = (True, True)
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """`forward` from a precomputed `context`. `outputs` says which of (action, future) velocities to
        compute; the one left out comes back as None, and with the MM-DiT its stream skips the last block's
        work after the joint self-attention."""
        c = self.config
        b = actions.shape[0]
        chunk = self.action_in(actions)
        chunk = torch.where((objective == FORECAST)[:, None, None], self.action_register.to(chunk.dtype), chunk)
        action_tokens = torch.cat([context["known"], chunk], dim=1) + self.action_pos
        fut = self.visual_in(future)
        fut = torch.where((objective == POLICY)[:, None, None], self.visual_register.to(fut.dtype), fut)
        fut = fut + self.patch_pos + self.frame_pos[c.history]
        visual_tokens = torch.cat([context["history"], fut], dim=1)

        cond = self.time_embed(t) + self.objective_embed(objective)
        mods = self.adaln(cond).view(b, -1, MODULATIONS, c.hidden)
        mmdit = c.backbone == "mmdit"
        xs = [action_tokens, visual_tokens] if mmdit else [torch.cat([action_tokens, visual_tokens], 1)]
        for i, (block, memory) in enumerate(zip(self.blocks, context["memory"])):
            keep = tuple(k for k in range(2) if outputs[k]) if mmdit and i == len(self.blocks) - 1 else None
            if c.grad_checkpointing and self.training and torch.is_grad_enabled():
                xs = checkpoint(block, xs, mods, memory, context["ctx_mask"], keep, use_reentrant=False)
            else:
                xs = block(xs, mods, memory, context["ctx_mask"], keep)
        if not mmdit:
            xs = list(xs[0].split([action_tokens.shape[1], visual_tokens.shape[1]], dim=1))
        action_v = self.action_out(xs[0][:, 1 + c.history:], cond) if outputs[0] else None
        future_v = self.visual_out(xs[1][:, c.history * c.patches:], cond) if outputs[1] else None
        return action_v, future_v

    # --- training ----------------------------------------------------------------------------------

    def loss(self, batch: dict[str, torch.Tensor], objective: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Flow-matching loss for one batch, each sample on one objective that its data role allows.

        batch["roles"] (B, 4) bool says which objectives a sample may train (universal data ingestion:
        high quality all four, low quality never the policy, action-free video only forecasting). The
        objective is drawn uniformly among them unless given; a sample given an objective its role forbids
        weighs zero, so it cannot move that objective's loss.
        Returns "loss" (to minimise) and, per objective, its mean loss (detached) and its sample count.
        """
        roles = batch["roles"].bool()
        if objective is None:
            objective = torch.multinomial(roles.float(), 1).squeeze(1)
        weight = roles.gather(1, objective[:, None]).squeeze(1).to(batch["actions"].dtype)
        actions, future = batch["actions"], batch["future"]
        t = sample_flow_time(actions.shape[0], self.config, actions.device).to(actions.dtype)
        noise_a, noise_f = torch.randn_like(actions), torch.randn_like(future)
        action_target = torch.isin(objective, torch.tensor(ACTION_TARGET, device=objective.device))
        visual_target = torch.isin(objective, torch.tensor(VISUAL_TARGET, device=objective.device))
        tt = t[:, None, None]
        x_a = torch.where(action_target[:, None, None], (1 - tt) * noise_a + tt * actions, actions)
        x_f = torch.where(visual_target[:, None, None], (1 - tt) * noise_f + tt * future, future)
        v_a, v_f = self(x_a, x_f, batch["obs"], batch["past_actions"], batch["state"], batch["vlm"],
                        batch["vlm_mask"], t, objective, batch.get("has_actions"))
        err_a = (v_a.float() - (actions - noise_a).float()).pow(2).mean(dim=(1, 2))
        err_f = (v_f.float() - (future - noise_f).float()).pow(2).mean(dim=(1, 2))
        per_sample = torch.where(action_target, err_a, err_f) * weight.float()
        out = {"loss": per_sample.sum() / weight.sum().clamp(min=1)}
        for k, name in enumerate(OBJECTIVES):
            on = (objective == k).float() * weight.float()
            out[f"count/{name}"] = on.sum().detach()
            out[f"loss/{name}"] = ((per_sample * on).sum() / on.sum().clamp(min=1)).detach()
        return out

    # --- inference ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def sample(self, objective: int, obs: torch.Tensor, past_actions: torch.Tensor, state: torch.Tensor,
               vlm: torch.Tensor, vlm_mask: torch.Tensor, actions: torch.Tensor | None = None,
               future: torch.Tensor | None = None, has_actions: torch.Tensor | None = None,
               steps: int | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Integrate the flow from noise with Euler steps: the action chunk for policy / inverse dynamics,
        the future features for forward dynamics / forecasting. Give the objective's condition (actions
        for forward dynamics, future for inverse dynamics); `noise`, the starting point, makes it
        reproducible."""
        c = self.config
        steps = steps or c.sample_steps
        b, device, dtype = obs.shape[0], obs.device, obs.dtype
        a_shape, f_shape = (b, c.action_chunk, c.action_dim), (b, c.patches, c.dino_dim)
        actions = torch.zeros(a_shape, device=device, dtype=dtype) if actions is None else actions
        future = torch.zeros(f_shape, device=device, dtype=dtype) if future is None else future
        target_actions = objective in ACTION_TARGET
        x = torch.randn(a_shape if target_actions else f_shape, device=device, dtype=dtype) if noise is None else noise
        obj = torch.full((b,), objective, device=device, dtype=torch.long)
        context = self.context(obs, past_actions, state, vlm, vlm_mask, has_actions)
        outputs = (target_actions, not target_actions)
        for i in range(steps):
            t = torch.full((b,), i / steps, device=device, dtype=dtype)
            v_a, v_f = self.velocity(context, x if target_actions else actions, future if target_actions else x,
                                     t, obj, outputs)
            x = x + (v_a if target_actions else v_f) / steps
        return x
