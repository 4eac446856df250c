"""Experiments: demonstrations, training, evaluation and report from one YAML file, as one resumable run.

An experiment folder holds `experiment.yaml` (the file as resolved: task families expanded, defaults
filled in), and one folder per stage:

    demos/<GR00T dataset folder>      one dataset per task; demos/shards/ while it is being recorded
    encoder/                          the vision encoder pretrained on them, when the file asks for one
    train/<name>/                     one training run per trained policy (checkpoint.pt, log.jsonl, done.json)
    eval/                             one sweep of every policy, trained and as-is (`lda_bench/sweep.py`)
    report.md, report.html

Each stage runs as submitit jobs (local, Slurm, or debug: in this process) and waits for them; a stage
already done is skipped, and a stage cut short continues where it stopped, because each job resumes its
own work: a demonstration shard records only its missing episodes (`demos.generate`), a training run
resumes from its checkpoint, a sweep submits only unrecorded trials. Demonstrations are recorded in
shards of episode indices, each into its own folder with their final indices, so that merging a task's
shards into one dataset is a hard link per file and a rewrite of the meta files (`demos.merge`).
"""

from __future__ import annotations

import difflib
import json
import shutil
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from tasks.assets import INSTANCE_SPLITS
from tasks.images import DEFAULT_VARIANT, IMAGE_VARIANTS

from lda_bench.demos import PROGRESS_FILE, dataset_folder, generate, merge, validate
from lda_bench.sweep import ClusterProfile, SweepPolicy, job_error_line, make_executor, make_sweep, resolve_profile, \
    run_bounded, run_sweep, sweep_status

RESOLVED_FILE = "experiment.yaml"
EXECUTORS = ("local", "slurm", "debug")
HOW_IT_RUNS = ("executor", "profile", "train_profile")  # may change between runs of one experiment folder
REPORT_FORMATS = ("md", "html")


class ExperimentError(ValueError):
    """An experiment file that does not say what an experiment may say, or a folder made from another file."""


@dataclass(frozen=True)
class Demos:
    """Scripted demonstrations per task (`lda-bench demos generate`), recorded `episodes_per_job` per job."""

    episodes: int
    low_quality_fraction: float = 0.2
    max_steps: int = 720
    episodes_per_job: int = 25


@dataclass(frozen=True)
class Encoder:
    """A vision encoder pretrained on the demonstrations (`lda-bench encoder pretrain`, `model/vision.py`) in
    place of DINOv3's weights; every trained policy reads it (its preset's image size must be the encoder's)."""

    steps: int = 3000
    image_size: int = 96
    batch_size: int = 64


@dataclass(frozen=True)
class TrainedPolicy:
    """An LDA trained on every task's demonstrations (`lda-bench train`), evaluated as `lda` from its checkpoint."""

    name: str
    preset: str
    steps: int
    batch_size: int
    lr: float | None = None
    keep_every: int | None = None   # also keep the checkpoint every N steps (train/<name>/checkpoints/)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # preset fields, e.g. action_space: relative


@dataclass(frozen=True)
class EvaluatedPolicy:
    """A registered policy evaluated as it is (e.g. scripted, hold)."""

    policy: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    tasks: list[str]
    demos: Demos
    train: list[TrainedPolicy]
    evaluate: list[EvaluatedPolicy] = field(default_factory=list)
    encoder: Encoder | None = None
    trials: int = 51
    max_steps: int = 720
    action_steps: int = 8
    image_size: int | None = None
    image_variant: str = DEFAULT_VARIANT  # the picture demonstrations hold and evaluations deliver (tasks/images.py)
    instances: str = "A"                  # the object instances evaluated: A, or B (held out; demonstrations use A)
    executor: str = "local"
    profile: str | None = None          # cluster profile of every job (`slurm/profiles/`)
    train_profile: str | None = None    # of the training jobs, when they need other resources (GPUs)

    def resolved(self) -> dict[str, Any]:
        values = asdict(self)
        for policy in values["train"]:  # unset, as in folders recorded before it existed
            if not policy["model_overrides"]:
                del policy["model_overrides"]
        return values


# ---- the file ---------------------------------------------------------------------------------------------------

def load_experiment(path: Path | str) -> Experiment:
    """Read and check an experiment file; every error names the key and what it may be."""
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"experiment file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ExperimentError(f"{path} is not valid YAML: {exc}") from exc
    return _experiment(data, path)


def _experiment(data: Any, path: Path) -> Experiment:
    from model.config import get_config
    from lda_bench.policy import policy_arguments
    from tasks.specs import resolve_tasks

    def fail(message: str) -> ExperimentError:
        return ExperimentError(f"{path}: {message}")

    values = _mapping(data, Experiment, "the experiment", fail)
    if not isinstance(values["tasks"], list) or not values["tasks"] or not all(isinstance(t, str) for t in values["tasks"]):
        raise fail(f"tasks must be a list of task names or families (`lda-bench tasks list`), got {values['tasks']!r}")
    try:
        values["tasks"] = [spec.name for spec in resolve_tasks(values["tasks"])]
    except KeyError as exc:
        raise fail(f"tasks: {exc.args[0]}") from exc
    values["demos"] = Demos(**_mapping(values["demos"], Demos, "demos", fail))
    if values.get("encoder") is not None:
        values["encoder"] = Encoder(**_mapping(values["encoder"], Encoder, "encoder", fail))
    for name in ("train", "evaluate"):
        if not isinstance(values[name], list):
            raise fail(f"{name} must be a list (one entry per policy), got {values[name]!r}")
    values["train"] = [TrainedPolicy(**_mapping(entry, TrainedPolicy, f"train[{i}]", fail))
                       for i, entry in enumerate(values["train"])]
    values["evaluate"] = [EvaluatedPolicy(**_mapping(entry, EvaluatedPolicy, f"evaluate[{i}]", fail))
                          for i, entry in enumerate(values["evaluate"])]
    experiment = Experiment(**values)
    if not experiment.train and not experiment.evaluate:
        raise fail("nothing to evaluate: give train (policies to train) or evaluate (policies as they are)")
    names = [policy.name for policy in experiment.train]
    for i, policy in enumerate(experiment.train):
        if not policy.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise fail(f"train[{i}].name names its run folder: letters, digits, '-', '_' and '.' only; got {policy.name!r}")
        if policy.name in names[:i]:
            raise fail(f"train[{i}].name {policy.name!r} is given twice; each trained policy needs its own name")
        try:
            config = get_config(policy.preset)
        except KeyError as exc:
            raise fail(f"train[{i}].preset: {exc.args[0]}") from exc
        try:
            config = config.with_(**policy.model_overrides)
        except (TypeError, ValueError) as exc:
            raise fail(f"train[{i}].model_overrides: {exc}") from exc
        if experiment.encoder and config.image_size != experiment.encoder.image_size:
            raise fail(f"train[{i}].preset {policy.preset!r} reads {config.image_size}-pixel images; the encoder is "
                       f"pretrained at {experiment.encoder.image_size} (use a preset made for it, such as tiny-vision)")
    for i, policy in enumerate(experiment.evaluate):
        try:
            policy_arguments(policy.policy)
        except KeyError as exc:
            raise fail(f"evaluate[{i}].policy: {exc.args[0]}") from exc
    if experiment.image_variant not in IMAGE_VARIANTS:
        raise fail(f"image_variant must be one of {', '.join(IMAGE_VARIANTS)}, got {experiment.image_variant!r}")
    if experiment.instances not in INSTANCE_SPLITS:
        raise fail(f"instances must be one of {', '.join(INSTANCE_SPLITS)}, got {experiment.instances!r}")
    if experiment.executor not in EXECUTORS:
        raise fail(f"executor must be one of {', '.join(EXECUTORS)}, got {experiment.executor!r}")
    if experiment.executor == "slurm" and experiment.profile is None:
        raise fail("executor slurm needs profile: a cluster profile such as slurm/profiles/gpu-cluster.example.yaml")
    for name in ("profile", "train_profile"):
        if getattr(experiment, name) is not None:
            ClusterProfile.load(getattr(experiment, name))  # raises naming the file and the bad setting
    return experiment


def _mapping(data: Any, cls: type, where: str, fail: Callable[[str], ExperimentError]) -> dict[str, Any]:
    """`data` checked against the fields of dataclass `cls`: no unknown keys, every required one, each value of
    its annotated type (whole numbers and rates where numbers are asked)."""
    known = {f.name: f for f in fields(cls)}
    if not isinstance(data, dict):
        raise fail(f"{where} must be a mapping of {', '.join(known)}; got {data!r}")
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            raise fail(f"unknown key {_key(where, key)!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                       + f"; {where} may set {', '.join(known)}")
    required = [name for name, f in known.items() if _required(f) and name not in data]
    if required:
        raise fail(f"{where} lacks {', '.join(repr(_key(where, name)) for name in required)}")
    for key, value in data.items():
        wanted = _wanted(key, known[key].type, value)
        if wanted:
            raise fail(f"{_key(where, key)} must be {wanted}, got {value!r}")
    return dict(data)


def _key(where: str, key: str) -> str:
    return key if where == "the experiment" else f"{where}.{key}"


def _required(f) -> bool:
    from dataclasses import MISSING

    return f.default is MISSING and f.default_factory is MISSING


def _wanted(key: str, annotation: str, value: Any) -> str | None:
    """What a value of this annotation must be, when `value` is not that; None when it is."""
    if value is None and annotation.endswith("| None"):
        return None
    if annotation.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        return None if ok else "a whole number >= 1"
    if annotation.startswith("float"):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key == "low_quality_fraction":
            return None if number and 0 <= value <= 1 else "a fraction between 0 and 1"
        return None if number and value > 0 else "a positive number"
    if annotation.startswith("str"):
        return None if isinstance(value, str) and value else "a non-empty string"
    if annotation.startswith("dict"):
        what = "model configuration fields" if key == "model_overrides" else "policy arguments"
        return None if isinstance(value, dict) else f"a mapping of {what}"
    return None  # nested sections and lists are checked by their own rules


# ---- the folder -------------------------------------------------------------------------------------------------

def claim(experiment: Experiment, out: Path) -> None:
    """Record the resolved experiment in `out`, or check that `out` was made from the same one (how the jobs run
    may change between runs; what they do may not)."""
    path = out / RESOLVED_FILE
    resolved = experiment.resolved()
    if path.is_file():
        recorded = yaml.safe_load(path.read_text(encoding="utf-8"))
        differing = [key for key in resolved if key not in HOW_IT_RUNS and recorded.get(key) != resolved[key]]
        if differing:
            raise ExperimentError(f"{out} holds an experiment made from another file: it differs in "
                                  f"{', '.join(differing)} (see {path}); run this file into another --out folder")
        if recorded == resolved:
            return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")


def recorded_experiment(out: Path | str) -> Experiment:
    path = Path(out) / RESOLVED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{out} is not an experiment folder (no {RESOLVED_FILE})")
    return _experiment(yaml.safe_load(path.read_text(encoding="utf-8")), path)


def _dataset(out: Path, experiment: Experiment, task: str) -> Path:
    return out / "demos" / dataset_folder(task, experiment.demos.episodes)


def _shards(out: Path, experiment: Experiment, task: str) -> Path:
    return out / "demos" / "shards" / dataset_folder(task, experiment.demos.episodes)


def _shard_ranges(experiment: Experiment) -> list[range]:
    n, size = experiment.demos.episodes, experiment.demos.episodes_per_job
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def _checkpoint(out: Path, policy: TrainedPolicy) -> Path:
    return (out / "train" / policy.name / "checkpoint.pt").resolve()


def policy_for_preset(preset: str) -> str:
    """The registered policy that acts with a checkpoint of this preset: its name less `-tiny` where that is a
    policy (gr00t-n1.6-tiny -> gr00t-n1.6), else the family's (an LDA acts as `lda`, or `lda-dit`)."""
    from lda_bench.policy import available_policies
    from model.config import get_config

    name = preset.removesuffix("-tiny")
    if name in available_policies():
        return name
    config = get_config(preset)
    return "lda-dit" if getattr(config, "backbone", None) == "dit" else config.family


def _sweep(out: Path, experiment: Experiment):
    """The evaluation: each trained policy from its checkpoint, beside the policies as they are."""
    policies = ([SweepPolicy(policy_for_preset(p.preset), {"checkpoint": str(_checkpoint(out, p))})
                 for p in experiment.train]
                + [SweepPolicy(p.policy, p.args) for p in experiment.evaluate])
    sweep = make_sweep(list(dict.fromkeys(p.name for p in policies)), tasks=experiment.tasks, trials=experiment.trials,
                       out=out / "eval", max_steps=experiment.max_steps, action_steps=experiment.action_steps,
                       image_size=experiment.image_size, image_variant=experiment.image_variant,
                       instances=experiment.instances)
    return replace(sweep, policies=tuple(policies))


# ---- stages -----------------------------------------------------------------------------------------------------

def record_shard(task: str, experiment: Experiment, shard_root: Path, indices: range) -> Path:
    """A job: record episodes `indices` of `task`'s dataset into its own shard folder (resuming one cut short)."""
    demos = experiment.demos
    return generate(task, demos.episodes, shard_root / f"{indices.start:06d}-{indices.stop:06d}",
                    low_quality_fraction=demos.low_quality_fraction, image_size=experiment.image_size,
                    image_variant=experiment.image_variant,
                    max_steps=demos.max_steps, progress=False, indices=indices)[0]


def _demos_done(out: Path, experiment: Experiment, task: str) -> bool:
    return (_dataset(out, experiment, task) / "meta/info.json").is_file() and not _shards(out, experiment, task).exists()


def run_demos(out: Path, experiment: Experiment) -> None:
    tasks = [task for task in experiment.tasks if not _demos_done(out, experiment, task)]
    if not tasks:
        return
    jobs = [(task, experiment, _shards(out, experiment, task), indices)
            for task in tasks for indices in _shard_ranges(experiment)]
    print(f"demonstrations: {len(tasks)} task(s) x {experiment.demos.episodes} episodes in {len(jobs)} job(s)", flush=True)
    _run_jobs(experiment, experiment.profile, out / "demos", record_shard, jobs,
              lambda task, _, __, indices: f"{task} episodes {indices.start}-{indices.stop - 1}")
    for task in tasks:
        shards = sorted(path for path in _shards(out, experiment, task).glob("*/gr1_unified.*"))
        root = merge(shards, _dataset(out, experiment, task), task)
        print(validate(root)[0], flush=True)
        shutil.rmtree(_shards(out, experiment, task))
    if not any((out / "demos" / "shards").iterdir()):
        (out / "demos" / "shards").rmdir()


def _encoder_done(out: Path) -> bool:
    from model.vision import is_pretrained_here

    return is_pretrained_here(out / "encoder")


def pretrain_encoder(experiment: Experiment, out: Path) -> None:
    """A job: pretrain the vision encoder on every task's demonstrations."""
    from model.vision import PretrainConfig, pretrain

    e = experiment.encoder
    pretrain([_dataset(out, experiment, t) for t in experiment.tasks], out / "encoder",
             PretrainConfig(image_size=e.image_size, steps=e.steps, batch_size=e.batch_size))


def run_encoder(out: Path, experiment: Experiment) -> None:
    if experiment.encoder is None or _encoder_done(out):
        return
    print("encoder: pretraining on the demonstrations", flush=True)
    _run_jobs(experiment, experiment.train_profile or experiment.profile, out / "encoder-jobs", pretrain_encoder,
              [(experiment, out)], lambda *_: "pretraining the encoder")


def train_policy(experiment: Experiment, policy: TrainedPolicy, out: Path) -> None:
    """A job: train (or resume) one policy on every task's demonstrations, then mark its run folder done."""
    from model.train import TrainConfig, train

    run = out / "train" / policy.name
    train(TrainConfig.load(policy.preset, data=[str(_dataset(out, experiment, t)) for t in experiment.tasks],
                           out=str(run), steps=policy.steps, batch_size=policy.batch_size, lr=policy.lr,
                           keep_every=policy.keep_every, model_overrides=policy.model_overrides or None,
                           dino=str(out / "encoder") if experiment.encoder else None))
    (run / "done.json").write_text(json.dumps({"steps": policy.steps, "checkpoint": str(_checkpoint(out, policy))}))


def run_training(out: Path, experiment: Experiment) -> None:
    todo = [policy for policy in experiment.train if not (out / "train" / policy.name / "done.json").is_file()]
    if todo:
        print(f"training: {', '.join(p.name for p in todo)}", flush=True)
        _run_jobs(experiment, experiment.train_profile or experiment.profile, out / "train", train_policy,
                  [(experiment, policy, out) for policy in todo], lambda _, policy, __: f"training {policy.name}")


def run_evaluation(out: Path, experiment: Experiment) -> None:
    if _evaluation_counts(out, experiment)[0] == experiment.trials * len(experiment.tasks) * _policy_count(experiment):
        return
    sweep = _sweep(out, experiment)
    if experiment.executor == "debug":  # the sweep's own runner knows local and Slurm; debug jobs run here
        from lda_bench.sweep import plan, submit

        jobs = submit(sweep, plan(sweep), make_executor("debug", sweep.out), "debug")
    else:
        jobs = run_sweep(sweep, experiment.executor, _profile(experiment.profile))
    failures = [str(exc) for exc in _wait(jobs)]
    if failures:
        raise RuntimeError(f"{len(failures)} evaluation job(s) failed (run the experiment again to retry them):\n"
                           + "\n".join(failures))


def run_report(out: Path, experiment: Experiment) -> None:
    from lda_bench.report import write_report

    for fmt in REPORT_FORMATS:
        path = out / f"report.{fmt}"
        if not path.is_file():
            partial = path.with_name(f".{path.name}.partial")
            write_report([out / "eval"], fmt, partial)
            partial.replace(path)
            print(f"wrote {path}", flush=True)


STAGES = (run_demos, run_encoder, run_training, run_evaluation, run_report)


def run_experiment(path: Path | str, out: Path | str | None = None) -> Path:
    """Run every stage of the experiment file into `out` (default runs/<file name>), skipping what is done."""
    experiment = load_experiment(path)
    out = Path(out or Path("runs") / Path(path).stem)
    claim(experiment, out)
    for run in STAGES:
        run(out, experiment)
    return out


# ---- jobs -------------------------------------------------------------------------------------------------------

def _profile(path: str | None) -> ClusterProfile | None:
    return ClusterProfile.load(path) if path else None


def _run_jobs(experiment: Experiment, profile: str | None, folder: Path, function: Callable, arguments: list[tuple],
              describe: Callable[..., str], poll_s: float = 0.5) -> None:
    """Run `function(*args)` for each of `arguments` as submitit jobs and wait for them all: local jobs at most the
    profile's parallelism at once (default one per core), Slurm ones as the cluster schedules them, debug ones
    in this process. Raises naming every job that failed, once all have ended."""
    kind = experiment.executor
    executor = make_executor(kind, folder, _profile(profile))
    at_once = resolve_profile(kind, _profile(profile)).array_parallelism if kind == "local" else len(arguments)
    failures = []

    def end(args: tuple, job, cancelled: bool) -> None:
        errors = [] if cancelled else _wait([job])
        failures.extend(f"{describe(*args)}: {job_error_line(exc)}" for exc in errors)
        print(f"{describe(*args)}: {'cancelled' if cancelled else 'failed' if errors else 'done'}", flush=True)

    run_bounded(arguments, at_once, lambda args: executor.submit(function, *args), on_end=end, poll_s=poll_s)
    if failures:
        raise RuntimeError(f"{len(failures)} job(s) failed (logs in {folder / 'submitit'}; run the experiment again "
                           f"to retry them):\n" + "\n".join(failures))


def _wait(jobs: list) -> list[Exception]:
    """Wait for each job; the exceptions of those that failed."""
    failures = []
    for job in jobs:
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 - a failed job is reported once all have ended
            failures.append(exc)
    return failures


# ---- status -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageStatus:
    stage: str
    state: str      # done | partial | not started
    detail: str


def _policy_count(experiment: Experiment) -> int:
    return len(experiment.train) + len(experiment.evaluate)


def _evaluation_counts(out: Path, experiment: Experiment) -> tuple[int, int]:
    """(episodes recorded, episodes asked) of the evaluation."""
    asked = experiment.trials * len(experiment.tasks) * _policy_count(experiment)
    if not (out / "eval" / "sweep.json").is_file():
        return 0, asked
    return sum(row.done for row in sweep_status(out / "eval")), asked


def _recorded_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def experiment_status(out: Path | str) -> list[StageStatus]:
    """Each stage of the experiment in `out`: done, partial (with counts) or not started."""
    out = Path(out)
    experiment = recorded_experiment(out)
    n = experiment.demos.episodes

    def state(done: int, total: int, started: bool | None = None) -> str:
        return "done" if done == total else "partial" if (done if started is None else started) else "not started"

    demos = {task: n if _demos_done(out, experiment, task) else
             sum(_recorded_lines(shard / PROGRESS_FILE) for shard in _shards(out, experiment, task).glob("*/gr1_unified.*"))
             for task in experiment.tasks}
    recorded = sum(demos.values())
    rows = [StageStatus("demonstrations", state(recorded, n * len(demos)),
                        f"{recorded}/{n * len(demos)} episodes: " + ", ".join(f"{t} {c}/{n}" for t, c in demos.items()))]
    if experiment.encoder is not None:
        rows.append(StageStatus("encoder", "done" if _encoder_done(out) else "not started", str(out / "encoder")))
    steps = {policy.name: (policy.steps if (out / "train" / policy.name / "done.json").is_file()
                           else _last_step(out / "train" / policy.name / "log.jsonl"), policy.steps)
             for policy in experiment.train}
    rows.append(StageStatus("training", state(sum(d == t for d, t in steps.values()), len(steps),
                                              any(d for d, _ in steps.values())),
                            ", ".join(f"{name} step {d}/{t}" for name, (d, t) in steps.items()) or "nothing to train"))
    done, asked = _evaluation_counts(out, experiment)
    rows.append(StageStatus("evaluation", state(done, asked), f"{done}/{asked} episodes"))
    reports = [fmt for fmt in REPORT_FORMATS if (out / f"report.{fmt}").is_file()]
    rows.append(StageStatus("report", state(len(reports), len(REPORT_FORMATS)),
                            ", ".join(str(out / f"report.{fmt}") for fmt in reports) or "-"))
    return rows


def _last_step(log: Path) -> int:
    steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines()] if log.is_file() else []
    return max(steps, default=0)


def print_experiment_status(rows: list[StageStatus]) -> None:
    width = max(len(row.stage) for row in rows)
    for row in rows:
        print(f"{row.stage:<{width}}  {row.state:<11}  {row.detail}")
