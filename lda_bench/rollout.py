"""One episode: an environment, a policy and a scene seed in, one `EpisodeRecord` out.

The policy is asked for a chunk, the first `action_steps` of it are executed (success is checked after
every control step and the episode ends at the first success), and so on until `max_steps`. Whatever the
policy does wrong (raises, answers with a malformed chunk, does not answer in time) fails this episode
with the error recorded, so one bad episode does not stop an evaluation; errors of the environment itself
are bugs of the harness and propagate.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from lda_bench.policy import Policy, validate_chunk
from lda_bench.records import EpisodeRecord, EvalProtocol
from lda_bench.video import write_video
from tasks.layout import VIDEO_KEY
from tasks.specs import TaskSpec

T = TypeVar("T")
TRACEBACK_FRAMES = 4


def run_episode(env, policy: Policy, task_spec: TaskSpec, trial: int, seed: int, action_steps: int, max_steps: int,
                *, policy_name: str, policy_args: dict[str, Any] | None = None,
                policy_timeout_s: float | None = None, video_path: Path | str | None = None,
                serving: dict[str, Any] | None = None) -> EpisodeRecord:
    """Run trial `trial` of a task from scene `seed` and describe how it went.

    `policy_timeout_s` bounds every call into the policy. `serving` says how a served policy was hosted (the
    record's protocol carries it). With `video_path`, the episode is rendered at
    every control step (20 fps) instead of once per chunk and written there as an mp4; the physics, and
    so the record, are the same either way.
    """
    if action_steps < 1 or max_steps < 1:
        raise ValueError(f"need action_steps >= 1 and max_steps >= 1; got {action_steps}, {max_steps}")
    start = time.perf_counter()
    if hasattr(policy, "bind_env"):  # a privileged policy (the scripted expert) reads the simulator itself
        policy.bind_env(getattr(env, "unwrapped", env))
    obs, info = env.reset(seed=seed)
    instruction = info["instruction"]
    frames = None if video_path is None else [obs[VIDEO_KEY]]
    steps, success, first_success_step = 0, False, None
    _, error = _ask(lambda: policy.reset(task_spec.name, instruction), policy_timeout_s)
    while error is None and steps < max_steps and not success:
        chunk, error = _ask(lambda: validate_chunk(policy.get_action(obs)), policy_timeout_s)
        if error is not None:
            break
        n = min(action_steps, len(next(iter(chunk.values()))), max_steps - steps)
        chunk = {key: value[:n] for key, value in chunk.items()}
        # Filming renders after every step; otherwise the environment renders once, after the chunk.
        pieces = [chunk] if frames is None else [{key: value[i:i + 1] for key, value in chunk.items()} for i in range(n)]
        for piece in pieces:
            obs, taken, success, first_success_step = env.step_chunk(piece)
            steps += taken
            if frames is not None:
                frames.append(obs[VIDEO_KEY])
            if success:
                break
    wall_time_s = time.perf_counter() - start
    if frames is not None:
        write_video(video_path, frames, fps=20, caption=instruction)
    height, width = env.image_hw
    protocol = EvalProtocol(max_steps=max_steps, action_steps=action_steps,
                            image_size=height if height == width else [height, width],
                            image_variant=env.image_variant, scene_split=env.scene_split, instances=env.instances,
                            serving=serving)
    return EpisodeRecord(policy=policy_name, policy_args=dict(policy_args or {}), task=task_spec.name, trial=trial,
                         seed=seed, success=success, first_success_step=first_success_step, steps=steps,
                         wall_time_s=wall_time_s, error=error, instruction=instruction, protocol=asdict(protocol),
                         object=info["scene"]["object"], object_instance=info["scene"].get("object_instance"),
                         scene_redraws=info["scene"].get("redraws"))


def _ask(call: Callable[[], T], timeout_s: float | None) -> tuple[T | None, str | None]:
    """Call into the policy: (its answer, None), or (None, what went wrong)."""
    try:
        return _within(call, timeout_s), None
    except Exception as exc:  # noqa: BLE001 - any failure of the policy fails the episode, not the run
        return None, _describe_error(exc)


def _within(call: Callable[[], T], timeout_s: float | None) -> T:
    """Run `call`, giving up after `timeout_s`.

    A Python call cannot be interrupted, so a late one runs on, abandoned, in a daemon thread: the caller
    must not use that policy instance again (`evaluate` builds a new one after a time-out).
    """
    if timeout_s is None:
        return call()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="policy-call", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"the policy did not answer within {timeout_s:g} s (policy_timeout_s); call abandoned")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _describe_error(exc: BaseException) -> str:
    """`Type: message` on the first line, then the innermost frames of the traceback."""
    tail = "".join(traceback.format_exception(exc, limit=-TRACEBACK_FRAMES)).rstrip()
    return f"{type(exc).__name__}: {exc}\n{tail}"
