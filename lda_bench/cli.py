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
    """The first egoview of each named task's scene, side by side in one picture."""
    import numpy as np
    from PIL import Image

    from tasks.env import GR1TabletopEnv

    frames = []
    for name in args.name:
        env = GR1TabletopEnv(name, image_size=args.image_size, image_variant=args.image_variant,
                             instances=args.instances)
        obs, info = env.reset(seed=args.seed)
        frames.append(obs["video.ego_view"])
        env.close()
        print(f"{env.spec_.name} seed {info['seed']}: {info['instruction']}")
        print(f"  object {info['scene']['object_instance']}, distractors {[d[1] for d in info['scene']['distractors']]}")
    Image.fromarray(np.concatenate(frames, axis=1)).save(args.image)
    print(f"wrote {args.image}")


def _bench(args) -> None:
    from lda_bench import bench

    if args.what == "env":
        bench.print_env_table(bench.bench_env(args.task or None, steps=args.steps))
    elif args.what == "model":
        from model.bench import bench_model, print_model_table

        print_model_table(bench_model())
    elif args.what == "eval":
        bench.print_eval_report(bench.bench_eval((args.task or [None])[0], max_steps=args.steps))
    elif args.what == "demos":
        bench.print_demos_report(bench.bench_demos((args.task or [None])[0]))
    elif args.what == "sweep":
        import tempfile

        from lda_bench.sweep import bench_sweep, print_bench

        with tempfile.TemporaryDirectory() as directory:
            print_bench(bench_sweep(directory))


def _demos_generate(args) -> None:
    from lda_bench.demos import generate

    for root in generate(args.task, args.episodes, args.out, workers=args.workers,
                         low_quality_fraction=args.low_quality_fraction, seed_offset=args.seed_offset,
                         image_size=args.image_size, max_steps=args.max_steps, image_variant=args.image_variant):
        print(f"wrote {root}")


def _demos_validate(args) -> None:
    from lda_bench.demos import validate

    print("\n".join(validate(args.dir)))


def _demos_show(args) -> None:
    from lda_bench.demos import show

    print(f"wrote {show(args.dir, args.episode, args.out)}")


def _demos_replay(args) -> None:
    from lda_bench.demos import replay

    results = replay(args.dir, args.episodes)
    width = max(len("dataset"), *(len(r.dataset) for r in results))
    print(f"{'dataset':<{width}}  {'episode':>7}  {'seed':>6}  {'recorded':>8}  {'replayed':>8}  {'first':>5}  {'steps':>5}")
    outcome = {True: "success", False: "failure"}
    for r in results:
        print(f"{r.dataset:<{width}}  {r.episode:>7}  {r.seed:>6}  {outcome[r.recorded]:>8}  {outcome[r.replayed]:>8}  "
              f"{r.first_success_step or '-':>5}  {r.steps:>5}" + ("" if r.reproduces else "  DIFFERS"))
    print(f"{sum(r.reproduces for r in results)} of {len(results)} episodes reproduce their recorded success")


def _experiment_run(args) -> None:
    from lda_bench.experiment import run_experiment

    print(f"experiment done: {run_experiment(args.file, args.out)}")


def _experiment_status(args) -> None:
    from lda_bench.experiment import experiment_status, print_experiment_status

    print_experiment_status(experiment_status(args.dir))


def _image_options(parser) -> None:
    from tasks.images import DEFAULT_VARIANT, IMAGE_VARIANTS

    parser.add_argument("--image-variant", choices=IMAGE_VARIANTS, default=DEFAULT_VARIANT,
                        help=f"the picture video.ego_view holds (default {DEFAULT_VARIANT}, as GR00T's GR1 data; "
                             "square: the earlier square render)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="video.ego_view's side in pixels (default 256; 224 for --image-variant square)")


def _instance_option(parser) -> None:
    parser.add_argument("--instances", choices=("A", "B"), default="A",
                        help="object instances of the novel tasks: A (the 24 tasks, default) or B (held out, as "
                             "upstream's EvalPnPNovel...SplitB: a generalisation run)")


def _policy_args(pairs: list[str] | None) -> dict[str, str]:
    """`--policy-arg key=value` (repeatable) -> {key: value}; values stay strings for `make_policy` to convert."""
    parsed = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--policy-arg expects key=value, got {pair!r}")
        parsed[key.strip()] = value
    return parsed


def _serving(args):
    """`--serve [--serve-device D] [--batch-window-ms MS]` -> the evaluation's Serving (None without --serve)."""
    from lda_bench.evaluate import Serving

    if not (args.serve or args.serve_device):
        if args.batch_window_ms is not None:
            raise UsageError("--batch-window-ms is the served policy's batching window: give --serve too")
        return None
    window = {} if args.batch_window_ms is None else {"batch_window_ms": args.batch_window_ms}
    return Serving(device=args.serve_device, **window)


def _eval(args) -> None:
    from lda_bench.evaluate import evaluate

    evaluate(args.policy, _policy_args(args.policy_arg), tasks=args.task, trials=args.trials, workers=args.workers,
             action_steps=args.action_steps, max_steps=args.max_steps, out=args.out, video=args.video,
             image_size=args.image_size, progress=not args.no_progress, policy_timeout_s=args.policy_timeout,
             image_variant=args.image_variant, instances=args.instances, serving=_serving(args))


def _policies_list(args) -> None:
    from lda_bench.policy import available_policies

    policies = available_policies()
    width = max(map(len, policies), default=0)
    for name, description in policies.items():
        print(f"{name:<{width}}  {description}")


def _serve(args) -> None:
    from lda_bench.remote import serve

    serve(args.policy, _policy_args(args.policy_arg), host=args.host, port=args.port, api_token=args.api_token,
          max_batch=args.max_batch, batch_window_s=args.batch_window_ms / 1000)


def _vlm_lr(args) -> float | None:
    if args.vlm_lr is not None and not args.unfreeze_vlm:
        raise UsageError("--vlm-lr sets the learning rate of a VLM that trains: give --unfreeze-vlm too")
    return args.vlm_lr


def _train(args) -> None:
    from model.train import TrainConfig, launch

    launch(TrainConfig.load(args.config, data=args.data, out=args.out, steps=args.steps, batch_size=args.batch_size,
                            lr=args.lr, cache=args.cache, dino=args.dino, vae=args.vae, vlm=args.vlm,
                            keep_every=args.keep_every,
                            compile=args.compile or None, unfreeze_vlm=args.unfreeze_vlm or None,
                            vlm_lr=_vlm_lr(args)), args.slurm)


def _encoder_pretrain(args) -> None:
    from model.vision import PretrainConfig, pretrain

    options = {k: v for k, v in dict(image_size=args.image_size, steps=args.steps, batch_size=args.batch_size,
                                     frame_stride=args.frame_stride).items() if v is not None}
    pretrain(args.data, args.out, PretrainConfig(**options))


def _finetune(args) -> None:
    from model.train import finetune_config, launch

    # the VLM trains only when asked or when the checkpoint's preset finetunes it (gr00t-ei), whatever the run
    # that wrote the checkpoint did
    launch(finetune_config(args.from_checkpoint, args.data, args.out, steps=args.steps, batch_size=args.batch_size,
                           lr=args.lr, cache=args.cache, keep_every=args.keep_every, compile=args.compile or None,
                           unfreeze_vlm=args.unfreeze_vlm or None, vlm_lr=_vlm_lr(args)),
           args.slurm)


def _sweep(args) -> None:
    from lda_bench.sweep import ClusterProfile, make_sweep, run_sweep

    if not args.policy or not args.out:
        raise UsageError("a sweep needs --policy (repeatable) and --out; or `lda-bench sweep status RUN_DIR`")
    by_policy: dict[str, list[str]] = {}
    for pair in args.policy_arg or []:  # [POLICY:]KEY=VALUE: without a policy, for every policy
        key, sep, value = pair.partition("=")
        policy, _, key = key.rpartition(":")
        by_policy.setdefault(policy, []).append(f"{key}{sep}{value}")
    sweep = make_sweep(args.policy, {policy: _policy_args(pairs) for policy, pairs in by_policy.items()},
                       tasks=args.tasks or "all", trials=args.trials, out=args.out, max_steps=args.max_steps,
                       action_steps=args.action_steps, image_size=args.image_size, image_variant=args.image_variant,
                       instances=args.instances)
    profile = ClusterProfile.load(args.profile) if args.profile else None
    run_sweep(sweep, args.executor, profile, **({"shard_size": args.shard_size} if args.shard_size else {}))


def _sweep_status(args) -> None:
    from lda_bench.sweep import print_status, sweep_status

    print_status(sweep_status(args.run_dir))


def _report(args) -> None:
    from lda_bench.report import write_report

    columns = {}
    for pair in args.paper_column or []:
        measured, sep, published = pair.partition("=")
        if not sep or not measured or not published:
            raise UsageError(f"--paper-column expects POLICY=COLUMN, got {pair!r}")
        columns[measured] = published
    text = write_report(args.run_dirs, args.format, args.out, compare_paper=args.compare_paper,
                        paper_columns=columns, write_plots=args.plots)
    if args.out:
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lda-bench", description="The RoboCasa-GR1 tabletop benchmark and the LDA model.")
    sub = parser.add_subparsers(dest="command", required=True)

    tasks = sub.add_parser("tasks", help="the 24 RoboCasa-GR1 tabletop tasks").add_subparsers(dest="tasks_command", required=True)
    tasks.add_parser("list", help="every task with its family and instruction").set_defaults(func=_tasks_list)
    show = tasks.add_parser("show", help="write the first egoview of a task's scene (of several: side by side)")
    show.add_argument("name", nargs="+")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--image", default="egoview.png")
    _image_options(show)
    _instance_option(show)
    show.set_defaults(func=_tasks_show)

    bench = sub.add_parser("bench", help="benchmarks that print their figures")
    bench.add_argument("what", choices=["env", "model", "eval", "sweep", "demos"])
    bench.add_argument("--task", action="append",
                       help="task name (repeatable); default one per family (env), the first task (eval)")
    bench.add_argument("--steps", type=int, default=60, help="control steps per measurement or episode")
    bench.set_defaults(func=_bench)

    demos = sub.add_parser("demos", help="demonstrations of the scripted expert as LeRobot v2.1 datasets"
                           ).add_subparsers(dest="demos_command", required=True)
    generating = demos.add_parser("generate", help="record demonstrations; resumes what the output folder lacks")
    generating.add_argument("--task", required=True, help="task name, family or 'all'")
    generating.add_argument("--episodes", type=int, default=1000, help="episodes per task (default 1000)")
    generating.add_argument("--out", required=True, help="folder for one dataset per task")
    generating.add_argument("--workers", type=int, default=1, help="worker processes, one environment each")
    generating.add_argument("--low-quality-fraction", type=float, default=0.2,
                            help="share of episodes with spoiled motion, labelled low quality (default 0.2)")
    generating.add_argument("--seed-offset", type=int, default=0, help="episode i starts from scene seed OFFSET + i")
    _image_options(generating)
    generating.add_argument("--max-steps", type=int, default=720, help="control steps per episode (default 720)")
    generating.set_defaults(func=_demos_generate)
    checking = demos.add_parser("validate", help="check a dataset (or a folder of them) and every file it declares")
    checking.add_argument("dir")
    checking.set_defaults(func=_demos_validate)
    showing = demos.add_parser("show", help="write an episode's video (.mp4) or a contact sheet of it (.png)")
    showing.add_argument("dir")
    showing.add_argument("--episode", type=int, required=True)
    showing.add_argument("--out", required=True, help="file.mp4 or file.png")
    showing.set_defaults(func=_demos_show)
    replaying = demos.add_parser("replay", help="play episodes' recorded actions back open loop; check each "
                                                "reproduces its recorded success")
    replaying.add_argument("dir", help="a dataset folder, or a folder of them")
    replaying.add_argument("--episodes", type=int, help="the first N episodes of each dataset (default all)")
    replaying.set_defaults(func=_demos_replay)

    training = sub.add_parser("train", help="train LDA or a baseline (resumes a run folder that has a checkpoint)")
    training.add_argument("--config", required=True,
                          help="preset (tiny, lda-0.5b, lda-1b, lda-dit, gr00t-n1.6, starvla, gr00t-ei, uwm, uwm-xl, "
                               "uwm-mmdit; each gr00t- and uwm-family preset has a -tiny twin) or JSON/YAML file")
    training.add_argument("--dino", help="DINOv3 weights: local path or hub id (default: tiny random encoder)")
    training.add_argument("--vae", help="the uwm family's VAE (AutoencoderKL, e.g. stabilityai/sdxl-vae): local path "
                                        "or hub id (default: tiny random VAE)")
    training.add_argument("--vlm", help="Qwen3-VL weights: local path or hub id (default: tiny random encoder)")
    finetuning = sub.add_parser("finetune", help="continue a model checkpoint on new demonstrations")
    finetuning.add_argument("--from", dest="from_checkpoint", required=True, metavar="CKPT", help="checkpoint to start from")
    for run in (training, finetuning):
        run.add_argument("--data", action="append", required=run is finetuning, metavar="DIR",
                         help="LeRobot dataset folder, or a folder of them (repeatable)")
        run.add_argument("--out", required=run is finetuning, help="run folder: checkpoint, log.jsonl, features")
        run.add_argument("--steps", type=int, help="optimizer steps")
        run.add_argument("--batch-size", type=int, help="global batch size")
        run.add_argument("--lr", type=float, help="peak learning rate")
        run.add_argument("--cache", help="feature cache folder (default OUT/features)")
        run.add_argument("--keep-every", type=int, metavar="N",
                         help="also keep OUT/checkpoints/step-NNNNNN.pt every N steps, to evaluate along training")
        run.add_argument("--compile", action="store_true",
                         help="torch.compile each transformer block (faster steps on GPU after a first slow one)")
        run.add_argument("--unfreeze-vlm", action="store_true",
                         help="train the VLM too: its tokens are encoded live in every step (DINO stays frozen)")
        run.add_argument("--vlm-lr", type=float, help="peak learning rate of the VLM with --unfreeze-vlm (default 1e-5)")
        run.add_argument("--slurm", metavar="PROFILE", help="submit to Slurm with this submitit profile (YAML)")
    training.set_defaults(func=_train)
    finetuning.set_defaults(func=_finetune)

    encoder = sub.add_parser("encoder", help="vision encoders made here").add_subparsers(dest="encoder_command", required=True)
    pretraining = encoder.add_parser("pretrain", help="teach a small DINOv3 ViT where things are from demonstrations' "
                                     "frames and recorded simulator state; `train --dino OUT` reads it")
    pretraining.add_argument("--data", action="append", required=True, metavar="DIR",
                             help="LeRobot dataset folder with observation.environment_state, or a folder of them (repeatable)")
    pretraining.add_argument("--out", required=True, help="encoder folder (DINOv3ViTModel weights and pretrain.json)")
    pretraining.add_argument("--image-size", type=int, help="input side in pixels (default 96: a 6 x 6 patch grid)")
    pretraining.add_argument("--steps", type=int, help="optimizer steps (default 3000)")
    pretraining.add_argument("--batch-size", type=int, help="frames per step (default 64)")
    pretraining.add_argument("--frame-stride", type=int, help="every n-th frame of each episode (default 2)")
    pretraining.set_defaults(func=_encoder_pretrain)

    experiment = sub.add_parser("experiment", help="demonstrations, training, evaluation and report from one YAML "
                                                   "file (experiments/*.yaml)").add_subparsers(dest="experiment_command",
                                                                                               required=True)
    running = experiment.add_parser("run", help="run every stage not done yet; resumes a run cut short")
    running.add_argument("file", help="experiment file, e.g. experiments/smoke.yaml")
    running.add_argument("--out", help="experiment folder (default runs/<file name>)")
    running.set_defaults(func=_experiment_run)
    checking = experiment.add_parser("status", help="each stage: done, partial (with counts) or not started")
    checking.add_argument("dir")
    checking.set_defaults(func=_experiment_status)

    evaluation = sub.add_parser("eval", help="evaluate a policy on tasks; resumes what the output folder lacks")
    _add_policy_options(evaluation)
    evaluation.add_argument("--task", action="append", required=True,
                            help="task name, family or 'all' (repeatable)")
    evaluation.add_argument("--trials", type=int, default=51, help="trials per task (default 51)")
    evaluation.add_argument("--workers", type=int, default=1, help="worker processes, one environment each")
    evaluation.add_argument("--action-steps", type=int, default=8, help="steps executed per action chunk (default 8)")
    evaluation.add_argument("--max-steps", type=int, default=720, help="control steps per episode (default 720)")
    evaluation.add_argument("--out", required=True, help="run folder for records (and videos)")
    evaluation.add_argument("--video", action="store_true", help="write an mp4 per episode to OUT/videos")
    _image_options(evaluation)
    _instance_option(evaluation)
    evaluation.add_argument("--policy-timeout", type=float, metavar="SECONDS",
                            help="fail an episode whose policy takes longer than this for one call")
    evaluation.add_argument("--serve", action="store_true",
                            help="hold the policy once, in a policy process that answers every worker's requests "
                                 "gathered into batches (one model for all workers), instead of once per worker")
    evaluation.add_argument("--serve-device", metavar="DEVICE",
                            help="the served policy's device, e.g. cuda:0 (implies --serve)")
    evaluation.add_argument("--batch-window-ms", type=float, metavar="MS",
                            help="with --serve: how long the policy process waits for more workers' requests "
                                 "after the first before it acts (default 5; it acts at once when every worker "
                                 "has asked)")
    evaluation.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluation.set_defaults(func=_eval)

    policies = sub.add_parser("policies", help="the registered policies").add_subparsers(dest="policies_command", required=True)
    policies.add_parser("list", help="every policy with its description").set_defaults(func=_policies_list)

    server = sub.add_parser("serve", help="serve a policy over GR00T's ZeroMQ protocol until a client sends kill")
    _add_policy_options(server)
    server.add_argument("--port", type=int, default=5555, help="port to listen on (0: any free port)")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    server.add_argument("--api-token", help="refuse requests that do not carry this token")
    server.add_argument("--max-batch", type=int, default=64,
                        help="most environments one request may carry (default 64); a larger batch is refused")
    server.add_argument("--batch-window-ms", type=float, default=0.0, metavar="MS",
                        help="gather the requests of many clients (each naming its environments with "
                             "options.env_ids) that arrive within MS of the first into one call (default 0: "
                             "only those already waiting)")
    server.set_defaults(func=_serve)

    sweep = sub.add_parser("sweep", help="evaluate policies on tasks as submitit jobs, locally or on Slurm; "
                                         "re-running submits only what is missing")
    sweep.add_argument("--policy", action="append", help="registered policy name (repeatable)")
    sweep.add_argument("--policy-arg", action="append", metavar="[POLICY:]KEY=VALUE",
                       help="policy argument, for every policy or only the one named (repeatable)")
    sweep.add_argument("--tasks", action="append", help="task name, family or 'all' (repeatable; default all)")
    sweep.add_argument("--trials", type=int, default=51, help="trials per task (default 51)")
    sweep.add_argument("--action-steps", type=int, default=8, help="steps executed per action chunk (default 8)")
    sweep.add_argument("--max-steps", type=int, default=720, help="control steps per episode (default 720)")
    _image_options(sweep)
    _instance_option(sweep)
    sweep.add_argument("--executor", default="local", help="local (runs here, waits) or slurm (queues, returns)")
    sweep.add_argument("--profile", help="cluster profile YAML, e.g. slurm/profiles/local-test.yaml (slurm: required)")
    sweep.add_argument("--out", help="sweep folder: one run folder per policy, jobs.json, submitit logs")
    sweep.add_argument("--shard-size", type=int, help="trials per job (default 17: 3 jobs per task at 51 trials)")
    sweep.set_defaults(func=_sweep)
    status = sweep.add_subparsers(dest="sweep_command").add_parser(
        "status", help="per policy and task: trials done, errors, running, queued, failed")
    status.add_argument("run_dir", metavar="RUN_DIR")
    status.set_defaults(func=_sweep_status)

    report = sub.add_parser("report", help="per-task success table (the paper's Table VI layout) and plots")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders or sweep folders")
    report.add_argument("--format", choices=["md", "csv", "tex", "html"], default="md", help="default md")
    report.add_argument("--out", help="file to write (default: print)")
    report.add_argument("--compare-paper", action="store_true", help="show the LDA-1B paper's Table VI columns")
    report.add_argument("--paper-column", action="append", metavar="POLICY=COLUMN",
                        help="put a paper column (e.g. LDA) beside a measured policy or column (repeatable); "
                             "without it, --compare-paper appends every paper column")
    report.add_argument("--plots", action="store_true", help="also write the plots as PNG next to --out "
                                                             "(html embeds them always)")
    report.set_defaults(func=_report)
    return parser


def _add_policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True, help="registered policy name (see `lda-bench policies list`)")
    parser.add_argument("--policy-arg", action="append", metavar="KEY=VALUE", help="policy argument (repeatable)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
    except (UsageError, KeyError, ValueError, OSError) as e:
        # A bare KeyError would print quoted; its subclasses here (unknown task or policy) word their own message.
        message = e.args[0] if type(e) is KeyError and e.args else e
        print(f"lda-bench: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
