"""`lda-bench bench model`: the size of every preset, and what each tiny preset costs to train and to act with.

Parameters are counted on the meta device (no memory is allocated, so the 1 B presets count on a laptop).
On the CPU, every tiny preset (one per family and its twins) is measured side by side in one run, their
timed calls taken in turns so that the load of other processes falls on all of them alike: training
samples/s of one AdamW step on random batches shaped like real ones, and the latency of one action chunk
(the family's sampling steps: 4 Euler steps, UWM's 10 DDIM steps), for the network alone and for the whole
policy call (tiny frame encoder and tiny VLM on the frame included). GPU figures are measured only where a
GPU is present: bf16 training of each 1 B preset (one per distinct network) and each preset's chunk latency.

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

# The presets that run on a laptop CPU, measured there.
TINY_PRESETS = tuple(name for name in PRESETS if "tiny" in name)
# Presets of at least this many weights are the paper's 1 B models, measured on a GPU.
BILLION = 0.9e9


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


def _side_by_side(calls: dict[str, callable], repeats: int, sync=lambda: None) -> dict[str, dict[str, float]]:
    """Median and best of `repeats` timed runs of each call after one warm-up, in seconds, the calls taken
    in turns so that a load that comes and goes falls on each alike. On a shared machine the median carries
    the load of the other processes, the best is the nearest to the machine's own speed."""
    for call in calls.values():
        call()
        sync()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            tic = time.perf_counter()
            call()
            sync()
            times[name].append(time.perf_counter() - tic)
    return {name: {"median": statistics.median(t), "best": min(t)} for name, t in times.items()}


def _times(call, repeats: int, sync=lambda: None) -> dict[str, float]:
    return _side_by_side({"": call}, repeats, sync)[""]


def training_step(name: str, batch: int, device: str = "cpu", **overrides):
    """One AdamW step of a preset on a random batch, as a call (bf16 autocast and fused AdamW on a GPU)."""
    cuda = device.startswith("cuda")
    model = build_model(get_config(name, **overrides)).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=cuda or None)
    data = _batch(model.config, batch, device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = model.loss(data)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    step.model = model
    return step


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
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    step = training_step(name, batch, "cuda", grad_checkpointing=checkpointing)
    if compile:
        step.model.compile_blocks()
    for _ in range(2):  # warm-up: compilation, allocator, cuBLAS heuristics
        step()
    times = _times(step, repeats, torch.cuda.synchronize)
    memory = torch.cuda.max_memory_allocated() / 2**30
    del step
    torch.cuda.empty_cache()
    flops = step_flops(name, batch, "cuda")
    peak = peak_tflops(torch.cuda.get_device_name())
    seconds = times["median"]
    return {"batch": batch, "compile": compile, "checkpointing": checkpointing,
            "step_ms": 1000 * seconds, "best_ms": 1000 * times["best"], "samples_per_s": batch / seconds,
            "tflop_per_step": flops / 1e12, "achieved_tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / (peak * 1e12) if peak else None,
            "peak_memory_gib": memory}


def chunk_call(name: str, device: str = "cpu"):
    """One action chunk of a preset's network from cached features (its sampling steps, batch 1), as a call."""
    cuda = device.startswith("cuda")
    model = build_model(get_config(name)).to(device).eval()
    data = _batch(model.config, 1, device)
    cond = {k: data[k] for k in ("obs", "past_actions", "state", "vlm", "vlm_mask")}

    def call():
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            return model.sample(POLICY, **cond)
    call.model = model
    return call


def tiny_checkpoint(path: Path | str, name: str = "tiny") -> Path | None:
    """A checkpoint of a tiny preset (initial weights, unit statistics, the tiny random encoders) to act with
    in CPU benchmarks. None for a preset that those encoders do not fit (`tiny-vision` reads the encoder
    pretrained here)."""
    import numpy as np

    from model.data import Normalizer
    from model.train import TrainConfig, _encoders, checkpoint_payload, save_checkpoint

    config = get_config(name)
    try:
        frames, vlm = _encoders(TrainConfig(model=name), config, None)
    except ValueError:
        return None
    normalizer = Normalizer(np.zeros(config.action_dim, np.float32), np.ones(config.action_dim, np.float32),
                            np.zeros(config.dino_dim, np.float32), np.ones(config.dino_dim, np.float32))
    return save_checkpoint(path, checkpoint_payload(config, build_model(config).state_dict(), normalizer, frames, vlm))


def policy_call(name: str):
    """One `get_action` of a tiny preset's policy on the CPU, as a call: frame encoder, VLM, history, sampling,
    unnormalising. None where `tiny_checkpoint` is."""
    import tempfile

    import numpy as np

    from lda_bench.policy import LANGUAGE_KEY, STATE_KEYS, VIDEO_KEY
    from policies.checkpoint import CheckpointPolicy
    from tasks.layout import ACTION_DIMS

    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_checkpoint(Path(tmp) / "tiny.pt", name)
        if path is None:
            return None
        policy = CheckpointPolicy(path)
    rng = np.random.default_rng(0)
    obs = {VIDEO_KEY: rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
           LANGUAGE_KEY: "pick up the can, place it into the drawer and close the drawer"}
    obs.update({STATE_KEYS[part]: np.zeros(ACTION_DIMS[part]) for part in ACTION_DIMS})
    policy.reset("bench", obs[LANGUAGE_KEY])
    return lambda: policy.get_action(obs)


def cpu_figures(names: tuple[str, ...] = TINY_PRESETS, repeats: int = 10, batch: int = 32) -> dict:
    """Training samples/s (torch's thread count), then chunk and policy-call latency (the thread count the
    policies act with: one, for networks this small), each measured side by side over `names`."""
    from policies.checkpoint import cpu_threads

    threads = torch.get_num_threads()
    steps = _side_by_side({name: training_step(name, batch) for name in names}, max(1, repeats // 2))
    chunks = {name: chunk_call(name) for name in names}
    acting = {cpu_threads(call.model) for call in chunks.values()}
    if acting != {1}:
        raise ValueError(f"the tiny presets act with {acting} threads; this benchmark measures them with one")
    torch.set_num_threads(1)
    try:
        chunk_times = _side_by_side(chunks, repeats)
        calls = {name: policy_call(name) for name in names}
        policy_times = _side_by_side({k: v for k, v in calls.items() if v is not None}, repeats)
    finally:
        torch.set_num_threads(threads)
    ms = lambda times: {k: 1000 * v for k, v in times.items()}  # noqa: E731
    return {"threads": threads, "inference_threads": 1, "batch": batch, "load": os.getloadavg()[0],
            "presets": {name: {"train_samples_per_s": batch / steps[name]["median"],
                               "chunk_ms": ms(chunk_times[name]),
                               "policy_ms": ms(policy_times[name]) if name in policy_times else None}
                        for name in names}}


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


def preset_sizes() -> dict[str, int]:
    """Every preset's parameter count, its network built on the meta device."""
    sizes = {}
    for name, config in PRESETS.items():
        with torch.device("meta"):
            sizes[name] = build_model(config).num_params()
    return sizes


def billion_presets(sizes: dict[str, int]) -> list[str]:
    """The 1 B presets, one per distinct network: presets that differ only in name or in whether finetuning
    trains the VLM (gr00t-ei, gr00t-n1.6) train the same network at the same speed."""
    seen, names = set(), []
    for name, count in sizes.items():
        network = PRESETS[name].with_(name="", tune_vlm=False)
        if count >= BILLION and network not in seen:
            seen.add(network)
            names.append(name)
    return names


def bench_model(repeats: int = 10, tiny: tuple[str, ...] = TINY_PRESETS, batch: int = 32) -> dict:
    """Every preset's size; CPU figures of the `tiny` presets (training at `batch`); GPU figures if a GPU is here."""
    sizes = preset_sizes()
    result = {"params": sizes, "cpu": cpu_figures(tiny, repeats, batch)}
    if torch.cuda.is_available():
        ms = lambda times: {k: 1000 * v for k, v in times.items()}  # noqa: E731
        chunks = _side_by_side({name: chunk_call(name, "cuda") for name in PRESETS}, repeats, torch.cuda.synchronize)
        result["gpu"] = {"device": torch.cuda.get_device_name(),
                         "training": {name: gpu_training_that_fits(name, GPU_BATCH, repeats)
                                      for name in billion_presets(sizes)},
                         "chunk_ms": {name: ms(times) for name, times in chunks.items()}}
    return result


def print_model_table(result: dict) -> None:
    cpu = result["cpu"]
    span = lambda t: f"{t['median']:.1f} / {t['best']:.1f}"  # noqa: E731
    print("Every preset (parameters counted on the meta device); tiny presets measured side by side on this CPU "
          f"({cpu['threads']} thread(s) training at batch {cpu['batch']}, {cpu['inference_threads']} acting; load "
          f"average {cpu['load']:.1f}). Latencies in ms, median / best; target < 50 ms per action chunk.\n")
    print("| preset | family | parameters | network | train samples/s | action chunk ms | policy call ms |")
    print("|---|---|---:|---|---:|---:|---:|")
    for name, count in result["params"].items():
        c = PRESETS[name]
        network = (f"{getattr(c, 'backbone', 'dit')}, hidden {c.hidden}, {c.layers} layers, {c.heads} heads, "
                   f"latent {c.patch_grid}x{c.patch_grid}x{c.dino_dim}, chunk {c.action_chunk}, "
                   f"{c.sample_steps} steps")
        figures = cpu["presets"].get(name)
        measured = ("| | | |" if figures is None else
                    f"| {figures['train_samples_per_s']:.0f} | {span(figures['chunk_ms'])} | "
                    + (span(figures["policy_ms"]) if figures["policy_ms"] else "(pretrained encoder)") + " |")
        print(f"| `{name}` | {c.family} | {count / 1e6:.1f} M | {network} {measured}")
    if "gpu" not in result:
        print("\nGPU: none present (torch.cuda.is_available() is False); no GPU figures")
        return
    gpu = result["gpu"]
    print(f"\nGPU {gpu['device']}: bf16 training of the 1 B presets (autocast, compiled blocks, fused AdamW, no "
          f"gradient checkpointing; target >= 40% MFU):\n")
    print("| preset | batch | step ms (median / best) | samples/s | TFLOP/step | TFLOP/s | MFU | peak memory GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, t in gpu["training"].items():
        mfu = f"{100 * t['mfu']:.1f}%" if t["mfu"] else "unknown peak"
        print(f"| `{name}` | {t['batch']} | {t['step_ms']:.1f} / {t['best_ms']:.1f} | {t['samples_per_s']:.0f} | "
              f"{t['tflop_per_step']:.1f} | {t['achieved_tflops']:.0f} | {mfu} | {t['peak_memory_gib']:.1f} |")
    print("\n| preset | action chunk ms on the GPU (median / best) |\n|---|---:|")
    for name, times in gpu["chunk_ms"].items():
        print(f"| `{name}` | {span(times)} |")
