"""UWM, the Unified World Model (Zhu et al., RSS 2025), built from LDA's blocks: one diffusion transformer
over the action chunk and the future frame's VAE latents, with a DDPM timestep of its own for each.

Holding one modality clean (timestep 0) or at pure noise (timestep T - 1) while the other is denoised
chooses what the network does; the four modes are LDA's four objectives:

    policy               p(a | o)       chunk denoised,   future at pure noise
    forward dynamics     p(o' | o, a)   future denoised,  chunk clean
    inverse dynamics     p(a | o, o')   chunk denoised,   future clean
    video prediction     p(o' | o)      future denoised,  chunk at pure noise

The current observation (the history frames' VAE latents and the robot state; with `language`, UWM-XL's,
the VLM's tokens of the current image and instruction too) is the memory every block cross-attends to.
``backbone="dit"`` runs one stream over action, future-patch and register tokens; ``"mmdit"`` gives the
action tokens and the future patches (with the registers) a stream each, LDA's MM-DiT.

What it takes from WEIRDLabUW/unified-world-model (read, not copied; `models/uwm/uwm.py`,
`models/uwm/obs_encoder.py`, `models/common/transforms.py`, `configs/model/uwm.yaml`,
`configs/template_train.yaml`, `experiments/uwm/train.py`):

- DiT width 768, 12 heads, depth 12, MLP ratio 4, 8 learned register tokens, a learned position embedding
  on every token (`DualNoisePredictionNet`, configs/model/uwm.yaml).
- tokens: one per action step (a two-layer MLP in and out), and one per 4 x 4 patch of the future frames'
  latents (`latent_patch_shape` [2, 4, 4]: two future frames patched together in time), then registers.
- two timesteps, each embedded sinusoidally, the two joined by an MLP (`DualTimestepEncoder`), conditioning
  every block through AdaLN.
- DDPM: 100 training timesteps (`num_train_steps`), `squaredcos_cap_v2` betas, noise (epsilon) prediction,
  the two timesteps drawn independently and uniformly; action-free video holds the actions at the last
  timestep (`action_mask`); sampling with diffusers' DDIMScheduler in 10 steps (`num_inference_steps`),
  clean estimates clipped (`clip_sample`).
- modes: the marginal action (the policy, UWM's `sample`) holds the future at the first DDIM timestep,
  i.e. noise; forward dynamics holds the actions clean at timestep 0, inverse dynamics the future
  (`sample_forward_dynamics`, `sample_inverse_dynamics`, `sample_marginal_next_obs`).
- latents: `stabilityai/sdxl-vae` through diffusers' AutoencoderKL, images in [-1, 1], latents times the
  VAE's scaling factor (then / 3) (`VAEDownsample`); the current frames (2) through an ImageNet ResNet-18
  into a 768-wide vector each, joined with the timestep embedding as the AdaLN condition
  (`UWMObservationEncoder`, `vision_backbone: resnet`, `use_low_dim: False`, `use_language: False`).

Where this network differs (README, "UWM family"): LDA's blocks (AdaLN-Zero with one shared projection,
AdaLN-single; QK-norm; a cross-attention per block), so the current observation's tokens are cross-attended
to rather than pooled into the AdaLN condition, and the robot state is read; the two timestep embeddings
are summed, not joined by one MLP; the project's sampling (history frames t - 8 and t, one future frame 16
steps ahead, cached VAE latent means normalised per channel) in place of upstream's two current and two
future frames; each sample trains one mode, drawn from what its data role allows (as LDA's objectives),
where upstream trains both modalities at two independent uniform timesteps; the held modality is exactly
clean or exactly pure noise at timestep T - 1; clean estimates are clipped at +-5 in our z-scored units
(upstream: +-1 of data it scales into about [-1, 1]).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from model.blocks import (MODULATIONS, Block, DiffusionSchedule, FlowTransformer, OutputHead, TimestepEmbedder,
                          draw_objectives, objective_losses, two_layer_mlp)
from model.config import ACTION_TARGET, FORWARD, INVERSE, OBJECTIVES, UWMConfig

CONDITIONING = (FORWARD, INVERSE)  # modes that hold the other modality clean; the others hold it at pure noise


class UWM(FlowTransformer):
    """The UWM network. ``forward`` predicts each modality's noise; ``loss`` trains; ``sample`` denoises."""

    objectives = OBJECTIVES

    def __init__(self, config: UWMConfig):
        super().__init__()
        self.config = c = config
        h = c.hidden
        streams = 2 if c.backbone == "mmdit" else 1
        self.side = c.patch_grid // c.latent_patch  # latent patches per side
        patch_dim = c.latent_patch ** 2 * c.dino_dim
        self.action_in = two_layer_mlp(c.action_dim, h)
        self.latent_in = nn.Linear(patch_dim, h)
        self.state_in = two_layer_mlp(c.state_dim, h)
        self.vlm_in = nn.Sequential(nn.LayerNorm(c.vlm_dim), nn.Linear(c.vlm_dim, h)) if c.language else None
        self.action_pos = nn.Parameter(torch.zeros(c.action_chunk, h))
        self.patch_pos = nn.Parameter(torch.zeros(self.side ** 2, h))
        self.frame_pos = nn.Parameter(torch.zeros(c.history + 1, h))
        self.registers = nn.Parameter(torch.zeros(c.registers, h))
        # conditioning: the two timesteps, mapped once to every block's AdaLN parameters
        self.time_embed = TimestepEmbedder(h)        # the action chunk's
        self.future_time_embed = TimestepEmbedder(h)  # the future frame's
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(h, streams * MODULATIONS * h))
        self.blocks = nn.ModuleList(Block(h, c.heads, c.mlp_ratio, streams) for _ in range(c.layers))
        self.action_out = OutputHead(h, c.action_dim)
        self.latent_out = OutputHead(h, patch_dim)
        self.schedule = DiffusionSchedule(c.diffusion_steps, c.beta_schedule, c.clip_sample)
        self.initialize((self.action_pos, self.patch_pos, self.frame_pos, self.registers),
                        tuple(layer for head in (self.action_out, self.latent_out)
                              for layer in (head.modulation[-1], head.linear)))

    # --- latent patches ----------------------------------------------------------------------------

    def patchify(self, latents: torch.Tensor) -> torch.Tensor:
        """(..., grid*grid, C) latents -> (..., side*side, p*p*C) patches, row-major."""
        c, p, s = self.config, self.config.latent_patch, self.side
        x = latents.reshape(*latents.shape[:-2], s, p, s, p, c.dino_dim).transpose(-4, -3)
        return x.reshape(*latents.shape[:-2], s * s, p * p * c.dino_dim)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        c, p, s = self.config, self.config.latent_patch, self.side
        x = patches.reshape(*patches.shape[:-2], s, s, p, p, c.dino_dim).transpose(-4, -3)
        return x.reshape(*patches.shape[:-2], c.patches, c.dino_dim)

    # --- the network -------------------------------------------------------------------------------

    def forward(self, actions: torch.Tensor, future: torch.Tensor, obs: torch.Tensor, state: torch.Tensor,
                vlm: torch.Tensor, vlm_mask: torch.Tensor, t_action: torch.Tensor, t_future: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The noise predicted in the chunk (B, K, action_dim) at timesteps t_action (B,) and in the future
        latents (B, grid*grid, C) at t_future (B,), given the history frames' latents obs (B, H, grid*grid, C),
        the state (B, state_dim) and (read with `language`) the VLM tokens (B, L, vlm_dim) and mask (B, L)."""
        return self.denoise(self.context(obs, state, vlm, vlm_mask), actions, future, t_action, t_future)

    def context(self, obs: torch.Tensor, state: torch.Tensor, vlm: torch.Tensor, vlm_mask: torch.Tensor) -> dict:
        """The current observation as every block's cross-attention keys and values: the state token, the
        history frames' latent patches and, with `language`, the VLM tokens. Sampling computes it once."""
        c = self.config
        history = self.latent_in(self.patchify(obs)) + self.patch_pos + self.frame_pos[:c.history, None]
        tokens = [self.state_in(state)[:, None], history.flatten(1, 2)]
        mask = torch.ones(obs.shape[0], 1 + history.shape[1] * history.shape[2], dtype=torch.bool, device=obs.device)
        if c.language:
            tokens.append(self.vlm_in(vlm))
            mask = torch.cat([mask, vlm_mask.bool()], dim=1)
        memory = torch.cat(tokens, dim=1)
        return {"memory": [block.memory(memory) for block in self.blocks], "ctx_mask": mask}

    def denoise(self, context: dict, actions: torch.Tensor, future: torch.Tensor, t_action: torch.Tensor,
                t_future: torch.Tensor, outputs: tuple[bool, bool] = (True, True)
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """`forward` from a precomputed `context`. `outputs` says which of (action, future) noises to predict;
        the other comes back as None, and with the MM-DiT its stream skips the last block's work."""
        c = self.config
        b = actions.shape[0]
        chunk = self.action_in(actions) + self.action_pos
        patches = self.latent_in(self.patchify(future)) + self.patch_pos + self.frame_pos[c.history]
        visual = torch.cat([patches, self.registers.expand(b, -1, -1).to(patches.dtype)], dim=1)
        steps = c.diffusion_steps
        cond = self.time_embed(t_action.float() / steps) + self.future_time_embed(t_future.float() / steps)
        mods = self.adaln(cond).view(b, -1, MODULATIONS, c.hidden)
        mmdit = c.backbone == "mmdit"
        xs = [chunk, visual] if mmdit else [torch.cat([chunk, visual], dim=1)]
        keep = tuple(k for k in range(2) if outputs[k]) if mmdit else None
        xs = self.run_blocks(xs, mods, context["memory"], context["ctx_mask"], keep)
        if not mmdit:
            xs = list(xs[0].split([chunk.shape[1], visual.shape[1]], dim=1))
        noise_a = self.action_out(xs[0], cond) if outputs[0] else None
        noise_f = self.unpatchify(self.latent_out(xs[1][:, :self.side ** 2], cond)) if outputs[1] else None
        return noise_a, noise_f

    # --- training ----------------------------------------------------------------------------------

    def loss(self, batch: dict[str, torch.Tensor], objective: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Noise-prediction loss for one batch, each sample on one mode that its data role allows (drawn
        uniformly unless given; a forbidden one weighs zero, so it cannot move that mode's loss).

        The target modality is noised at a timestep drawn uniformly from the DDPM's; the other is held
        clean at timestep 0 (forward and inverse dynamics) or replaced by pure noise at T - 1 (policy and
        video prediction: what they marginalise). Returns "loss" and, per mode, its mean and sample count.
        """
        c = self.config
        objective, weight = draw_objectives(batch["roles"], objective)
        actions, future = batch["actions"], batch["future"]
        b, device = actions.shape[0], actions.device
        t = torch.randint(0, c.diffusion_steps, (b,), device=device)
        noise_a, noise_f = torch.randn_like(actions), torch.randn_like(future)
        action_target = torch.isin(objective, torch.tensor(ACTION_TARGET, device=device))
        clean = torch.isin(objective, torch.tensor(CONDITIONING, device=device))
        held_t = torch.where(clean, 0, c.diffusion_steps - 1)
        t_a, t_f = torch.where(action_target, t, held_t), torch.where(action_target, held_t, t)

        def inputs(x, noise, target):  # the target noised at t; the held modality clean or pure noise
            held = torch.where(clean[:, None, None], x, noise)
            return torch.where(target[:, None, None], self.schedule.add_noise(x, noise, t), held)
        eps_a, eps_f = self(inputs(actions, noise_a, action_target), inputs(future, noise_f, ~action_target),
                            batch["obs"], batch["state"], batch["vlm"], batch["vlm_mask"], t_a, t_f)
        err_a = (eps_a.float() - noise_a.float()).pow(2).mean(dim=(1, 2))
        err_f = (eps_f.float() - noise_f.float()).pow(2).mean(dim=(1, 2))
        return objective_losses(torch.where(action_target, err_a, err_f), objective, weight)

    # --- inference ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def sample(self, objective: int, *, obs: torch.Tensor, state: torch.Tensor, vlm: torch.Tensor,
               vlm_mask: torch.Tensor, actions: torch.Tensor | None = None, future: torch.Tensor | None = None,
               steps: int | None = None, noise: torch.Tensor | None = None, held_noise: torch.Tensor | None = None,
               past_actions: torch.Tensor | None = None, has_actions: torch.Tensor | None = None) -> torch.Tensor:
        """Denoise from `noise` (default: drawn) in DDIM steps: the action chunk for the policy and inverse
        dynamics, the future latents for forward dynamics and video prediction. Give the condition that a
        mode holds clean (actions for forward dynamics, future for inverse dynamics). The modality a mode
        marginalises is held at pure noise, `held_noise` or by default one fixed draw (seed 0) for every row: the
        network learned to ignore it, and a fixed draw keeps the result a function of `noise` alone.
        past_actions and has_actions, which LDA reads, are accepted and unread."""
        c = self.config
        b, device, dtype = obs.shape[0], obs.device, obs.dtype
        a_shape, f_shape = (b, c.action_chunk, c.action_dim), (b, c.patches, c.dino_dim)
        target_actions = objective in ACTION_TARGET
        shape, held_shape = (a_shape, f_shape) if target_actions else (f_shape, a_shape)
        if objective in CONDITIONING:
            held, held_t = (future if target_actions else actions), 0
            if held is None:
                raise ValueError(f"{OBJECTIVES[objective]} holds the {'future' if target_actions else 'actions'} "
                                 f"clean: give them")
        else:
            held, held_t = held_noise, c.diffusion_steps - 1
            if held is None:
                row = torch.randn(held_shape[1:], generator=torch.Generator().manual_seed(0))
                held = row.to(device, dtype).expand(held_shape)  # every row the same: not a function of its batch
        x = torch.randn(shape, device=device, dtype=dtype) if noise is None else noise
        held_t = torch.full((b,), held_t, device=device, dtype=torch.long)
        context = self.context(obs, state, vlm, vlm_mask)
        outputs = (target_actions, not target_actions)

        def predict_noise(x, t):
            if target_actions:
                return self.denoise(context, x, held, t, held_t, outputs)[0]
            return self.denoise(context, held, x, held_t, t, outputs)[1]
        return self.schedule.sample(predict_noise, x, steps or c.sample_steps)
