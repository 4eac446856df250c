"""`lda-bench`: the command line. Each subcommand parses its arguments here and calls one module."""

from __future__ import annotations

import argparse
import os
import sys

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MUJOCO_GL", "egl")


class UsageError(Exception):
    """A bad input: printed as one line, exit status 2."""


def _tasks_list(args) -> None:
    from tasks.specs import TASKS

    width = max(len(t.name) for t in TASKS)
    for t in TASKS:
        example = t.instruction(t.objects[0]) if len(t.objects) == 1 else t.instruction("{object}")
        print(f"{t.name:<{width}}  {t.family:<9}  {example}")


def _tasks_show(args) -> None:
    from PIL import Image

    from tasks.env import GR1TabletopEnv

    env = GR1TabletopEnv(args.name, image_size=args.size)
    obs, info = env.reset(seed=args.seed)
    Image.fromarray(obs["video.ego_view"]).save(args.image)
    env.close()
    print(f"{env.spec_.name} seed {info['seed']}: {info['instruction']}")
    print(f"object {info['scene']['object']}, distractors {[d[0] for d in info['scene']['distractors']]}")
    print(f"wrote {args.image}")


def _bench(args) -> None:
    from lda_bench import bench

    if args.what == "env":
        bench.print_env_table(bench.bench_env(args.task or None, steps=args.steps))
    elif args.what == "model":
        from model.bench import bench_model, print_model_table

        print_model_table(bench_model())


def _train(args) -> None:
    from model.train import TrainConfig, launch

    launch(TrainConfig.load(args.config, data=args.data, out=args.out, steps=args.steps, batch_size=args.batch_size,
                            lr=args.lr, cache=args.cache, dino=args.dino, vlm=args.vlm), args.slurm)


def _finetune(args) -> None:
    from model.train import finetune_config, launch

    launch(finetune_config(args.from_checkpoint, args.data, args.out, steps=args.steps, batch_size=args.batch_size,
                           lr=args.lr, cache=args.cache), args.slurm)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lda-bench", description=__doc__.split("\n")[0].strip("`: "))
    sub = parser.add_subparsers(dest="command", required=True)

    tasks = sub.add_parser("tasks", help="the 24 RoboCasa-GR1 tabletop tasks").add_subparsers(dest="tasks_command", required=True)
    tasks.add_parser("list", help="every task with its family and instruction").set_defaults(func=_tasks_list)
    show = tasks.add_parser("show", help="write the first egoview frame of a task's scene")
    show.add_argument("name")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--image", default="egoview.png")
    show.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    show.set_defaults(func=_tasks_show)

    bench = sub.add_parser("bench", help="benchmarks that print their figures")
    bench.add_argument("what", choices=["env", "model"])
    bench.add_argument("--task", action="append", help="task name (repeatable); default one per family")
    bench.add_argument("--steps", type=int, default=60)
    bench.set_defaults(func=_bench)

    training = sub.add_parser("train", help="train an LDA model (resumes a run folder that has a checkpoint)")
    training.add_argument("--config", required=True, help="preset (tiny, lda-0.5b, lda-1b, lda-dit) or JSON/YAML file")
    training.add_argument("--dino", help="DINOv3 weights: local path or hub id (default: tiny random encoder)")
    training.add_argument("--vlm", help="Qwen3-VL weights: local path or hub id (default: tiny random encoder)")
    finetuning = sub.add_parser("finetune", help="continue an LDA checkpoint on new demonstrations")
    finetuning.add_argument("--from", dest="from_checkpoint", required=True, metavar="CKPT", help="checkpoint to start from")
    for run in (training, finetuning):
        run.add_argument("--data", action="append", required=run is finetuning, metavar="DIR",
                         help="LeRobot dataset folder, or a folder of them (repeatable)")
        run.add_argument("--out", required=run is finetuning, help="run folder: checkpoint, log.jsonl, features")
        run.add_argument("--steps", type=int, help="optimizer steps")
        run.add_argument("--batch-size", type=int, help="global batch size")
        run.add_argument("--lr", type=float, help="peak learning rate")
        run.add_argument("--cache", help="feature cache folder (default OUT/features)")
        run.add_argument("--slurm", metavar="PROFILE", help="submit to Slurm with this submitit profile (YAML)")
    training.set_defaults(func=_train)
    finetuning.set_defaults(func=_finetune)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
    except (UsageError, KeyError, ValueError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"lda-bench: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
