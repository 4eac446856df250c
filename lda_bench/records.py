"""Episode records: one JSON line per finished episode, in an append-only store that many writers share.

A run folder holds `protocol.json` (how its episodes were run, fixed for the folder's life), `seeds.json`
(which scene each trial starts from) and `records/*.jsonl`. Every writer (a worker process, a Slurm job on
another node) appends to a file of its own, so writers never interleave bytes and need no lock; a record is
flushed and fsynced before the next episode starts, so a killed writer loses at most the episode in
flight. Readers take the union of the files and count each (policy, policy args, task, trial) once.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

try:
    SUITE_VERSION = f"lda-bench {version('lda-bench')}"
except PackageNotFoundError:  # a source checkout that was never pip-installed
    SUITE_VERSION = "lda-bench (source checkout)"

RecordKey = tuple[str, str, str, int]


def canonical_args(policy_args: dict[str, Any]) -> str:
    """Policy arguments as one JSON string, the same whatever order they were given in."""
    return json.dumps(policy_args, sort_keys=True, separators=(",", ":"))


def record_key(policy: str, policy_args: dict[str, Any], task: str, trial: int) -> RecordKey:
    """What identifies an episode: a run never counts a (policy, arguments, task, trial) twice."""
    return policy, canonical_args(policy_args), task, trial


@dataclass(frozen=True)
class EvalProtocol:
    """How episodes are run. Episodes run under different protocols are not comparable, so never mixed."""

    max_steps: int
    action_steps: int
    image_size: int | list[int]
    image_variant: str = "bg_crop_pad"   # the picture `video.ego_view` holds (tasks/images.py)
    scene_split: str = "eval"            # evaluations start from the evaluation split of scenes only
    instances: str = "A"                 # the object instances drawn: A (the 24 tasks) or B (held out)
    suite: str = SUITE_VERSION
    serving: dict[str, Any] | None = None  # a served evaluation's batching window and device (None: per worker)


# How the episodes were computed, not what they measure (a served evaluation records what a per-worker one
# does): recorded, but never a reason to refuse a folder.
UNCOMPARED_FIELDS = frozenset({"serving"})


@dataclass(frozen=True)
class EpisodeRecord:
    """The outcome of one finished episode (trial `trial` of `task`, scene seed `seed`)."""

    policy: str
    policy_args: dict[str, Any]
    task: str
    trial: int
    seed: int
    success: bool
    first_success_step: int | None
    steps: int
    wall_time_s: float
    error: str | None
    instruction: str
    protocol: dict[str, Any]
    finished_at: float = field(default_factory=time.time)  # unix time: the earliest of duplicates wins
    object: str | None = None        # the task object the scene drew (records of lda-bench <= 0.1.0 lack it)
    object_instance: str | None = None   # which of its instances (older records lack it)
    scene_redraws: int | None = None     # side streams the scene was drawn again from (tasks/env.py; older: None)

    @property
    def key(self) -> RecordKey:
        return record_key(self.policy, self.policy_args, self.task, self.trial)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> EpisodeRecord:
        data = json.loads(line)
        missing = _RECORD_FIELDS - data.keys()
        if missing:
            raise ValueError(f"episode record lacks {sorted(missing)}")
        return cls(**data)


_RECORD_FIELDS = frozenset(f.name for f in fields(EpisodeRecord)) - {"object", "object_instance", "scene_redraws"}


class ProtocolMismatchError(ValueError):
    """A run folder asked to take episodes of a protocol other than the one it holds."""


class RecordStore:
    """The records of one run folder: append-only, safe for concurrent writers on a shared filesystem."""

    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        self.records_dir = self.run_dir / "records"
        self._file = None

    def append(self, record: EpisodeRecord) -> None:
        """Write one record durably (write, flush, fsync) before returning."""
        if self._file is None:
            self.records_dir.mkdir(parents=True, exist_ok=True)
            name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
            self._file = open(self.records_dir / name, "a", encoding="utf-8")
        self._file.write(record.to_json() + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read(self) -> list[EpisodeRecord]:
        """Every recorded episode once per key (the earliest finished wins), in key order.

        A last line without its newline is a record whose writer died (or is still writing): it is skipped.
        Anything else that does not parse is damage, reported rather than skipped.
        """
        found: list[tuple[tuple, EpisodeRecord]] = []
        for path in sorted(self.records_dir.glob("*.jsonl")):
            lines = path.read_text(encoding="utf-8").split("\n")
            # After the final newline split() leaves "" (complete file) or a partial line: drop either.
            for number, line in enumerate(lines[:-1], start=1):
                try:
                    record = EpisodeRecord.from_json(line)
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{path}:{number} is not an episode record: {exc}") from exc
                found.append(((record.finished_at, path.name, number), record))
        earliest: dict[RecordKey, EpisodeRecord] = {}
        for _, record in sorted(found, key=lambda item: item[0]):
            earliest.setdefault(record.key, record)
        return [earliest[key] for key in sorted(earliest)]

    def recorded_keys(self) -> set[RecordKey]:
        return {record.key for record in self.read()}

    def claim(self, protocol: EvalProtocol, policy: str, policy_args: dict[str, Any]) -> None:
        """Fix the folder's protocol and policy if no run has yet; refuse a run that differs from them.

        The file is created by a hard link from a finished temporary file: atomic, so of concurrent first
        runs exactly one wins (and the others are checked against it), and no reader sees half a file.
        """
        path = self.run_dir / "protocol.json"
        if not path.exists():
            _create_once(path, json.dumps(_run_protocol(protocol, policy, policy_args), indent=2) + "\n")
        self.check(protocol, policy, policy_args)

    def check(self, protocol: EvalProtocol, policy: str, policy_args: dict[str, Any]) -> None:
        """Raise ProtocolMismatchError, naming what differs, if the folder holds another protocol."""
        path = self.run_dir / "protocol.json"
        if not path.exists():
            return
        held = json.loads(path.read_text(encoding="utf-8"))
        differences = [f"{name} {held.get(name)!r} there, {value!r} here"
                       for name, value in _run_protocol(protocol, policy, policy_args).items()
                       if held.get(name) != value and name not in UNCOMPARED_FIELDS]
        if differences:
            raise ProtocolMismatchError(f"{self.run_dir} holds episodes of another protocol ({'; '.join(differences)}): "
                                        "results of different protocols are never mixed; choose another output folder")


def _run_protocol(protocol: EvalProtocol, policy: str, policy_args: dict[str, Any]) -> dict[str, Any]:
    """What `protocol.json` holds: the protocol, and the policy that every record of the folder is of."""
    return {**asdict(protocol), "policy": policy, "policy_args": json.loads(canonical_args(policy_args))}


@dataclass(frozen=True)
class SeedManifest:
    """Trial i of every task starts from scene seed i of the evaluation split.

    `tasks/sampling.py` mixes the task name into the scene's random generator, so tasks do not share
    scenes, and trial i of task T is the same scene whatever worker, order, process or machine runs it.
    """

    suite: str = SUITE_VERSION

    def seed(self, task: str, trial: int) -> int:
        return trial

    def write(self, run_dir: Path | str) -> None:
        """Record the rule in `seeds.json` (identical for every writer, so concurrent runs cannot clash)."""
        text = json.dumps({"scene_seed": "trial index", "suite": self.suite,
                           "note": "tasks/sampling.py seeds each scene from sha256('<task>|eval|<seed>'): the evaluation "
                                   "split, which no demonstration draws from"}, indent=2) + "\n"
        path = Path(run_dir) / "seeds.json"
        if not path.exists():
            _create_once(path, text)


def _create_once(path: Path, text: str) -> None:
    """Create `path` holding `text` unless it already exists (whoever links first wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
    temporary.write_text(text, encoding="utf-8")
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
