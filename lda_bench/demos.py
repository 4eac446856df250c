"""Demonstrations from the scripted expert as LeRobot v2.1 datasets in GR00T's flavour, one per task.

Episode i of a task starts from scene seed `seed_offset + i` of the `train` split of scenes, which no
evaluation draws from (evaluations use the `eval` split: `tasks/sampling.py`), whatever the offset; whether it is spoiled into a low-quality
demonstration is drawn from that seed too, so a dataset is the same whatever the worker count or how
often generation was interrupted. Each episode's files are renamed into place before its line is appended
to `meta/episodes.jsonl`: on restart, an episode counts as done only with both, and the other meta files
are rewritten from the finished episodes at the end of every run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lda_bench.lerobot import LeRobotDataset, LeRobotWriter, find_datasets
from tasks.images import DEFAULT_VARIANT, default_size
from tasks.layout import ACTION_DIMS, ACTION_KEYS, VIDEO_KEY

PROGRESS_FILE = "meta/episodes.jsonl"
SCENE_SPLIT = "train"       # demonstrations never start from an evaluation scene
ARM_KEYS = ("action.left_arm", "action.right_arm")
SPOILERS = ("pause", "hesitation", "noise", "detour")


def dataset_folder(task: str, episodes: int) -> str:
    """GR00T's folder name for a task's dataset: `gr1_unified.<UpstreamClass>_GR1ArmsAndWaistFourierHands_<N>`."""
    from tasks.specs import get_task

    return f"gr1_unified.{get_task(task).upstream_class}_GR1ArmsAndWaistFourierHands_{episodes}"


def is_low_quality(seed: int, fraction: float) -> bool:
    return bool(np.random.default_rng([seed, 1]).random() < fraction)


class SpoiledExpert:
    """Wraps the expert and spoils its motion the ways human teleoperators do: pauses (the last action
    repeated), hesitation (slowed segments), noisy arm targets and detours (a joint-space offset that swells
    and fades). Which spoilers act, and when, is drawn from `rng`."""

    def __init__(self, expert, rng: np.random.Generator):
        self.expert, self.rng = expert, rng
        chosen = rng.random(len(SPOILERS)) < 0.5
        chosen[rng.integers(len(SPOILERS))] = True  # at least one
        self.spoilers = {name for name, on in zip(SPOILERS, chosen) if on}

    def bind_env(self, env) -> None:
        self.expert.bind_env(env)

    def reset(self, task: str, instruction: str) -> None:
        self.expert.reset(task, instruction)
        self._last: dict[str, np.ndarray] | None = None
        self._slow = 0
        self._detour: tuple[dict[str, np.ndarray], int, int] | None = None  # offsets, steps done, duration

    def get_action(self, obs: dict) -> dict[str, np.ndarray]:
        chunk = self.expert.get_action(obs)
        steps = []
        for i in range(len(chunk[ARM_KEYS[0]])):
            steps.extend(self._spoil({key: value[i] for key, value in chunk.items()}))
        return {key: np.stack([s[key] for s in steps]) for key in chunk}

    def _spoil(self, step: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        rng, out = self.rng, []
        if self._last is not None and "pause" in self.spoilers and rng.random() < 0.02:
            out += [self._last] * int(rng.integers(5, 20))
        if "hesitation" in self.spoilers and not self._slow and rng.random() < 0.02:
            self._slow = int(rng.integers(10, 30))
        if self._last is not None and self._slow:
            self._slow -= 1
            out.append({key: (self._last[key] + step[key]) / 2 for key in step})  # half speed
        if "detour" in self.spoilers and self._detour is None and rng.random() < 0.01:
            self._detour = ({key: rng.normal(0.0, 0.15, 7) for key in ARM_KEYS}, 0, int(rng.integers(20, 40)))
        out.append(step)
        spoiled = []
        for action in out:
            action = {key: value.copy() for key, value in action.items()}
            if "noise" in self.spoilers:
                for key in ARM_KEYS:
                    action[key] += rng.normal(0.0, 0.02, action[key].shape)
            if self._detour is not None:
                offsets, done, duration = self._detour
                for key in ARM_KEYS:
                    action[key] += offsets[key] * np.sin(np.pi * done / duration)
                self._detour = None if done + 1 >= duration else (offsets, done + 1, duration)
            spoiled.append(action)
        self._last = step
        return spoiled


@dataclass(frozen=True)
class DemoSettings:
    """What every worker needs to record episodes (sent to spawned workers)."""

    out: str
    episodes: int
    low_quality_fraction: float
    seed_offset: int
    image_size: int | None
    max_steps: int
    image_variant: str = DEFAULT_VARIANT


def record_episode(env, writer: LeRobotWriter, index: int, settings: DemoSettings, policy=None) -> dict[str, Any]:
    """Run the (possibly spoiled) expert (or `policy`) for episode `index`, rendering every step, and write
    its files; return its episodes.jsonl row. An episode the policy or simulator breaks off is kept, as a
    failure with its error."""
    from lda_bench.policy import make_policy

    seed = settings.seed_offset + index
    low = is_low_quality(seed, settings.low_quality_fraction)
    policy = policy or make_policy("scripted")
    if low:
        policy = SpoiledExpert(policy, np.random.default_rng([seed, 2]))
    policy.bind_env(env)
    obs, info = env.reset(seed=seed)
    policy.reset(env.spec_.name, info["instruction"])
    states, actions, frames, environment, success, error = [], [], [], [], False, None
    try:
        while len(actions) < settings.max_steps and not success:
            chunk = policy.get_action(obs)
            for i in range(len(chunk[ARM_KEYS[0]])):
                if len(actions) == settings.max_steps or success:
                    break
                action = {f"action.{k}": chunk[f"action.{k}"][i:i + 1] for k in ACTION_KEYS}
                state = np.concatenate([obs[f"state.{k}"] for k in ACTION_KEYS])
                frame = obs[VIDEO_KEY]
                if hasattr(env, "environment_state"):  # this suite's scenes; not an upstream backend's
                    environment.append(env.environment_state())
                obs, _, success, _ = env.step_chunk(action)
                states.append(state)
                actions.append(np.concatenate([action[f"action.{k}"][0] for k in ACTION_KEYS]))
                frames.append(frame)
    except Exception as exc:  # the expert or the simulator failed mid-episode: keep what was done, as a failure
        error = f"{type(exc).__name__}: {exc}"
        if not actions:
            raise RuntimeError(f"{env.spec_.name}, seed {seed}: the episode failed before its first step: {error}") from exc
        success = False
    quality = "high" if success and not low else "low"
    return writer.write_episode(index, np.stack(states), np.stack(actions), {"ego_view": np.stack(frames)},
                                info["instruction"], environment=np.stack(environment) if environment else None,
                                seed=seed, scene_split=SCENE_SPLIT, image_variant=env.image_variant,
                                image_size=env.image_hw[0], success=bool(success), quality=quality,
                                spoilers=sorted(policy.spoilers) if low else [], error=error)


def _writer(root: Path, task: str) -> LeRobotWriter:
    """The writer of one task's dataset; its task list is fixed up front so that workers agree on indexes."""
    from tasks.specs import get_task

    spec = get_task(task)
    return LeRobotWriter(root, dict(ACTION_DIMS), fps=20, tasks=tuple(dict.fromkeys(spec.language(o) for o in spec.objects)))


_worker: dict[str, Any] = {}


def _start_worker(settings: DemoSettings, parent_pid: int) -> None:
    from lda_bench.evaluate import _watch

    _worker["settings"] = settings
    threading.Thread(target=_watch, args=(parent_pid,), daemon=True).start()


def _record_in_worker(item: tuple[str, int]) -> tuple[str, dict[str, Any]]:
    """Record one episode in this worker, keeping one environment (the last task's) alive between calls."""
    from tasks.env import GR1TabletopEnv

    task, index = item
    settings = _worker["settings"]
    if _worker.get("task") != task:
        if "env" in _worker:
            _worker["env"].close()
        _worker["env"] = GR1TabletopEnv(task, image_size=settings.image_size, image_variant=settings.image_variant,
                                        scene_split=SCENE_SPLIT)
        _worker["task"] = task
    root = Path(settings.out) / dataset_folder(task, settings.episodes)
    return task, record_episode(_worker["env"], _writer(root, task), index, settings)


def _finished(root: Path) -> dict[int, dict[str, Any]]:
    """Episodes whose metadata line is complete and whose files are all present; rewrites the progress file
    to exactly those (dropping a line cut short by a kill, or one whose files were lost)."""
    path = root / PROGRESS_FILE
    if not path.is_file():
        return {}
    done = {}
    writer = LeRobotWriter(root, dict(ACTION_DIMS))
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        index = row["episode_index"]
        dataset_files = [writer.episode_path(index), *(writer.video_path(index, view) for view in writer.views)]
        if all(f.is_file() for f in dataset_files):
            done[index] = row
    path.write_text("".join(json.dumps(row) + "\n" for row in done.values()))
    return done


def generate(task: str, episodes: int, out: Path | str, workers: int = 1, low_quality_fraction: float = 0.2,
             seed_offset: int = 0, image_size: int | None = None, max_steps: int = 720, progress: bool = True,
             on_episode: Callable[[str, dict[str, Any]], None] | None = None,
             image_variant: str = DEFAULT_VARIANT, indices: range | None = None) -> list[Path]:
    """Record `episodes` demonstrations of `task` (a name, family or 'all') into `out/<GR00T folder>`,
    continuing whatever an earlier run left; returns the dataset folders. `on_episode(task, row)` is
    called as each episode is recorded. `indices` records only those episodes of the `episodes`: a shard
    of the dataset whose files already carry their final episode indices (`lda_bench/experiment.py`)."""
    from lda_bench.evaluate import _worker_environment
    from tasks.specs import resolve_tasks

    if episodes < 1 or workers < 1 or not 0.0 <= low_quality_fraction <= 1.0:
        raise ValueError(f"need episodes >= 1, workers >= 1 and 0 <= low_quality_fraction <= 1; "
                         f"got {episodes}, {workers}, {low_quality_fraction}")
    indices = range(episodes) if indices is None else indices
    if not indices or indices[0] < 0 or indices[-1] >= episodes:
        raise ValueError(f"indices must be a non-empty range within 0..{episodes - 1}; got {indices}")
    image_size = default_size(image_variant) if image_size is None else image_size
    settings = DemoSettings(str(out), episodes, low_quality_fraction, seed_offset, image_size, max_steps, image_variant)
    names = [spec.name for spec in resolve_tasks([task])]
    roots = {name: Path(out) / dataset_folder(name, episodes) for name in names}
    done = {name: _finished(root) for name, root in roots.items()}
    for name, rows in done.items():  # one dataset holds one kind of picture
        held = {(row.get("image_variant"), row.get("image_size")) for row in rows.values()} - {(image_variant, image_size)}
        if held:
            raise ValueError(f"{roots[name]} holds episodes recorded with image variant and size {sorted(held, key=str)}, "
                             f"not {image_variant!r} at {image_size}: record into another folder, or give those")
    for root in roots.values():
        (root / "meta").mkdir(parents=True, exist_ok=True)
    todo = [(name, i) for name in names for i in indices if i not in done[name]]
    if todo:
        with _worker_environment(), multiprocessing.get_context("spawn").Pool(
                min(workers, len(todo)), initializer=_start_worker, initargs=(settings, os.getpid())) as pool:
            for count, (name, row) in enumerate(pool.imap_unordered(_record_in_worker, todo), 1):
                with open(roots[name] / PROGRESS_FILE, "a") as progress_file:
                    progress_file.write(json.dumps(row) + "\n")
                done[name][row["episode_index"]] = row
                if on_episode:
                    on_episode(name, row)
                if progress:
                    print(f"{count}/{len(todo)} {name} episode {row['episode_index']}: "
                          f"{'success' if row['success'] else 'failure'}, {row['quality']}", flush=True)
    for name, root in roots.items():
        writer = _writer(root, name)
        writer.episodes = list(done[name].values())
        writer.close()
    return list(roots.values())


def validate(directory: Path | str) -> list[str]:
    """Check every dataset under `directory`: meta files, episode numbering, and that every parquet file
    opens with the declared columns and length and every video decodes to one frame per row. Returns one
    line per dataset; raises ValueError naming every problem found."""
    summaries, problems = [], []
    for root in find_datasets(directory):
        found = _problems(root)
        problems += [f"{root.name}: {p}" for p in found]
        if not found:
            dataset = LeRobotDataset.open(root)
            summaries.append(f"{root.name}: ok, {dataset.num_episodes} episodes, {dataset.info['total_frames']} frames")
    if problems:
        raise ValueError(f"{len(problems)} problem(s) in {directory}:\n" + "\n".join(problems))
    return summaries


def _problems(root: Path) -> list[str]:
    missing = [name for name in ("info.json", "modality.json", "episodes.jsonl", "tasks.jsonl", "stats.json",
                                 "episodes_stats.jsonl") if not (root / "meta" / name).is_file()]
    if missing:
        return [f"meta/{name} is missing" + (" (generation unfinished? run `demos generate` again)"
                                             if name == "info.json" else "") for name in missing]
    try:
        dataset = LeRobotDataset.open(root)
    except (ValueError, FileNotFoundError) as exc:
        return [str(exc)]
    problems = []
    if sorted(dataset.episodes) != list(range(dataset.num_episodes)):
        problems.append(f"meta/episodes.jsonl lists episodes {sorted(dataset.episodes)[:10]}..., but info.json "
                        f"declares {dataset.num_episodes} (0..{dataset.num_episodes - 1})")
    for index in range(dataset.num_episodes):
        row = dataset.episode(index)
        try:
            length = len(next(iter(dataset.episode_actions(index).values())))
            if "length" in row and length != row["length"]:
                problems.append(f"episode {index}: {dataset.episode_path(index)} has {length} rows, "
                                f"meta/episodes.jsonl says {row['length']}")
            dataset.quality(index)
            if dataset.instruction(index) not in dataset.tasks.values():
                problems.append(f"episode {index}: its task index is not in meta/tasks.jsonl")
        except (ValueError, FileNotFoundError, KeyError) as exc:
            problems.append(f"episode {index}: {exc}")
            continue
        for view in dataset.video_keys:
            try:
                frames = len(dataset.episode_frames(index, view))
            except (ValueError, FileNotFoundError) as exc:
                problems.append(f"episode {index}: {exc}")
                continue
            if frames != length:
                problems.append(f"episode {index}: {dataset.video_path(index, view)} decodes to {frames} frames, "
                                f"the parquet has {length} rows")
    return problems


def merge(shards: list[Path], root: Path | str, task: str) -> Path:
    """Gather shard datasets of `task` (each written by `generate(..., indices=...)`, so their files already
    carry their final episode indices) into one dataset at `root`: each episode's files are hard-linked
    into place, then the meta files are rewritten for all of them. The shards are left as they were, so a
    merge cut short is simply run again."""
    root = Path(root)
    writer = _writer(root, task)
    for shard in shards:
        rows = LeRobotDataset.open(shard).episodes.values()
        source = LeRobotWriter(shard, dict(ACTION_DIMS))
        for row in rows:
            index = row["episode_index"]
            pairs = [(source.episode_path(index), writer.episode_path(index)),
                     *((source.video_path(index, view), writer.video_path(index, view)) for view in writer.views)]
            for old, new in pairs:
                new.parent.mkdir(parents=True, exist_ok=True)
                if not new.exists():
                    os.link(old, new)
        writer.episodes += rows
    indices = sorted(row["episode_index"] for row in writer.episodes)
    if indices != list(range(len(indices))):
        raise ValueError(f"the shards of {root.name} hold episodes {indices[:10]}...: not 0..{len(indices) - 1} once each")
    writer.close()
    return root


@dataclass(frozen=True)
class ReplayResult:
    """One recorded episode played back open loop: whether the replay succeeds where the recording did."""

    dataset: str
    episode: int
    seed: int
    recorded: bool           # the episode's success as recorded
    replayed: bool           # success at any step of the replay
    first_success_step: int | None
    steps: int

    @property
    def reproduces(self) -> bool:
        return self.recorded == self.replayed


def replay(directory: Path | str, episodes: int | None = None) -> list[ReplayResult]:
    """Play the recorded actions of the first `episodes` episodes (default all) of each dataset under
    `directory` back, one control step at a time from the episode's scene (its seed and scene split), and
    check that the simulator reproduces each recorded success or failure."""
    from tasks.env import GR1TabletopEnv
    from tasks.specs import get_task

    results = []
    for root in find_datasets(directory):
        dataset = LeRobotDataset.open(root)
        spec = get_task(dataset.name)
        envs: dict[str, GR1TabletopEnv] = {}  # one per scene split met
        for index in range(dataset.num_episodes if episodes is None else min(episodes, dataset.num_episodes)):
            row = dataset.episode(index)
            missing = [name for name in ("seed", "scene_split", "success") if name not in row]
            if missing:
                raise ValueError(f"{root / PROGRESS_FILE}: episode {index} has no field(s) {missing}, which a "
                                 f"replay needs to start from its scene and check its outcome")
            if row["scene_split"] not in envs:
                envs[row["scene_split"]] = GR1TabletopEnv(spec, image_size=64, scene_split=row["scene_split"])
            env = envs[row["scene_split"]]
            env.reset(seed=row["seed"])
            actions = dataset.episode_actions(index)
            first = None
            for step in range(len(actions[ACTION_KEYS[0]])):
                _, _, success, _ = env.step_chunk({f"action.{k}": actions[k][step:step + 1] for k in ACTION_KEYS},
                                                  render=False)
                if success and first is None:
                    first = step + 1
            results.append(ReplayResult(root.name, index, row["seed"], bool(row["success"]), first is not None,
                                        first, len(actions[ACTION_KEYS[0]])))
        for env in envs.values():
            env.close()
    return results


def show(directory: Path | str, episode: int, out: Path | str, view: str = "ego_view", columns: int = 6) -> Path:
    """Write one episode for a person to look at: its video (.mp4, captioned with the instruction and
    labels) or a contact sheet of evenly spaced frames (.png)."""
    from PIL import Image

    from lda_bench.video import write_video

    roots = find_datasets(directory)
    if len(roots) != 1:
        raise ValueError(f"{directory} holds {len(roots)} datasets; name one of them: {[r.name for r in roots]}")
    dataset = LeRobotDataset.open(roots[0])
    frames = dataset.episode_frames(episode, view)
    row = dataset.episode(episode)
    caption = (f"{dataset.instruction(episode)} | seed {row.get('seed')}, "
               f"{'success' if row.get('success') else 'failure'}, {dataset.quality(episode)}")
    out = Path(out)
    if out.suffix == ".mp4":
        write_video(out, list(frames), fps=int(dataset.fps), caption=caption)
    elif out.suffix == ".png":
        picks = frames[np.linspace(0, len(frames) - 1, min(len(frames), 2 * columns)).astype(int)]
        rows = -(-len(picks) // columns)
        height, width = picks.shape[1:3]
        sheet = np.zeros((rows * height, min(columns, len(picks)) * width, 3), dtype=np.uint8)
        for i, frame in enumerate(picks):
            sheet[(i // columns) * height:(i // columns + 1) * height, (i % columns) * width:(i % columns + 1) * width] = frame
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sheet).save(out)
    else:
        raise ValueError(f"--out must end in .mp4 (the episode's video) or .png (a contact sheet); got {out}")
    return out
