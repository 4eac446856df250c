"""`lda-bench bench model`: the size of every preset, and what `tiny` costs to train and to act with.

Parameters are counted on the meta device (no memory is allocated, so lda-1b counts on a laptop).
Training throughput is one optimizer step on random batches shaped like real ones; latency is one action
chunk (4 Euler steps), for the network alone and for the whole policy call (tiny DINO + tiny VLM encoding
of the frame included). GPU figures are measured only where a GPU is present.

Model FLOPs utilisation (MFU) is the FLOPs of one training step's forward and backward, counted by
PyTorch's FlopCounterMode on the network without gradient checkpointing (recomputation is not model
work), divided by the step time and the GPU's dense bf16 peak.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from model.config import PRESETS, POLICY, build_model, get_config


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


def cpu_training(name: str, batch: int, repeats: int) -> float:
    """Training samples per second of one AdamW step on the CPU."""
    config = get_config(name)
    model = build_model(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    data = _batch(config, batch, "cpu")

    def step():
        model.loss(data)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return batch / _times(step, repeats)["median"]


# Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets, without sparsity), by device-name substring;
# the first match wins, so the more specific names come first.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4), ("B200", 2250.0),
                    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0))


def peak_tflops(device_name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in device_name), None)


def step_flops(name: str, batch: int, device: str) -> float:
    """Model FLOPs of one training step (forward + backward) at this batch size. Nothing couples the samples
    of a batch, so the count is exactly linear in it: counted on one sample, which needs little memory."""
    model = build_model(get_config(name, grad_checkpointing=False)).to(device).train()
    data = _batch(model.config, 1, device)
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
        model.loss(data)["loss"].backward()
    return batch * float(counter.get_total_flops())


def gpu_training(name: str, batch: int, repeats: int = 10, compile: bool = True,
                 checkpointing: bool = False) -> dict[str, float]:
    """Step time, samples/s, peak memory and MFU of bf16 training on the GPU with fused AdamW, each block
    compiled (`compile`) and no gradient checkpointing unless asked (it recomputes, so it costs MFU)."""
    config = get_config(name, grad_checkpointing=checkpointing)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build_model(config).cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=True)
    if compile:
        model.compile_blocks()
    data = _batch(config, batch, "cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model.loss(data)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    for _ in range(2):  # warm-up: compilation, allocator, cuBLAS heuristics
        step()
    times = _times(step, repeats, torch.cuda.synchronize)
    memory = torch.cuda.max_memory_allocated() / 2**30
    del step, model, optimizer, data
    torch.cuda.empty_cache()
    flops = step_flops(name, batch, "cuda")
    peak = peak_tflops(torch.cuda.get_device_name())
    seconds = times["median"]
    return {"batch": batch, "compile": compile, "checkpointing": config.grad_checkpointing,
            "step_ms": 1000 * seconds, "best_ms": 1000 * times["best"], "samples_per_s": batch / seconds,
            "tflop_per_step": flops / 1e12, "achieved_tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / (peak * 1e12) if peak else None,
            "peak_memory_gib": memory}


def chunk_latency(name: str, device: str, repeats: int) -> dict[str, float]:
    """Seconds for one action chunk from cached features (network only, 4 Euler steps, batch 1), on the CPU
    with the thread count the policy acts with."""
    from policies.checkpoint import cpu_threads

    config = get_config(name)
    model = build_model(config).to(device).eval()
    threads = cpu_threads(model) if device == "cpu" else None
    if threads:
        torch.set_num_threads(threads)
    data = _batch(config, 1, device)
    cond = {k: data[k] for k in ("obs", "past_actions", "state", "vlm", "vlm_mask")}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
        return _times(lambda: model.sample(POLICY, **cond), repeats, sync)


def tiny_checkpoint(path: Path | str) -> Path:
    """A checkpoint of the `tiny` LDA preset (initial weights, unit statistics, the tiny encoders) to act with
    in CPU benchmarks."""
    import numpy as np

    from model.data import Normalizer
    from model.encoders import DinoEncoder, VLMEncoder
    from model.train import checkpoint_payload, save_checkpoint

    config = get_config("tiny")
    normalizer = Normalizer(np.zeros(config.action_dim, np.float32), np.ones(config.action_dim, np.float32),
                            np.zeros(config.dino_dim, np.float32), np.ones(config.dino_dim, np.float32))
    return save_checkpoint(path, checkpoint_payload(config, build_model(config).state_dict(), normalizer,
                                                    DinoEncoder.tiny(), VLMEncoder.tiny()))


def policy_latency(repeats: int) -> dict[str, float]:
    """Seconds for one `get_action` of a tiny LDA policy on CPU: encoders, history, sampling, unnormalising."""
    import tempfile

    import numpy as np

    from lda_bench.policy import LANGUAGE_KEY, STATE_KEYS, VIDEO_KEY
    from policies.checkpoint import CheckpointPolicy
    from tasks.layout import ACTION_DIMS

    with tempfile.TemporaryDirectory() as tmp:
        policy = CheckpointPolicy(tiny_checkpoint(Path(tmp) / "tiny.pt"))
    rng = np.random.default_rng(0)
    obs = {VIDEO_KEY: rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
           LANGUAGE_KEY: "pick up the can, place it into the drawer and close the drawer"}
    obs.update({STATE_KEYS[part]: np.zeros(ACTION_DIMS[part]) for part in ACTION_DIMS})
    policy.reset("bench", obs[LANGUAGE_KEY])
    return _times(lambda: policy.get_action(obs), repeats)


# lda-1b's largest batch on one 80 GB H100 without gradient checkpointing (56 ran out of memory).
GPU_BATCH = 48


def gpu_training_that_fits(name: str, batch: int, repeats: int) -> dict[str, float]:
    """`gpu_training` at `batch`, halving it while the GPU runs out of memory."""
    while True:
        try:
            return gpu_training(name, batch, repeats)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch == 1:
                raise
            batch //= 2


def bench_model(repeats: int = 10) -> dict:
    sizes = {}
    for name, config in PRESETS.items():
        with torch.device("meta"):
            sizes[name] = build_model(config).num_params()
    ms = lambda times: {k: 1000 * v for k, v in times.items()}  # noqa: E731
    threads = torch.get_num_threads()
    result = {"params": sizes, "threads": threads, "load": os.getloadavg()[0],
              "cpu": {"train_samples_per_s": cpu_training("tiny", 32, max(3, repeats // 2)),
                      "chunk_ms": ms(chunk_latency("tiny", "cpu", repeats)),
                      "policy_ms": ms(policy_latency(repeats)), "inference_threads": torch.get_num_threads()}}
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        result["gpu"] = {"device": torch.cuda.get_device_name(),
                         "training": gpu_training_that_fits("lda-1b", GPU_BATCH, repeats),
                         "chunk_ms": {name: ms(chunk_latency(name, "cuda", repeats)) for name in PRESETS}}
    return result


def print_model_table(result: dict) -> None:
    print("Parameters per preset (built on the meta device):")
    for name, count in result["params"].items():
        config = PRESETS[name]
        print(f"  {name:<16} {count / 1e6:>9.1f} M   {getattr(config, 'backbone', config.family):<5} hidden {config.hidden}, "
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
    gpu, train = result["gpu"], result["gpu"]["training"]
    mfu = f"{100 * train['mfu']:.1f}% MFU" if train["mfu"] else "MFU unknown (no peak listed for this GPU)"
    print(f"GPU {gpu['device']}:")
    print(f"  lda-1b training (bf16 autocast, compiled blocks, fused AdamW, batch {train['batch']}): "
          f"step {train['step_ms']:.1f} ms median, {train['samples_per_s']:.0f} samples/s, "
          f"{train['tflop_per_step']:.1f} TFLOP/step, {train['achieved_tflops']:.0f} TFLOP/s = {mfu} "
          f"(target >= 40%), peak memory {train['peak_memory_gib']:.1f} GiB")
    for name, times in gpu["chunk_ms"].items():
        print(f"  {name:<16} action chunk {span(times)}")
