"""Held-out proof that every model family learns: train each family's tiny preset on CPU on the same
synthetic dataset and print one table of each objective's held-out error at initialisation, after training,
and for the trivial prediction.

    python -m model.prove_learning [--out runs/prove] [--presets tiny gr00t-n1.6-tiny uwm-tiny] [--steps N]
                                   [--action-space relative]

The dataset (model/synthetic.py) mixes high-quality, low-quality and action-free episodes, so the data
roles are exercised too; its arms keep moving and its frames keep changing, so that the trivial predictions
are poor. Held-out episodes are never trained on. The errors are `model.train.evaluate`'s, of what each
objective generates from fixed noise (LDA and GR00T: 4 Euler steps; UWM: 10 DDIM steps): action L1 in
radians (policy, inverse dynamics) and frame-feature MSE in normalised units (forward dynamics, visual
forecasting; DINO features for LDA, VAE latents for UWM). The trivial prediction of an action objective
holds the last action over the chunk (over the policy's samples, the high-quality ones); that of a visual
objective predicts an unchanged frame (over the forecasting's samples, all of them). A model that only
copies its input scores the trivial error.

Each run lives in OUT/PRESET (OUT/PRESET-relative with `--action-space relative`), the data in OUT/data and
the encoders' features in OUT/features; running the command again reuses them (a finished run is only
evaluated again). Exit status 1 if some family's trained policy does not beat holding the last action.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from model.config import ACTION_SPACES

# One tiny preset per family (`--presets` takes any others, e.g. the -tiny twins).
PRESETS = ("tiny", "gr00t-n1.6-tiny", "uwm-tiny")
# Steps of batch 32 and peak learning rate per family: enough for each family's policy to beat holding the
# last action with a margin. UWM's noise-predicting diffusion learns slowest, GR00T's policy-only head reads
# neither past actions nor frame features; their steps are the cheapest.
SCHEDULE = {"lda": (300, 1e-3), "gr00t": (900, 1e-3), "uwm": (1800, 2e-3)}
# objective (in the order of model.config.OBJECTIVES) -> (its error in `evaluate`, the trivial prediction's error, unit)
ERRORS = {"policy": ("policy/action_l1", "baseline/hold_last_action_l1", "L1 rad"),
          "forward_dynamics": ("forward_dynamics/feature_mse", "baseline/unchanged_frame_mse", "MSE"),
          "inverse_dynamics": ("inverse_dynamics/action_l1", "baseline/hold_last_action_l1", "L1 rad"),
          "visual_forecasting": ("visual_forecasting/feature_mse", "baseline/unchanged_frame_mse", "MSE")}
TRIVIAL = {"baseline/hold_last_action_l1": "hold last action", "baseline/unchanged_frame_mse": "unchanged frame"}


@dataclass(frozen=True)
class ProofRow:
    """One objective of one preset: its held-out error before and after training, and the trivial one's."""

    preset: str
    steps: int
    objective: str
    unit: str
    initial: float
    trained: float
    trivial_name: str
    trivial: float

    @property
    def beats_trivial(self) -> bool:
        return self.trained < self.trivial


def proof_rows(preset: str, steps: int, initial: dict[str, float], trained: dict[str, float]) -> list[ProofRow]:
    """The rows of one run of `steps` from its evaluations at step 0 and at its last step (`evaluate`'s)."""
    rows = []
    for objective, (error, trivial, unit) in ERRORS.items():
        if error in trained:
            rows.append(ProofRow(preset, steps, objective, unit, initial[error], trained[error], TRIVIAL[trivial],
                                 trained[trivial]))
    return rows


def prove(out: Path | str, presets: tuple[str, ...] = PRESETS, steps: int | None = None, batch_size: int = 32,
          episodes: int = 40, length: int = 48, seed: int = 0, eval_samples: int = 192, lr: float | None = None,
          action_space: str = "absolute", echo=print) -> list[ProofRow]:
    """Make (or reuse) the dataset in OUT/data, train (or resume) each preset in OUT/PRESET with
    model.train's loop (its family's SCHEDULE unless `steps` and `lr` are given), in the given action
    space (model/config.py), and return the table's rows."""
    from model.config import get_config
    from model.synthetic import make_dataset
    from model.train import TrainConfig, train

    out = Path(out)
    data = out / "data"
    if not (data / "meta/info.json").is_file():
        make_dataset(data, episodes=episodes, length=length, low=episodes // 5, video=episodes // 5, seed=seed)
    overrides = {} if action_space == "absolute" else {"action_space": action_space}
    rows = []
    for preset in presets:
        run = out / (preset if action_space == "absolute" else f"{preset}-{action_space}")
        tic = time.perf_counter()
        family_steps, family_lr = SCHEDULE[get_config(preset, **overrides).family]
        n, rate = steps or family_steps, lr or family_lr
        train(TrainConfig(model=preset, model_overrides=overrides, data=[str(data)], out=str(run),
                          cache=str(out / "features"), steps=n, batch_size=batch_size, lr=rate, min_lr=rate / 20,
                          warmup=min(50, n // 4 + 1), holdout=0.15, eval_every=n, eval_samples=eval_samples,
                          ckpt_every=n, log_every=max(n // 4, 1), seed=seed),
              echo=None)
        evals = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        evals = [e for e in evals if e.get("event") == "eval"]
        initial = next(e for e in evals if e["step"] == 0)
        rows += proof_rows(preset, n, initial, evals[-1])
        if echo:
            echo(f"{preset}: {n} steps of batch {batch_size} at lr {rate:g} and two evaluations in "
                 f"{time.perf_counter() - tic:.0f} s ({run / 'log.jsonl'})")
    return rows


def format_table(rows: list[ProofRow]) -> str:
    """The rows as a Markdown table: at initialisation, trained, trivial, and trained / trivial."""
    lines = ["| preset | steps | objective | error | initialisation | trained | trivial prediction | trained / trivial |",
             "|---|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| `{r.preset}` | {r.steps} | {r.objective} | {r.unit} | {r.initial:.4f} | {r.trained:.4f} | "
                     f"{r.trivial:.4f} ({r.trivial_name}) | {r.trained / r.trivial:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/prove_learning"))
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--steps", type=int, help="training steps of every preset (default: its family's, SCHEDULE)")
    parser.add_argument("--lr", type=float, help="peak learning rate of every preset (default: its family's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--episodes", type=int, default=40, help="high-quality episodes (and a fifth as many "
                                                                  "low-quality and action-free ones)")
    parser.add_argument("--eval-samples", type=int, default=192, help="held-out samples each error averages over")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--action-space", choices=ACTION_SPACES, default="absolute",
                        help="what the networks generate: absolute or relative action chunks (model/config.py)")
    args = parser.parse_args(argv)
    tic = time.perf_counter()
    rows = prove(args.out, tuple(args.presets), args.steps, args.batch_size, args.episodes, seed=args.seed,
                 eval_samples=args.eval_samples, lr=args.lr, action_space=args.action_space)
    print(f"\nheld-out errors on {args.out / 'data'}, {args.action_space} action chunks "
          f"({(time.perf_counter() - tic) / 60:.1f} min):")
    print(format_table(rows))
    failed = [r.preset for r in rows if r.objective == "policy" and not r.beats_trivial]
    if failed:
        print(f"the trained policy of {', '.join(failed)} does not beat holding the last action")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
