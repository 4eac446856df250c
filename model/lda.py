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

import torch
import torch.nn as nn

from model.blocks import (MODULATIONS, Block, FlowTransformer, OutputHead, TimestepEmbedder, draw_objectives, euler,
                          noised, objective_losses, sample_flow_time, two_layer_mlp)
from model.config import ACTION_TARGET, FORECAST, OBJECTIVES, POLICY, VISUAL_TARGET, LDAConfig


class LDA(FlowTransformer):
    """The LDA network. ``forward`` predicts flow velocities; ``loss`` trains; ``sample`` integrates."""

    objectives = OBJECTIVES

    def __init__(self, config: LDAConfig):
        super().__init__()
        self.config = c = config
        h = c.hidden
        streams = 2 if c.backbone == "mmdit" else 1
        # modality-specific input heads
        self.state_in = two_layer_mlp(c.state_dim, h)
        self.action_in = two_layer_mlp(c.action_dim, h)
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
        """AdaLN-Zero (FlowTransformer.initialize), both output heads starting at zero."""
        self.initialize((self.action_pos, self.patch_pos, self.frame_pos, self.action_register, self.visual_register,
                         self.objective_embed.weight),
                        tuple(layer for head in (self.action_out, self.visual_out)
                              for layer in (head.modulation[-1], head.linear)))

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
        keep = tuple(k for k in range(2) if outputs[k]) if mmdit else None
        xs = self.run_blocks(xs, mods, context["memory"], context["ctx_mask"], keep)
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
        objective, weight = draw_objectives(batch["roles"], objective)
        actions, future = batch["actions"], batch["future"]
        t = sample_flow_time(actions.shape[0], self.config, actions.device).to(actions.dtype)
        noise_a, noise_f = torch.randn_like(actions), torch.randn_like(future)
        action_target = torch.isin(objective, torch.tensor(ACTION_TARGET, device=objective.device))
        visual_target = torch.isin(objective, torch.tensor(VISUAL_TARGET, device=objective.device))
        x_a = torch.where(action_target[:, None, None], noised(actions, noise_a, t), actions)
        x_f = torch.where(visual_target[:, None, None], noised(future, noise_f, t), future)
        v_a, v_f = self(x_a, x_f, batch["obs"], batch["past_actions"], batch["state"], batch["vlm"],
                        batch["vlm_mask"], t, objective, batch.get("has_actions"))
        err_a = (v_a.float() - (actions - noise_a).float()).pow(2).mean(dim=(1, 2))
        err_f = (v_f.float() - (future - noise_f).float()).pow(2).mean(dim=(1, 2))
        return objective_losses(torch.where(action_target, err_a, err_f), objective, weight)

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

        def velocity(x, t):
            v_a, v_f = self.velocity(context, x if target_actions else actions, future if target_actions else x,
                                     t, obj, outputs)
            return v_a if target_actions else v_f
        return euler(velocity, x, steps)
