"""A reader for LeRobot v2.x datasets in GR00T's flavour, shared by the replay policy, the demo generator
and LDA training.

A dataset folder holds `meta/info.json` (path templates, features), `meta/modality.json` (GR00T's map from
each state/action key to a slice of a parquet column, or to a column of its own; video and annotation keys
to their columns), `meta/episodes.jsonl`, `meta/tasks.jsonl`, `meta/stats.json`, one parquet file per
episode and one mp4 per episode per camera. GR00T's simulation release puts one such folder per task
(`gr1_unified.<Class>_GR1ArmsAndWaistFourierHands_1000`) under a common root: `find_datasets` finds them.

Partial downloads are common: every error names the missing or unreadable file, and a camera that
`info.json` declares but whose files are absent fails only when that camera is asked for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

DEFAULT_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
DEFAULT_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
# Where each modality's keys live when modality.json names no `original_key`.
ENVIRONMENT_COLUMN = "observation.environment_state"
DEFAULT_COLUMNS = {"state": "observation.state", "action": "action"}
GR00T_FOLDER = re.compile(r"^gr1_unified\.(?P<task>\w+?)_GR1ArmsAndWaistFourierHands_(?P<count>\d+)$")
QUALITIES = ("high", "low", "video")
# Annotation keys of modality.json that hold an instruction (as a task index into tasks.jsonl), best first.
INSTRUCTION_ANNOTATIONS = ("human.coarse_action", "human.action.task_description", "human.task_description")


@dataclass(frozen=True)
class KeySlice:
    """Where one state or action key lives: `column[start:end]` of each row of an episode's parquet file."""

    column: str
    start: int
    end: int

    @property
    def width(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class LeRobotDataset:
    """One LeRobot v2.0/v2.1 dataset folder; reads episodes on demand and caches nothing but its metadata."""

    root: Path
    info: dict[str, Any]
    modality: dict[str, Any]
    slices: dict[str, dict[str, KeySlice]]
    episodes: dict[int, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[int, str] = field(default_factory=dict)

    @classmethod
    def open(cls, root: Path | str) -> LeRobotDataset:
        root = Path(root)
        meta = {}
        for name in ("info", "modality"):
            path = root / "meta" / f"{name}.json"
            if not path.is_file():
                raise FileNotFoundError(f"{root} is not a LeRobot dataset in GR00T's flavour: {path} is missing")
            meta[name] = _read_json(path)
        version = meta["info"].get("codebase_version")
        if version not in ("v2.0", "v2.1"):
            raise ValueError(f"{root}: LeRobot codebase_version {version!r} is not supported (v2.0 or v2.1)")
        slices = {modality: {key: KeySlice(spec.get("original_key", DEFAULT_COLUMNS[modality]),
                                           int(spec["start"]), int(spec["end"]))
                             for key, spec in meta["modality"].get(modality, {}).items()}
                  for modality in ("state", "action")}
        episodes = {int(row["episode_index"]): row for row in _read_jsonl(root / "meta/episodes.jsonl")}
        tasks = {int(row["task_index"]): row["task"] for row in _read_jsonl(root / "meta/tasks.jsonl")}
        return cls(root, meta["info"], meta["modality"], slices, episodes, tasks)

    # --- what the dataset holds --------------------------------------------------------------------

    @property
    def action_slices(self) -> dict[str, KeySlice]:
        return self.slices["action"]

    @property
    def action_keys(self) -> list[str]:
        return list(self.slices["action"])

    @property
    def state_keys(self) -> list[str]:
        return list(self.slices["state"])

    @property
    def num_episodes(self) -> int:
        return int(self.info["total_episodes"])

    @property
    def fps(self) -> float:
        return float(self.info.get("fps", 20))

    @property
    def name(self) -> str:
        """The task class for a GR00T `gr1_unified.<Class>_..._1000` folder, else the folder name."""
        match = GR00T_FOLDER.match(self.root.name)
        return match["task"] if match else self.root.name

    @cached_property
    def video_keys(self) -> dict[str, str]:
        """Every camera the dataset declares: short name (`ego_view`) -> column / folder (`video.ego_view`)."""
        declared = {}
        for name, spec in self.modality.get("video", {}).items():
            declared[name] = spec.get("original_key") or self._video_column(name)
        for column, spec in self.info.get("features", {}).items():
            if spec.get("dtype") == "video" and column not in declared.values():
                declared[column.split(".")[-1]] = column
        return declared

    def _video_column(self, name: str) -> str:
        features = self.info.get("features", {})
        for column in (f"video.{name}", f"observation.images.{name}"):
            if column in features:
                return column
        return f"video.{name}"

    @cached_property
    def stats(self) -> dict[str, Any]:
        """`meta/stats.json` (per column: mean, std, min, max, q01, q99), or {} when the dataset has none."""
        path = self.root / "meta/stats.json"
        return _read_json(path) if path.is_file() else {}

    def key_stats(self, modality: str, key: str) -> dict[str, np.ndarray] | None:
        """The statistics of one state/action key, sliced out of its column's; None if stats.json lacks it."""
        where = self.slices[modality][key]
        column = self.stats.get(where.column)
        if column is None:
            return None
        return {stat: np.asarray(values, dtype=np.float64).reshape(-1)[where.start:where.end]
                for stat, values in column.items() if isinstance(values, list)}

    def episode(self, episode: int) -> dict[str, Any]:
        """The episode's line of `meta/episodes.jsonl` ({} when there is none)."""
        self._check_index(episode)
        return self.episodes.get(episode, {})

    def instruction(self, episode: int) -> str:
        """The episode's language instruction: the task that its first frame's annotation column names in
        tasks.jsonl (GR00T's `annotation.human.coarse_action`, else the task description), or else the
        first task listed for it in episodes.jsonl (which may also list labels such as "valid")."""
        annotations = self.modality.get("annotation", {})
        for key in INSTRUCTION_ANNOTATIONS:
            if key in annotations and self.tasks:
                column = annotations[key].get("original_key", f"annotation.{key}")
                path = self._existing_parquet(episode)
                if column in pq.read_schema(path).names:
                    index = int(pd.read_parquet(path, columns=[column])[column].iloc[0])
                    if index in self.tasks:
                        return self.tasks[index]
        tasks = self.episode(episode).get("tasks")
        return tasks[0] if tasks else ""

    def quality(self, episode: int) -> str:
        """The episode's data role: `high`, `low`, or `video` (action-free). Unlabelled episodes are `high`
        unless the dataset has no actions at all."""
        row = self.episode(episode)
        quality = row.get("quality", "high" if self.action_keys else "video")
        if quality not in QUALITIES:
            raise ValueError(f"{self.root}: episode {episode} has quality {quality!r}; expected one of {QUALITIES}")
        return quality

    # --- episodes ----------------------------------------------------------------------------------

    def _check_index(self, episode: int) -> None:
        if not 0 <= episode < self.num_episodes:
            raise IndexError(f"{self.root} has episodes 0..{self.num_episodes - 1}; asked for {episode}")

    def _chunk(self, episode: int) -> int:
        return episode // int(self.info.get("chunks_size", 1000))

    def episode_path(self, episode: int) -> Path:
        self._check_index(episode)
        template = self.info.get("data_path", DEFAULT_DATA_PATH)
        return self.root / template.format(episode_chunk=self._chunk(episode), episode_index=episode)

    def video_path(self, episode: int, view: str) -> Path:
        self._check_index(episode)
        column = self._video_key(view)
        template = self.info.get("video_path", DEFAULT_VIDEO_PATH)
        return self.root / template.format(episode_chunk=self._chunk(episode), episode_index=episode, video_key=column)

    def _video_key(self, view: str) -> str:
        if view in self.video_keys:
            return self.video_keys[view]
        if view in self.video_keys.values():
            return view
        raise KeyError(f"{self.root} declares no camera {view!r}; it declares {sorted(self.video_keys) or 'none'}")

    def episode_length(self, episode: int) -> int:
        length = self.episode(episode).get("length")
        if length is not None:
            return int(length)
        return pq.ParquetFile(self._existing_parquet(episode)).metadata.num_rows

    def episode_actions(self, episode: int, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        """The (frames, dim) float64 values of each requested action key (default: all) in one episode."""
        return self._episode_values(episode, "action", keys)

    def episode_states(self, episode: int, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        """The (frames, dim) float64 values of each requested state key (default: all) in one episode."""
        return self._episode_values(episode, "state", keys)

    def _existing_parquet(self, episode: int) -> Path:
        path = self.episode_path(episode)
        if not path.is_file():
            raise FileNotFoundError(f"episode {episode} of {self.root} is missing: {path}")
        return path

    def _episode_values(self, episode: int, modality: str, keys: list[str] | None) -> dict[str, np.ndarray]:
        slices = self.slices[modality]
        keys = list(slices) if keys is None else keys
        unknown = [key for key in keys if key not in slices]
        if unknown:
            raise KeyError(f"{self.root} has no {modality} key(s) {unknown}; meta/modality.json names {list(slices)}")
        path = self._existing_parquet(episode)
        columns = sorted({slices[key].column for key in keys})
        try:
            present = set(pq.read_schema(path).names)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            raise ValueError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
        absent = [column for column in columns if column not in present]
        if absent:
            raise ValueError(f"{path} lacks column(s) {absent} that meta/modality.json names for its {modality}")
        try:
            table = pd.read_parquet(path, columns=columns)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
        values = {column: _as_matrix(table[column].to_numpy()) for column in columns}
        out = {}
        for key in keys:
            where = slices[key]
            width = values[where.column].shape[1]
            if where.end > width:
                raise ValueError(f"{modality} key {key!r} is [{where.start}:{where.end}] of column {where.column!r}, "
                                 f"which has only {width} values per frame")
            out[key] = values[where.column][:, where.start:where.end]
        return out

    def episode_environment(self, episode: int) -> np.ndarray | None:
        """The (frames, width) simulator state recorded beside one episode (`observation.environment_state`),
        or None when the dataset has none."""
        path = self._existing_parquet(episode)
        if ENVIRONMENT_COLUMN not in pq.read_schema(path).names:
            return None
        return _as_matrix(pd.read_parquet(path, columns=[ENVIRONMENT_COLUMN])[ENVIRONMENT_COLUMN].to_numpy())

    def episode_frames(self, episode: int, view: str = "ego_view", size: int | None = None) -> np.ndarray:
        """Every frame of one camera in one episode as uint8 (frames, H, W, 3), decoded with PyAV;
        resized to size x size when given."""
        import av

        path = self.video_path(episode, view)
        if not path.is_file():
            present = [name for name in self.video_keys if self.video_path(episode, name).is_file()]
            raise FileNotFoundError(f"camera {view!r} is declared in {self.root / 'meta/info.json'} but its video "
                                    f"for episode {episode} is missing: {path} (cameras present: {present or 'none'})")
        try:
            with av.open(str(path)) as container:
                frames = [frame.to_ndarray(format="rgb24", width=size, height=size) if size
                          else frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        except (av.error.FFmpegError, ValueError, IndexError) as exc:
            raise ValueError(f"cannot decode {path}: {type(exc).__name__}: {exc}") from exc
        if not frames:
            raise ValueError(f"cannot decode {path}: it holds no video frames")
        return np.stack(frames)


def find_datasets(root: Path | str) -> list[Path]:
    """The dataset folders under `root`: root itself if it is one, else every child folder that is one
    (GR00T's `gr1_unified.<Class>_..._1000` layout), sorted by name."""
    root = Path(root)
    if (root / "meta/info.json").is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"no dataset folder at {root}")
    found = sorted(child for child in root.iterdir() if (child / "meta/info.json").is_file())
    if not found:
        raise FileNotFoundError(f"{root} holds no LeRobot dataset: neither {root / 'meta/info.json'} nor a "
                                f"child folder with one (GR00T's gr1_unified.<Task>_..._1000 layout)")
    return found


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {number} is not valid JSON: {exc}") from exc
    return rows


def _as_matrix(column: np.ndarray) -> np.ndarray:
    """A parquet column of per-frame lists (or scalars) as a (frames, width) float64 array."""
    rows = np.stack(column) if column.dtype == object else column
    return np.asarray(rows, dtype=np.float64).reshape(len(column), -1)


class LeRobotWriter:
    """Writes a LeRobot v2.1 dataset in GR00T's layout: per-key slices of the `observation.state` and
    `action` columns, one mp4 per camera (h264 via PyAV), episodes/tasks/stats metadata written by `close()`.
    Extra fields of an episode (e.g. `quality`) go to episodes.jsonl.

    `write_episode` writes one episode's files under temporary names and renames them into place, so a
    killed writer never leaves a half-written episode; it needs no state from earlier episodes, so worker
    processes can each write their own (pass `tasks` so that task indexes agree between them)."""

    def __init__(self, root: Path | str, keys: dict[str, int], fps: int = 20, views: tuple[str, ...] = ("ego_view",),
                 robot_type: str = "GR1ArmsAndWaistFourierHands", tasks: tuple[str, ...] = ()):
        self.root, self.keys, self.fps, self.views, self.robot_type = Path(root), keys, fps, views, robot_type
        self.episodes: list[dict[str, Any]] = []
        self.tasks: dict[str, int] = {task: i for i, task in enumerate(tasks)}

    def _slices(self) -> dict[str, dict[str, int]]:
        out, start = {}, 0
        for key, dim in self.keys.items():
            out[key] = {"start": start, "end": start + dim}
            start += dim
        return out

    def add_episode(self, states: np.ndarray, actions: np.ndarray, frames: dict[str, np.ndarray], instruction: str,
                    **fields: Any) -> int:
        """Write the next episode and remember its metadata for `close()`."""
        self.episodes.append(self.write_episode(len(self.episodes), states, actions, frames, instruction, **fields))
        return self.episodes[-1]["episode_index"]

    def write_episode(self, index: int, states: np.ndarray, actions: np.ndarray, frames: dict[str, np.ndarray],
                      instruction: str, environment: np.ndarray | None = None, **fields: Any) -> dict[str, Any]:
        """Write episode `index`'s parquet and videos; return its episodes.jsonl row. `environment`: per-frame
        simulator state (LeRobot's `observation.environment_state`), for teaching encoders, never a policy input."""
        import av

        length = len(states)
        extra = {}
        if environment is not None:
            environment = np.asarray(environment, np.float64)
            if environment.ndim != 2 or len(environment) != length:
                raise ValueError(f"environment state must be (frames={length}, width); got {environment.shape}")
            extra[ENVIRONMENT_COLUMN] = list(environment)
        task = self.tasks.setdefault(instruction, len(self.tasks))
        path = self.episode_path(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        # `index` counts frames across the dataset; GR00T's loaders only need it unique, so episodes written
        # out of order by different workers use index * 10**6 + frame.
        pd.DataFrame({"observation.state": list(np.asarray(states, np.float64)),
                      "action": list(np.asarray(actions, np.float64)),
                      "timestamp": np.arange(length, dtype=np.float32) / self.fps,
                      "frame_index": np.arange(length), "episode_index": np.full(length, index),
                      "index": index * 10**6 + np.arange(length), "task_index": np.full(length, task),
                      "annotation.human.coarse_action": np.full(length, task), **extra}).to_parquet(partial)
        for view in self.views:
            video = np.asarray(frames[view], dtype=np.uint8)
            out = self.video_path(index, view)
            out.parent.mkdir(parents=True, exist_ok=True)
            partial_video = out.with_name(f".{out.stem}.partial.mp4")
            with av.open(str(partial_video), mode="w") as container:
                stream = container.add_stream("libx264", rate=self.fps)
                stream.width, stream.height, stream.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
                stream.options = {"crf": "18"}
                for image in video:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
                container.mux(stream.encode())
            partial_video.replace(out)
        partial.replace(path)  # the parquet last: its presence means the episode's files are all there
        return {"episode_index": index, "tasks": [instruction], "length": length, **fields}

    def episode_path(self, index: int) -> Path:
        return self.root / DEFAULT_DATA_PATH.format(episode_chunk=index // 1000, episode_index=index)

    def video_path(self, index: int, view: str) -> Path:
        return self.root / DEFAULT_VIDEO_PATH.format(episode_chunk=index // 1000, episode_index=index,
                                                     video_key=f"video.{view}")

    def close(self) -> Path:
        """Write every meta file for the episodes in `self.episodes` (statistics read back from their parquet)."""
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        self.episodes.sort(key=lambda e: e["episode_index"])
        total = sum(e["length"] for e in self.episodes)
        width = sum(self.keys.values())
        features = {"observation.state": {"dtype": "float64", "shape": [width]},
                    "action": {"dtype": "float64", "shape": [width]}}
        first = self.episode_path(self.episodes[0]["episode_index"]) if self.episodes else None
        if first is not None and ENVIRONMENT_COLUMN in pq.read_schema(first).names:
            width_env = len(pd.read_parquet(first, columns=[ENVIRONMENT_COLUMN])[ENVIRONMENT_COLUMN].iloc[0])
            features[ENVIRONMENT_COLUMN] = {"dtype": "float64", "shape": [width_env]}
        for view in self.views:
            shape = []
            if self.episodes:
                import av

                with av.open(str(self.video_path(self.episodes[0]["episode_index"], view))) as container:
                    stream = container.streams.video[0]
                    shape = [stream.height, stream.width, 3]
            features[f"video.{view}"] = {"dtype": "video", "shape": shape, "names": ["height", "width", "channels"]}
        info = {"codebase_version": "v2.1", "robot_type": self.robot_type, "total_episodes": len(self.episodes),
                "total_frames": total, "total_tasks": len(self.tasks), "total_videos": len(self.episodes) * len(self.views),
                "total_chunks": (len(self.episodes) - 1) // 1000 + 1, "chunks_size": 1000, "fps": self.fps,
                "splits": {"train": f"0:{len(self.episodes)}"}, "data_path": DEFAULT_DATA_PATH,
                "video_path": DEFAULT_VIDEO_PATH, "features": features}
        modality = {"state": {k: {**v, "original_key": "observation.state"} for k, v in self._slices().items()},
                    "action": {k: {**v, "original_key": "action"} for k, v in self._slices().items()},
                    "video": {view: {"original_key": f"video.{view}"} for view in self.views},
                    "annotation": {"human.coarse_action": {"original_key": "annotation.human.coarse_action"}}}
        columns: dict[str, list[np.ndarray]] = {"observation.state": [], "action": []}
        episode_stats = []
        for e in self.episodes:
            index = e["episode_index"]
            table = pd.read_parquet(self.episode_path(index), columns=list(columns))
            per_episode = {}
            for column, rows in columns.items():
                rows.append(_as_matrix(table[column].to_numpy()))
                per_episode[column] = {**_column_stats(rows[-1], quantiles=False), "count": [len(rows[-1])]}
            episode_stats.append({"episode_index": index, "stats": per_episode})
        stats = {column: _column_stats(np.concatenate(rows) if rows else np.zeros((0, width)))
                 for column, rows in columns.items()}
        (meta / "info.json").write_text(json.dumps(info, indent=2))
        (meta / "modality.json").write_text(json.dumps(modality, indent=2))
        (meta / "stats.json").write_text(json.dumps(stats))
        (meta / "episodes_stats.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episode_stats))
        (meta / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in self.episodes))
        (meta / "tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                  for t, i in self.tasks.items()))
        return self.root


def _column_stats(values: np.ndarray, quantiles: bool = True) -> dict[str, list[float]]:
    """LeRobot's per-column statistics (mean, std, min, max and, for stats.json, q01 and q99)."""
    if not len(values):
        return {}
    stats = {"mean": values.mean(0).tolist(), "std": values.std(0).tolist(),
             "min": values.min(0).tolist(), "max": values.max(0).tolist()}
    if quantiles:
        stats.update(q01=np.quantile(values, 0.01, axis=0).tolist(), q99=np.quantile(values, 0.99, axis=0).tolist())
    return stats
