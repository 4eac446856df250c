"""Proof that LDA learns: train `tiny` on CPU on a synthetic dataset and print each objective's held-out
error at initialisation and along training.

    python -m model.prove_learning [--steps 1200] [--out runs/prove]

The dataset (model/synthetic.py) mixes high-quality, low-quality and action-free episodes, so the data
roles are exercised too. Held-out episodes are never trained on. Errors are of what each objective
generates with 4 Euler steps from fixed noise: action L1 in radians (policy, inverse dynamics) and DINO
feature MSE in normalised units (forward dynamics, visual forecasting). Exit status 1 if an objective's
final error is not below half its error at initialisation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

METRICS = ("policy/action_l1", "inverse_dynamics/action_l1", "forward_dynamics/feature_mse",
           "visual_forecasting/feature_mse")


def prove(out: Path, steps: int, batch_size: int, episodes: int, seed: int) -> int:
    from model.synthetic import make_dataset
    from model.train import TrainConfig, train

    data = out / "data"
    if not (data / "meta/info.json").is_file():
        make_dataset(data, episodes=episodes, low=episodes // 5, video=episodes // 5, seed=seed)
    tic = time.perf_counter()
    train(TrainConfig(model="tiny", data=[str(data)], out=str(out / "run"), steps=steps, batch_size=batch_size,
                      lr=3e-4, min_lr=1e-5, warmup=50, holdout=0.15, eval_every=max(steps // 6, 1),
                      eval_samples=192, ckpt_every=steps, log_every=max(steps // 12, 1), seed=seed))
    minutes = (time.perf_counter() - tic) / 60
    evals = [json.loads(line) for line in (out / "run/log.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e.get("event") == "eval"]
    print(f"\nheld-out errors, tiny LDA on CPU ({minutes:.1f} min; {out / 'run/log.jsonl'})")
    print(f"{'step':>6}  {'policy L1 rad':>13}  {'inverse L1 rad':>14}  {'forward MSE':>11}  {'forecast MSE':>12}")
    for e in evals:
        print(f"{e['step']:>6}  " + "  ".join(f"{e[m]:>{w}.4f}" for m, w in zip(METRICS, (13, 14, 11, 12))))
    first, last = evals[0], evals[-1]
    print(f"yardsticks: hold the last action L1 {first['baseline/hold_last_action_l1']:.4f} rad, "
          f"unchanged frame MSE {first['baseline/unchanged_frame_mse']:.4f}")
    ok = True
    for m in METRICS:
        ratio = last[m] / first[m]
        ok &= ratio < 0.5
        print(f"{m}: {first[m]:.4f} -> {last[m]:.4f} ({100 * ratio:.0f}% of its value at initialisation)")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/prove_learning"))
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run = args.out / "run"
    if (run / "checkpoint.pt").is_file():
        sys.exit(f"{run} already holds a finished run; choose another --out")
    sys.exit(prove(args.out, args.steps, args.batch_size, args.episodes, args.seed))


if __name__ == "__main__":
    main()
