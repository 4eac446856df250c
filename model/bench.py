"""`lda-bench bench model`: the size of every preset, and what `tiny` costs to train and to act with.

Parameters are counted on the meta device (no memory is allocated, so lda-1b counts on a laptop).
Training throughput is one optimizer step on random batches shaped like real ones; latency is one action
chunk (4 Euler steps), for the network alone and for the whole policy call (tiny DINO + tiny VLM encoding
of the frame included). GPU figures are measured only where a GPU is present.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from model.config import PRESETS, POLICY, get_config
from model.lda import LDA


def _batch(config, size: int, device, vlm_tokens: int = 64) -> dict[str, torch.Tensor]:
    randn = lambda *shape: torch.randn(*shape, device=device)  # noqa: E731
    return {"obs": randn(size, config.history, config.patches, config.dino_dim),
            "future": randn(size, config.patches, config.dino_dim),
            "actions": randn(size, config.action_chunk, config.action_dim),
            "past_actions": randn(size, config.history, config.action_dim), "state": randn(size, config.state_dim),
            "vlm": randn(size, vlm_tokens, config.vlm_dim),
            "vlm_mask": torch.ones(size, vlm_tokens, dtype=torch.bool, device=device),
            "roles": torch.ones(size, 4, dtype=torch.bool, device=device),
            "has_actions": torch.ones(size, dtype=torch.bool, device=device)}


def _times(fn, repeats: int, sync=lambda: None) -> dict[str, float]:
    """Median and best of `repeats` timed calls after one warm-up, in seconds: on a shared machine the
    median carries the load of the other processes, the best is the nearest to the machine's own speed."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - tic)
    return {"median": statistics.median(times), "best": min(times)}


def train_throughput(name: str, device: str, batch: int, repeats: int) -> float:
    """Training samples per second of one AdamW step (bf16 autocast on GPU)."""
    config = get_config(name)
    model = LDA(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    data = _batch(config, batch, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))

    def step():
        with autocast:
            loss = model.loss(data)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    return batch / _times(step, repeats, sync)["median"]


def chunk_latency(name: str, device: str, repeats: int) -> dict[str, float]:
    """Seconds for one action chunk from cached features (network only, 4 Euler steps, batch 1), on the CPU
    with the thread count the policy acts with."""
    from policies.lda import cpu_threads

    config = get_config(name)
    model = LDA(config).to(device).eval()
    threads = cpu_threads(model) if device == "cpu" else None
    if threads:
        torch.set_num_threads(threads)
    data = _batch(config, 1, device)
    cond = {k: data[k] for k in ("obs", "past_actions", "state", "vlm", "vlm_mask")}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
        return _times(lambda: model.sample(POLICY, **cond), repeats, sync)


def policy_latency(repeats: int) -> dict[str, float]:
    """Seconds for one `get_action` of a tiny LDA policy on CPU: encoders, history, sampling, unnormalising."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from lda_bench.policy import LANGUAGE_KEY, STATE_KEYS, VIDEO_KEY
    from model.data import Normalizer
    from model.encoders import DinoEncoder, VLMEncoder
    from model.train import checkpoint_payload, save_checkpoint
    from policies.lda import LDAPolicy
    from tasks.layout import ACTION_DIMS

    config = get_config("tiny")
    normalizer = Normalizer(np.zeros(config.action_dim, np.float32), np.ones(config.action_dim, np.float32),
                            np.zeros(config.dino_dim, np.float32), np.ones(config.dino_dim, np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "tiny.pt", checkpoint_payload(
            config, LDA(config).state_dict(), normalizer, DinoEncoder.tiny(), VLMEncoder.tiny()))
        policy = LDAPolicy(path)
    rng = np.random.default_rng(0)
    obs = {VIDEO_KEY: rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
           LANGUAGE_KEY: "pick up the can, place it into the drawer and close the drawer"}
    obs.update({STATE_KEYS[part]: np.zeros(ACTION_DIMS[part]) for part in ACTION_DIMS})
    policy.reset("bench", obs[LANGUAGE_KEY])
    return _times(lambda: policy.get_action(obs), repeats)


def bench_model(repeats: int = 10) -> dict:
    sizes = {}
    for name, config in PRESETS.items():
        with torch.device("meta"):
            sizes[name] = LDA(config).num_params()
    ms = lambda times: {k: 1000 * v for k, v in times.items()}  # noqa: E731
    threads = torch.get_num_threads()
    result = {"params": sizes, "threads": threads, "load": os.getloadavg()[0],
              "cpu": {"train_samples_per_s": train_throughput("tiny", "cpu", 32, max(3, repeats // 2)),
                      "chunk_ms": ms(chunk_latency("tiny", "cpu", repeats)),
                      "policy_ms": ms(policy_latency(repeats)), "inference_threads": torch.get_num_threads()}}
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        result["gpu"] = {"device": torch.cuda.get_device_name(),
                         **{name: {"train_samples_per_s": train_throughput(name, "cuda", 32, repeats),
                                   "chunk_ms": ms(chunk_latency(name, "cuda", repeats))}
                            for name in ("tiny", "lda-0.5b", "lda-1b", "lda-dit")}}
    return result


def print_model_table(result: dict) -> None:
    print("Parameters per preset (built on the meta device):")
    for name, count in result["params"].items():
        config = PRESETS[name]
        print(f"  {name:<9} {count / 1e6:>9.1f} M   {config.backbone:<5} hidden {config.hidden}, "
              f"{config.layers} layers, {config.heads} heads, latent {config.patch_grid}x{config.patch_grid}x"
              f"{config.dino_dim}, chunk {config.action_chunk}")
    cpu = result["cpu"]
    span = lambda t: f"{t['median']:.1f} ms median, {t['best']:.1f} ms best"  # noqa: E731
    print(f"tiny on CPU ({result['threads']} thread(s) training, {cpu['inference_threads']} acting; "
          f"load average {result['load']:.1f}):")
    print(f"  training       {cpu['train_samples_per_s']:.0f} samples/s (batch 32, one AdamW step)")
    print(f"  action chunk   {span(cpu['chunk_ms'])} (network: 4 Euler steps from cached features; target < 50 ms)")
    print(f"  policy call    {span(cpu['policy_ms'])} (tiny DINO + tiny VLM on a 224 px frame, then the chunk)")
    if "gpu" not in result:
        print("GPU: none present (torch.cuda.is_available() is False); no GPU figures")
        return
    gpu = result["gpu"]
    print(f"GPU {gpu['device']} (bf16 autocast, batch 32):")
    for name in ("tiny", "lda-0.5b", "lda-1b", "lda-dit"):
        print(f"  {name:<9} training {gpu[name]['train_samples_per_s']:.0f} samples/s; "
              f"action chunk {span(gpu[name]['chunk_ms'])}")
