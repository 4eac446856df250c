"""Training and finetuning LDA and the baselines: one process, DDP or FSDP under torchrun, or a Slurm job
through submitit. The preset names the family (model/config.py); the loop, data, cache and checkpoints are
the same for every family, whose network trains the objectives it has (`objectives`).

A run lives in one folder: `checkpoint.pt` (written to a temporary file and renamed, so a kill never leaves
a torn checkpoint), `log.jsonl` (one line per logged step and per evaluation) and `train_config.json`.
Starting a run whose folder has a checkpoint resumes it: model, optimizer, schedule and step come back,
the data order is a pure function of (seed, step), and every step draws its noise, flow times and
objectives from a generator seeded by (seed, step, rank). So a resumed run takes exactly the steps an
uninterrupted one would have taken, whatever the number of restarts.

The encoders are frozen and their features cached, except in finetuning with `unfreeze_vlm`: the VLM then
trains with its own learning rate, encodes the frame and instruction of every sample in every step (its
cached tokens would be stale after the first), is evaluated and saved as it is now, and acts so in the policy.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from model.cache import FeatureCache
from model.config import (FORECAST, FORWARD, INVERSE, OBJECTIVES, POLICY, ModelConfig, build_model,
                          config_from_dict, get_config)
from model.data import (LDASamples, Normalizer, collate, encode_episodes, load_episodes, split_episodes,
                        visual_sample)
from model.blocks import FlowTransformer
from model.encoders import build_encoders, encoder_state, DinoEncoder, VAEEncoder, VLMEncoder

CHECKPOINT = "checkpoint.pt"
FORMAT = "lda-checkpoint-1"


@dataclass
class TrainConfig:
    """One training or finetuning run. Defaults follow the LDA release (AdamW 0.9/0.95, LR 1e-4, cosine to a
    minimum LR, grad clip 1.0), scaled down in steps and warmup."""

    model: str = "tiny"                       # preset name (model/config.py)
    model_overrides: dict[str, Any] = field(default_factory=dict)
    data: list[str] = field(default_factory=list)
    out: str = "runs/lda"
    cache: str | None = None                  # feature cache folder (default: <out>/features)
    dino: str | None = None                   # DINOv3 local path or hub id; None: tiny random encoder
    vae: str | None = None                    # UWM's VAE (AutoencoderKL, e.g. SDXL's): local path or hub id; None: tiny
    vlm: str | None = None                    # Qwen3-VL local path or hub id; None: tiny random encoder
    init_from: str | None = None              # finetuning: the checkpoint whose weights to start from
    steps: int = 2000
    batch_size: int = 32                      # global batch, split over ranks
    lr: float = 1e-4
    min_lr: float = 5e-7
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    holdout: float = 0.1                      # fraction of episodes held out for evaluation
    eval_every: int = 500                     # 0: no evaluation
    eval_samples: int = 128
    ckpt_every: int = 500
    keep_every: int = 0                       # also keep checkpoints/step-NNNNNN.pt every N steps (0: none)
    log_every: int = 20
    seed: int = 0
    num_workers: int = 0
    strategy: str = "auto"                    # "ddp" | "fsdp" | "auto" (fsdp for hidden >= 1536 on > 1 rank)
    compile: bool = False                     # torch.compile each block (GPU: lda-1b steps 1.8x faster on an H100)
    unfreeze_vlm: bool = False                # finetuning: train the VLM too, its tokens encoded live each step
    vlm_lr: float = 1e-5                      # the VLM's peak learning rate when it trains (same schedule)

    @classmethod
    def load(cls, source: str | Path, **overrides: Any) -> TrainConfig:
        """A preset name (`tiny`, `lda-1b`, ...) or a JSON/YAML file of fields; overrides win (None ignored)."""
        path = Path(source)
        if path.is_file():
            text = path.read_text()
            if path.suffix in (".yaml", ".yml"):
                import yaml

                values = yaml.safe_load(text) or {}
            else:
                values = json.loads(text)
        else:
            get_config(str(source))  # raises KeyError naming the presets
            values = {"model": str(source)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown} in {source}")
        return cls(**values)


# --- checkpoints ---------------------------------------------------------------------------------------

def save_checkpoint(path: Path | str, payload: dict[str, Any]) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename over the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def checkpoint_payload(model_config: ModelConfig, model_state: dict, normalizer: Normalizer, dino: DinoEncoder,
                       vlm: VLMEncoder, vlm_state: dict | None = None, **training: Any) -> dict[str, Any]:
    """What a checkpoint holds: enough to act (network, statistics, encoders, finetuned ones with their
    weights) and, in `training` (step, train_config, optimizer, scheduler), enough to resume. `vlm_state`:
    the weights of a VLM sharded over ranks, gathered."""
    return {"format": FORMAT, "model_config": model_config.to_dict(), "model": model_state,
            "normalizer": normalizer.to_dict(), "encoders": {"dino": dino.spec(), "vlm": vlm.spec()},
            "encoder_state": encoder_state(dino, vlm, vlm_state), **training}


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no LDA checkpoint at {path}")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an LDA checkpoint (format {payload.get('format')!r}, expected {FORMAT!r})")
    return payload


def load_model(path: Path | str, device: str | torch.device = "cpu"
               ) -> tuple[FlowTransformer, Normalizer, DinoEncoder, VLMEncoder]:
    """The network (of the family the checkpoint names), its normalisation statistics and the encoders it
    was trained with, ready to act."""
    payload = load_checkpoint(path)
    model = build_model(config_from_dict(payload["model_config"]))
    model.load_state_dict(payload["model"])
    normalizer = Normalizer.from_dict(payload["normalizer"])
    normalizer.check(model.config)
    dino, vlm = build_encoders(payload["encoders"], payload.get("encoder_state"))
    return model.to(device).eval(), normalizer, dino.to(device), vlm.to(device)


# --- schedule and data order ---------------------------------------------------------------------------

def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to 1, then cosine down to min_lr / lr at the last step."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    floor = cfg.min_lr / cfg.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class StepBatches(torch.utils.data.Sampler):
    """The sample indices of every step from `start` on: epoch e is a permutation seeded by (seed, e);
    rank r of w takes every w-th index of the global batch."""

    def __init__(self, size: int, batch: int, start: int, steps: int, seed: int, rank: int = 0, world: int = 1):
        if size < batch:
            raise ValueError(f"{size} training samples cannot fill a batch of {batch}")
        self.size, self.batch, self.start, self.steps = size, batch, start, steps
        self.seed, self.rank, self.world = seed, rank, world

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self):
        per_epoch = self.size // self.batch
        for step in range(self.start, self.steps):
            epoch, position = divmod(step, per_epoch)
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))
            yield order[position * self.batch:(position + 1) * self.batch][self.rank::self.world].tolist()


def seed_step(seed: int, step: int, rank: int) -> None:
    torch.manual_seed((seed * 1_000_003 + step) * 64 + rank)


# --- evaluation ----------------------------------------------------------------------------------------

# The objective whose data role a held-out error requires of a sample.
ERROR_OBJECTIVE = {"policy/action_l1": POLICY, "inverse_dynamics/action_l1": INVERSE,
                   "forward_dynamics/feature_mse": FORWARD, "visual_forecasting/feature_mse": FORECAST,
                   "baseline/hold_last_action_l1": POLICY, "baseline/unchanged_frame_mse": FORECAST}


def with_vlm_tokens(batch: dict[str, Any], vlm: VLMEncoder | None) -> dict[str, Any]:
    """The batch with VLM tokens: its cached ones, or, when it carries the VLM's frames and instructions
    (the VLM trains), encoded from them now by `vlm` as it is now."""
    if "vlm_image" not in batch:
        return batch
    if vlm is None:
        raise ValueError("these samples carry frames for a live VLM (unfreeze_vlm): give the VLM to encode them")
    tokens, mask = vlm.encode(batch["vlm_image"], batch["instruction"])
    return {**batch, "vlm": tokens, "vlm_mask": mask}


def _to(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: FlowTransformer, samples: LDASamples, count: int = 128, batch_size: int = 64, seed: int = 0,
             device: str | torch.device = "cpu", vlm: VLMEncoder | None = None) -> dict[str, float]:
    """Held-out errors of what each objective generates (Euler sampling from noise, fixed seed):
    action L1 in radians for policy and inverse dynamics, feature MSE (normalised units) for forward
    dynamics and visual forecasting; and, as yardsticks, the errors of holding the last action (in a
    relative action space its reference, the zero chunk) and of predicting an unchanged frame. Each error
    averages over the samples whose data role trains its objective (ERROR_OBJECTIVE); an error no sample
    qualifies for is left out. Samples of a live VLM (`vlm_id` None) are encoded by `vlm`, in eval mode."""
    modes = [(m, m.training) for m in (model, vlm) if m is not None]
    for m, _ in modes:
        m.eval()
    acting = [i for i, (e, _) in enumerate(samples.index) if samples.episodes[e].actions is not None]
    chosen = [acting[int(j)] for j in np.linspace(0, len(acting) - 1, min(count, len(acting)))] if acting else []
    generator = torch.Generator(device="cpu").manual_seed(seed)
    std = torch.as_tensor(samples.normalizer.chunk_std)  # radians per unit of the chunk, in either action space
    sums: dict[str, tuple[float, int]] = {}  # error -> (sum, samples)
    for start in range(0, len(chosen), batch_size):
        batch = with_vlm_tokens(_to(collate([samples[i] for i in chosen[start:start + batch_size]]), device), vlm)
        cond = dict(obs=batch["obs"], past_actions=batch["past_actions"], state=batch["state"], vlm=batch["vlm"],
                    vlm_mask=batch["vlm_mask"], has_actions=batch["has_actions"])
        noise = lambda shape: torch.randn(shape, generator=generator).to(device)  # noqa: E731
        a_shape, f_shape = batch["actions"].shape, batch["future"].shape
        radians = lambda a: ((a - batch["actions"]).abs().cpu() * std).mean(dim=(1, 2))  # noqa: E731
        mse = lambda f: (f - batch["future"]).pow(2).mean(dim=(1, 2)).cpu()  # noqa: E731
        generated = {  # in this order, each drawing its noise from the one generator
            "policy/action_l1": lambda: radians(model.sample(POLICY, **cond, noise=noise(a_shape))),
            "inverse_dynamics/action_l1": lambda: radians(
                model.sample(INVERSE, **cond, future=batch["future"], noise=noise(a_shape))),
            "forward_dynamics/feature_mse": lambda: mse(
                model.sample(FORWARD, **cond, actions=batch["actions"], noise=noise(f_shape))),
            "visual_forecasting/feature_mse": lambda: mse(model.sample(FORECAST, **cond, noise=noise(f_shape))),
        }
        errors = {key: error() for key, error in generated.items()
                  if OBJECTIVES[ERROR_OBJECTIVE[key]] in model.objectives}
        hold = (torch.zeros_like(batch["actions"]) if samples.normalizer.relative
                else batch["past_actions"][:, -1:].expand_as(batch["actions"]))
        errors["baseline/hold_last_action_l1"] = radians(hold)
        if any(OBJECTIVES[k] in model.objectives for k in (FORWARD, FORECAST)):
            errors["baseline/unchanged_frame_mse"] = mse(batch["obs"][:, -1])
        roles = batch["roles"].bool().cpu()
        for key, value in errors.items():
            # each error over the samples whose data role trains what it measures: low-quality episodes
            # are no policy targets, so neither the policy error nor its hold-last yardstick counts them
            counted = roles[:, ERROR_OBJECTIVE[key]]
            total, count = sums.get(key, (0.0, 0))
            sums[key] = (total + float(value[counted].sum()), count + int(counted.sum()))
    for m, mode in modes:
        m.train(mode)
    return {key: total / count for key, (total, count) in sums.items() if count}


# --- the run -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun / Slurm job (rank 0 of 1 when run alone)."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init_ranks() -> Ranks:
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(rank, world, device)


class TrainingObjective(torch.nn.Module):
    """The loss as a module's forward, so DDP's and FSDP's hooks see the whole computation: with a VLM that
    trains, its encoding of the batch too."""

    def __init__(self, network: FlowTransformer, vlm: VLMEncoder | None = None):
        super().__init__()
        self.network = network
        self.vlm = vlm

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.network.loss(with_vlm_tokens(batch, self.vlm))


def _encoders(cfg: TrainConfig, model_config: ModelConfig, base: dict | None
              ) -> tuple[DinoEncoder | VAEEncoder, VLMEncoder]:
    """Finetuning keeps the encoders of the checkpoint it starts from; a new run loads or builds them. The
    frame encoder is the one the family reads (`frame_encoder`: DINOv3, or UWM's VAE); "dino" names it."""
    if base is not None:
        dino, vlm = build_encoders(base["encoders"], base.get("encoder_state"))
    else:
        size = model_config.image_size
        if model_config.frame_encoder == VAEEncoder.kind:
            dino = VAEEncoder.from_pretrained(cfg.vae, size) if cfg.vae else VAEEncoder.tiny(size)
        else:
            dino = DinoEncoder.from_pretrained(cfg.dino) if cfg.dino else DinoEncoder.tiny(size)
        vlm = (VLMEncoder.from_pretrained(cfg.vlm, model_config.image_size) if cfg.vlm
               else VLMEncoder.tiny(model_config.image_size))
    if (dino.grid, dino.dim, vlm.dim) != (model_config.patch_grid, model_config.dino_dim, model_config.vlm_dim):
        raise ValueError(f"the encoders give a {dino.grid}x{dino.grid}x{dino.dim} {dino.kind} grid and {vlm.dim}-wide "
                         f"VLM tokens; preset {model_config.name!r} expects {model_config.patch_grid}x"
                         f"{model_config.patch_grid}x{model_config.dino_dim} and {model_config.vlm_dim}")
    return dino, vlm


def _param_groups(objective: TrainingObjective, cfg: TrainConfig) -> list[dict]:
    """The network's weights at cfg.lr (matrices decayed; biases, norms, embeddings not) and, when the VLM trains,
    its weights as one more group at cfg.vlm_lr, without decay; the schedule scales every group alike."""
    decay, plain = [], []
    for name, p in objective.network.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and "pos" not in name and "embed" not in name else plain).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    if objective.vlm is not None:
        groups.append({"params": [p for p in objective.vlm.parameters() if p.requires_grad], "lr": cfg.vlm_lr,
                       "weight_decay": 0.0})
    return groups


def _wrap(objective: TrainingObjective, cfg: TrainConfig, ranks: Ranks) -> torch.nn.Module:
    if ranks.world == 1:
        return objective
    strategy = cfg.strategy
    if strategy == "auto":
        strategy = "fsdp" if objective.network.config.hidden >= 1536 else "ddp"
    if strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

        precision = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for block in objective.network.blocks:
            fully_shard(block, mp_policy=precision)
            register_fsdp_forward_method(block, "memory")  # called outside forward: it must gather the weights too
        for layer in objective.vlm.layers() if objective.vlm is not None else []:
            fully_shard(layer, mp_policy=precision)
        return fully_shard(objective, mp_policy=precision)
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(objective, device_ids=[ranks.device.index] if ranks.device.type == "cuda" else None)
    raise ValueError(f"strategy must be ddp, fsdp or auto; got {cfg.strategy!r}")


def _sharded(wrapped: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(wrapped, FSDPModule)


def _full_states(wrapped: torch.nn.Module, optimizer, ranks: Ranks) -> tuple[dict[str, dict], dict | None]:
    """Unsharded state of each part of the objective ("network", and "vlm" when it trains), and of the optimizer
    if given, on every rank's CPU (a collective under FSDP)."""
    if ranks.world == 1:
        return ({name: part.state_dict() for name, part in wrapped.named_children()},
                optimizer.state_dict() if optimizer else None)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    if optimizer is None:
        model_state, optim_state = get_model_state_dict(wrapped, options=options), None
    else:
        model_state, optim_state = get_state_dict(wrapped, optimizer, options=options)
    parts: dict[str, dict] = {}
    for key, value in model_state.items():
        part, _, name = key.removeprefix("module.").partition(".")
        parts.setdefault(part, {})[name] = value
    return parts, optim_state


def _load_optimizer(wrapped: torch.nn.Module, optimizer, state: dict, ranks: Ranks) -> None:
    if ranks.world == 1:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(wrapped, optimizer, state, options=StateDictOptions(full_state_dict=True))


class RunLog:
    """Progress to stdout and to <out>/log.jsonl (rank 0 only)."""

    def __init__(self, out: Path, enabled: bool, echo=print):
        self.path, self.enabled, self.echo = out / "log.jsonl", enabled, echo

    def __call__(self, record: dict[str, Any], text: str | None = None) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.echo and text:
            self.echo(text)


def train(cfg: TrainConfig, echo=print) -> dict[str, Any]:
    """Run (or resume) one training run to cfg.steps; returns the last logged losses and evaluation."""
    if not cfg.data:
        raise ValueError("no training data: give one or more dataset folders (--data DIR)")
    ranks = init_ranks()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    resume = load_checkpoint(out / CHECKPOINT) if (out / CHECKPOINT).is_file() else None
    base = load_checkpoint(cfg.init_from) if cfg.init_from and resume is None else None
    if resume is not None:
        model_config = config_from_dict(resume["model_config"])
    elif base is not None:
        model_config = config_from_dict({**base["model_config"], **cfg.model_overrides})
    else:
        model_config = get_config(cfg.model, **cfg.model_overrides)
    if resume is not None and resume.get("train_config", {}).get("unfreeze_vlm", False) != cfg.unfreeze_vlm:
        raise ValueError(f"{out} holds a run with unfreeze_vlm={not cfg.unfreeze_vlm}: resume it with the same "
                         f"setting, or finetune from its checkpoint into a new run folder")
    log = RunLog(out, ranks.main, echo)
    if ranks.main:
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))

    # data: encode every frame once into the cache, then fit (or restore) the normalisation statistics. A VLM
    # that trains is not cached: the samples carry the frames it reads, and it encodes them in every step.
    dino, vlm = _encoders(cfg, model_config, resume or base)
    # a VLM that trains keeps float32 weights (autocast still computes in bfloat16): bfloat16 weights would
    # round its small steps at vlm_lr away
    live_vlm = vlm.unfreeze().float().to(ranks.device) if cfg.unfreeze_vlm else None
    episodes = load_episodes(cfg.data)
    train_episodes, held_out = split_episodes(episodes, cfg.holdout, cfg.seed)
    cache = FeatureCache(cfg.cache or out / "features")
    if ranks.main:
        encode_episodes(episodes, cache, dino.to(ranks.device), None if cfg.unfreeze_vlm else vlm.to(ranks.device),
                        model_config.vlm_stride, log=echo)
    ranks.barrier()
    dino_id = dino.encoder_id
    normalizer = (Normalizer.from_dict(resume["normalizer"]) if resume is not None else
                  Normalizer.fit(train_episodes, visual_sample(train_episodes, cache, dino_id, seed=cfg.seed),
                                 relative_chunk=model_config.action_chunk if model_config.relative else None))
    vlm_id = None if cfg.unfreeze_vlm else vlm.encoder_id
    make = lambda eps: LDASamples(eps, model_config, cache, dino_id, vlm_id, normalizer)  # noqa: E731
    train_samples, eval_samples = make(train_episodes), make(held_out)

    # model, optimizer, schedule
    torch.manual_seed(cfg.seed)
    network = build_model(model_config)
    if resume is not None or base is not None:
        network.load_state_dict((resume or base)["model"])
    if cfg.compile:
        network.compile_blocks()
    objective = TrainingObjective(network.to(ranks.device), live_vlm)
    wrapped = _wrap(objective, cfg, ranks)
    optimizer = torch.optim.AdamW(_param_groups(objective, cfg), lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    step = 0
    if resume is not None:
        _load_optimizer(wrapped, optimizer, resume["optimizer"], ranks)
        scheduler.load_state_dict(resume["scheduler"])
        step = int(resume["step"])
        log({"event": "resume", "step": step}, f"resumed {out} at step {step}")
    else:
        log({"event": "start", "params": network.num_params(), "train_samples": len(train_samples),
             "eval_samples": len(eval_samples), "model": model_config.to_dict()},
            f"{model_config.name}: {network.num_params() / 1e6:.2f}M parameters, {len(train_samples)} training samples "
            f"({len(train_episodes)} episodes), {len(eval_samples)} held out ({len(held_out)} episodes)"
            + (f"; the VLM trains too, at lr {cfg.vlm_lr:g}" if cfg.unfreeze_vlm else ""))

    def checkpoint() -> None:
        states, optim_state = _full_states(wrapped, optimizer, ranks)
        if ranks.main:
            save_checkpoint(out / CHECKPOINT, checkpoint_payload(
                model_config, states["network"], normalizer, dino, vlm, states.get("vlm"), step=step,
                train_config=asdict(cfg), optimizer=optim_state, scheduler=scheduler.state_dict()))
            if cfg.keep_every and step % cfg.keep_every == 0:  # a policy of this point of training, to evaluate
                kept = out / "checkpoints" / f"step-{step:06d}.pt"
                kept.parent.mkdir(exist_ok=True)
                kept.unlink(missing_ok=True)
                os.link(out / CHECKPOINT, kept)  # the next save replaces checkpoint.pt's name, not this file
        ranks.barrier()

    def run_eval() -> dict[str, float]:
        """On rank 0 only, with the VLM as it is now when it trains; a sharded model (and VLM) is gathered
        into a full copy first."""
        model, eval_vlm = network, live_vlm
        if ranks.world > 1 and _sharded(wrapped):
            states, _ = _full_states(wrapped, None, ranks)
            if ranks.main:
                model = build_model(model_config).to(ranks.device)
                model.load_state_dict(states["network"])
                if cfg.unfreeze_vlm:
                    eval_vlm = VLMEncoder.from_spec(vlm.spec()).to(ranks.device)
                    eval_vlm.load_state_dict(states["vlm"])
        result = {}
        if ranks.main and len(eval_samples):
            result = evaluate(model, eval_samples, cfg.eval_samples, device=ranks.device, vlm=eval_vlm)
            log({"event": "eval", "step": step, **result},
                f"eval step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
        ranks.barrier()
        return result

    loader = DataLoader(train_samples, collate_fn=collate, num_workers=cfg.num_workers,
                        pin_memory=ranks.device.type == "cuda",
                        batch_sampler=StepBatches(len(train_samples), cfg.batch_size, step, cfg.steps, cfg.seed,
                                                  ranks.rank, ranks.world))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=ranks.device.type == "cuda")
    window: dict[str, float] = {}
    last: dict[str, Any] = {}
    if step == 0 and cfg.eval_every:
        run_eval()  # the errors at initialisation: the yardstick for every later evaluation
    tic = time.perf_counter()
    wrapped.train()
    for batch in loader:
        seed_step(cfg.seed, step, ranks.rank)
        batch = _to(batch, ranks.device)
        with autocast:
            losses = wrapped(batch)
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(wrapped.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        for name in network.objectives:
            count = losses[f"count/{name}"]
            window[name] = window.get(name, 0.0) + float(losses[f"loss/{name}"] * count)
            window[f"n/{name}"] = window.get(f"n/{name}", 0.0) + float(count)
        window["loss"] = window.get("loss", 0.0) + float(losses["loss"].detach())
        window["steps"] = window.get("steps", 0) + 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            totals = torch.tensor([window[k] for k in sorted(window)], dtype=torch.float64, device=ranks.device)
            if ranks.world > 1:
                dist.all_reduce(totals)
            window = dict(zip(sorted(window), totals.tolist()))
            elapsed = time.perf_counter() - tic
            last = {"event": "train", "step": step, "loss": window["loss"] / window["steps"],
                    "lr": scheduler.get_last_lr()[0], **({"vlm_lr": scheduler.get_last_lr()[-1]} if cfg.unfreeze_vlm else {}),
                    "grad_norm": float(grad_norm),
                    "samples_per_s": window["steps"] * cfg.batch_size / ranks.world / elapsed,
                    **{f"loss/{n}": window[n] / window[f"n/{n}"] for n in network.objectives if window[f"n/{n}"]}}
            log(last, f"step {step}/{cfg.steps} loss {last['loss']:.4f} "
                + " ".join(f"{n.split('_')[0]} {last[f'loss/{n}']:.4f}" for n in network.objectives if f"loss/{n}" in last)
                + f" lr {last['lr']:.2e} |g| {last['grad_norm']:.2f} {last['samples_per_s']:.0f} samples/s")
            window, tic = {}, time.perf_counter()
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
            run_eval()
        if step % cfg.ckpt_every == 0 or step == cfg.steps or (cfg.keep_every and step % cfg.keep_every == 0):
            checkpoint()
    return {"train": last, "eval": run_eval() if cfg.eval_every and step == cfg.steps else {}, "step": step}


def finetune_config(checkpoint: str | Path, data: list[str], out: str, **options: Any) -> TrainConfig:
    """A run that continues a checkpoint's weights (and keeps its encoders) on new data, with the
    normalisation statistics refitted to that data; unset options keep the checkpoint's run's values, but
    the VLM trains only when asked or when the model's preset says so (`tune_vlm`, gr00t-ei)."""
    base = load_checkpoint(checkpoint)
    if options.get("unfreeze_vlm") is None:
        options["unfreeze_vlm"] = config_from_dict(base["model_config"]).tune_vlm
    return TrainConfig(**{**base.get("train_config", {}), "data": list(data), "out": out, "cache": None,
                          "init_from": str(checkpoint), **{k: v for k, v in options.items() if v is not None}})


def launch(cfg: TrainConfig, slurm_profile: str | Path | None = None) -> dict[str, Any] | None:
    """Train here (or as one rank of torchrun), or submit to Slurm when a profile is given."""
    if slurm_profile is None:
        return train(cfg)
    job = submit(cfg, slurm_profile)
    print(f"submitted Slurm job {job.job_id}: run folder {cfg.out}, submitit logs {Path(cfg.out) / 'slurm'}")
    return None


# --- Slurm ---------------------------------------------------------------------------------------------

class TrainJob:
    """A training run as a submitit job: torch.distributed from Slurm's variables, and requeued with the
    same run folder on preemption or timeout, so it resumes from its last checkpoint."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    def __call__(self) -> dict[str, Any]:
        import submitit

        if submitit.JobEnvironment().num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return train(self.cfg)

    def checkpoint(self):
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(self.cfg))


def submit(cfg: TrainConfig, profile: str | Path, nodes: int = 1, cluster: str | None = "slurm"):
    """Submit a run as one Slurm job, with the resources of a cluster profile (`slurm/profiles/*.yaml`, read
    by the sweep runner's `ClusterProfile`): one rank per GPU on each of `nodes` nodes. Returns the job.
    `cluster="local"` runs the same job in a local process (submitit's local executor)."""
    import submitit

    from lda_bench.sweep import ClusterProfile

    parameters = ClusterProfile.load(profile).executor_parameters()
    parameters.pop("slurm_array_parallelism", None)
    executor = submitit.AutoExecutor(folder=Path(cfg.out) / "slurm", cluster=cluster)
    executor.update_parameters(**parameters, nodes=nodes, tasks_per_node=max(1, parameters.get("gpus_per_node", 1)))
    return executor.submit(TrainJob(cfg))
