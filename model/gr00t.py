"""GR00T-N1.6's action model, built from LDA's blocks: a flow-matching DiT over the robot state and the
action chunk that cross-attends to VLM tokens. It learns the policy alone, from high-quality episodes only.

What it takes from NVIDIA/Isaac-GR00T (read, not copied; `gr00t/configs/model/gr00t_n1d6.py`,
`gr00t/model/gr00t_n1d6/gr00t_n1d6.py`, `gr00t/model/modules/dit.py`, `gr00t/model/modules/eagle_backbone.py`):

- tokens: one state token and one token per step of the 16-step action chunk (`action_horizon` 16), a
  learned position embedding on the action tokens; VLM tokens through a LayerNorm (`use_vlln`).
- state encoder: a two-layer ReLU MLP, state -> 1024 (`hidden_size`) -> 1536 (`input_embedding_dim`).
- action encoder: W1 a (-> 1536), concatenated with sinusoidal features of the flow time, W2 (3072 -> 1536),
  swish, W3 (1536 -> 1536).
- DiT: width 1536 = 32 heads x 48 (`num_attention_heads`, `attention_head_dim`), 32 layers that alternate
  cross-attention to the VLM tokens (even) and self-attention (odd) (`interleave_self_attention`), each
  followed by a 4x GELU(tanh) FFN; AdaLN on the flow time (`norm_type` "ada_norm"); a final AdaLN and a
  projection to 1024 (`output_dim`), then the action decoder, a two-layer ReLU MLP 1024 -> 1024 -> action.
- flow matching: u ~ Beta(1.5, 1), t = 0.999 (1 - u) (`noise_beta_alpha`, `noise_beta_beta`, `noise_s`;
  GR00T N1.5's head used (s - u) / s, which LDA keeps), x_t = (1 - t) noise + t a, target a - noise;
  4 Euler steps from t = 0 at inference (`num_inference_timesteps`).
- VLM: Eagle-Block2A-2B with its LLM cut to its first 16 layers (`select_layer` 16), the last layer's
  hidden states as tokens (2048 wide, `backbone_embedding_dim`); the vision tower and the LLM frozen but
  for the top 4 LLM layers (`tune_visual` False, `tune_llm` False, `tune_top_llm_layers` 4).

Where this network differs (README, "GR00T-N1.6 family"): each of LDA's blocks holds one self-attention,
one cross-attention and one FFN of twice the width (mlp_ratio 8), so 16 blocks carry GR00T's 32 attention
layers and the weights of its 32 FFNs; AdaLN-Zero with gates and one shared conditioning projection
(AdaLN-single) in place of an ungated per-layer AdaLN; the VLM tokens are projected to the DiT's width once
instead of in each cross-attention; every cross-attention reads all VLM tokens (N1.6 alternates text-only
and image-only ones); no dropout (0.2 there); one embodiment, so plain linears for GR00T's per-embodiment
ones; the flow time enters as 1000 t, not floored to one of 1000 buckets; the state is sin/cos of the
joints; the VLM is whatever `VLMEncoder` holds (whole, last layer) and stays frozen unless finetuning
unfreezes all of it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.blocks import (MODULATIONS, Block, FlowTransformer, OutputHead, TimestepEmbedder, euler, noised,
                          sample_flow_time, timestep_features, two_layer_mlp)
from model.config import OBJECTIVES, POLICY, GR00TConfig


class ActionEncoder(nn.Module):
    """GR00T's action encoder: each noised action step, joined with the flow time's sinusoidal features."""

    def __init__(self, action_dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(action_dim, hidden)
        self.w2 = nn.Linear(2 * hidden, hidden)
        self.w3 = nn.Linear(hidden, hidden)

    def forward(self, actions: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.w1(actions)
        time = timestep_features(t, a.shape[-1]).to(a.dtype)[:, None].expand_as(a)
        return self.w3(F.silu(self.w2(torch.cat([a, time], dim=-1))))


class GR00T(FlowTransformer):
    """The GR00T-N1.6-style action model. ``forward`` predicts the chunk's flow velocity; ``loss`` trains the
    policy; ``sample`` integrates it."""

    objectives = (OBJECTIVES[POLICY],)

    def __init__(self, config: GR00TConfig):
        super().__init__()
        self.config = c = config
        h = c.hidden
        self.state_in = two_layer_mlp(c.state_dim, h, c.state_hidden, nn.ReLU)
        self.action_in = ActionEncoder(c.action_dim, h)
        self.action_pos = nn.Parameter(torch.zeros(c.action_chunk, h))
        self.vlm_in = nn.Sequential(nn.LayerNorm(c.vlm_dim), nn.Linear(c.vlm_dim, h))
        self.time_embed = TimestepEmbedder(h)
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(h, MODULATIONS * h))
        self.blocks = nn.ModuleList(Block(h, c.heads, c.mlp_ratio, streams=1) for _ in range(c.layers))
        self.out = OutputHead(h, c.output_hidden)
        self.action_out = two_layer_mlp(c.output_hidden, c.action_dim, c.output_hidden, nn.ReLU)
        self.initialize((self.action_pos,), (self.out.modulation[-1], self.action_out[-1]))

    def forward(self, actions: torch.Tensor, state: torch.Tensor, vlm: torch.Tensor, vlm_mask: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        """The velocity (B, K, action_dim) of the noised chunk `actions` at flow time t (B,), given the state
        features (B, state_dim) and the VLM tokens (B, L, vlm_dim) with their mask (B, L)."""
        return self.velocity(self.context(state, vlm, vlm_mask), actions, t)

    def context(self, state: torch.Tensor, vlm: torch.Tensor, vlm_mask: torch.Tensor) -> dict:
        """What the Euler steps share: the state token and every block's VLM keys and values."""
        ctx = self.vlm_in(vlm)
        return {"state": self.state_in(state)[:, None], "memory": [block.memory(ctx) for block in self.blocks],
                "ctx_mask": vlm_mask.bool()}

    def velocity(self, context: dict, actions: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([context["state"], self.action_in(actions, t) + self.action_pos], dim=1)
        cond = self.time_embed(t)
        mods = self.adaln(cond).view(actions.shape[0], 1, MODULATIONS, self.config.hidden)
        (tokens,) = self.run_blocks([tokens], mods, context["memory"], context["ctx_mask"])
        return self.action_out(self.out(tokens[:, 1:], cond))

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Flow-matching loss of the policy over the samples whose data role allows it (high quality): the
        others weigh zero, so a low-quality or action-free sample cannot move it. Returns "loss", and
        "loss/policy" (detached) with its sample count "count/policy"."""
        weight = batch["roles"].bool()[:, POLICY].float()
        actions = batch["actions"]
        t = sample_flow_time(actions.shape[0], self.config, actions.device).to(actions.dtype)
        noise = torch.randn_like(actions)
        v = self(noised(actions, noise, t), batch["state"], batch["vlm"], batch["vlm_mask"], t)
        per_sample = (v.float() - (actions - noise).float()).pow(2).mean(dim=(1, 2)) * weight
        loss = per_sample.sum() / weight.sum().clamp(min=1)
        return {"loss": loss, "loss/policy": loss.detach(), "count/policy": weight.sum().detach()}

    @torch.inference_mode()
    def sample(self, objective: int, *, state: torch.Tensor, vlm: torch.Tensor, vlm_mask: torch.Tensor,
               steps: int | None = None, noise: torch.Tensor | None = None, obs: torch.Tensor | None = None,
               past_actions: torch.Tensor | None = None, actions: torch.Tensor | None = None,
               future: torch.Tensor | None = None, has_actions: torch.Tensor | None = None) -> torch.Tensor:
        """An action chunk (B, K, action_dim) integrated from `noise` (default: drawn) in Euler steps. Only the
        policy objective exists; obs, past_actions, actions, future and has_actions, which LDA reads, are
        accepted and unread, so that one call serves every family."""
        if objective != POLICY:
            raise ValueError(f"GR00T learns the policy only; it cannot sample {OBJECTIVES[objective]}")
        c = self.config
        shape = (state.shape[0], c.action_chunk, c.action_dim)
        x = torch.randn(shape, device=state.device, dtype=state.dtype) if noise is None else noise
        context = self.context(state, vlm, vlm_mask)
        return euler(lambda x, t: self.velocity(context, x, t), x, steps or c.sample_steps)
