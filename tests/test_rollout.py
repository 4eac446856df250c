"""One episode: chunk execution, the end at first success, policy failures recorded, time-outs, video."""

from __future__ import annotations

import threading
import time

import av
import numpy as np
import pytest

from lda_bench.policy import CHUNK_KEYS, STATE_KEYS, make_policy
from lda_bench.rollout import run_episode
from policy_helpers import INSTRUCTION, make_observation
from tasks.layout import ACTION_DIMS, ACTION_KEYS
from tasks.specs import get_task

TASK = "PnP Can To Drawer Close"
SPEC = get_task(TASK)


class ScriptedEnv:
    """Stands in for a task environment (no simulation): the task succeeds at control step `success_at`."""

    image_hw = (16, 16)
    image_variant, scene_split, instances = "square", "eval", "A"

    def __init__(self, success_at: int | None = None):
        self.success_at = success_at
        self.elapsed_steps = 0

    def reset(self, seed: int):
        self.elapsed_steps = 0
        return make_observation(seed), {"instruction": INSTRUCTION, "seed": seed, "success": False,
                                        "scene": {"object": "can"}}

    def step_chunk(self, chunk, render=True):
        steps = len(next(iter(chunk.values())))
        for i in range(steps):
            self.elapsed_steps += 1
            if self.elapsed_steps == self.success_at:
                return make_observation(), i + 1, True, self.elapsed_steps
        return make_observation(), steps, False, None


class CountingPolicy:
    """Answers every call with a chunk of `chunk` steps holding zeros; counts the calls."""

    def __init__(self, chunk: int = 8):
        self.chunk, self.calls, self.resets = chunk, 0, []

    def reset(self, task, instruction):
        self.resets.append((task, instruction))

    def get_action(self, obs):
        self.calls += 1
        return {CHUNK_KEYS[part]: np.zeros((self.chunk, ACTION_DIMS[part])) for part in ACTION_KEYS}


def episode(env, policy, action_steps=4, max_steps=20, **kwargs):
    return run_episode(env, policy, SPEC, 3, 5, action_steps, max_steps, policy_name="test", **kwargs)


def test_the_episode_ends_at_the_first_success():
    policy = CountingPolicy(chunk=8)
    record = episode(ScriptedEnv(success_at=11), policy, action_steps=4, max_steps=20)
    assert (record.success, record.first_success_step, record.steps) == (True, 11, 11)
    assert policy.calls == 3  # steps 1-4, 5-8, 9-11 of the first 4 of each chunk
    assert policy.resets == [(TASK, INSTRUCTION)]
    assert record.error is None


@pytest.mark.parametrize("chunk, action_steps, max_steps, calls", [
    (8, 4, 10, 3),   # 4 + 4 + the 2 steps left
    (2, 8, 6, 3),    # a chunk shorter than action_steps is executed whole
    (8, 8, 16, 2),
])
def test_chunks_are_cut_to_action_steps_and_the_episode_to_max_steps(chunk, action_steps, max_steps, calls):
    policy = CountingPolicy(chunk)
    record = episode(ScriptedEnv(), policy, action_steps=action_steps, max_steps=max_steps)
    assert (record.success, record.first_success_step, record.steps, policy.calls) == (False, None, max_steps, calls)


def test_a_hold_episode_on_the_real_task_is_recorded_in_full(task_env):
    env = task_env(TASK)
    record = run_episode(env, make_policy("hold"), SPEC, 2, 2, 8, 12, policy_name="hold", policy_args={})
    assert (record.policy, record.task, record.trial, record.seed) == ("hold", TASK, 2, 2)
    assert (record.success, record.first_success_step, record.steps, record.error) == (False, None, 12, None)
    assert record.instruction == env.reset(seed=2)[1]["instruction"] and record.object == "can"
    assert record.object_instance == "can" and record.scene_redraws == env.reset(seed=2)[1]["scene"]["redraws"]
    assert record.protocol["max_steps"] == 12 and record.protocol["action_steps"] == 8
    assert record.protocol["image_size"] == 256 and record.protocol["image_variant"] == "bg_crop_pad"
    assert record.protocol["scene_split"] == "eval" and record.wall_time_s > 0


class FailingPolicy(CountingPolicy):
    def __init__(self, fail_on_call: int):
        super().__init__()
        self.fail_on_call = fail_on_call

    def get_action(self, obs):
        chunk = super().get_action(obs)
        if self.calls == self.fail_on_call:
            raise RuntimeError("the model fell over")
        return chunk


def test_a_policy_that_raises_fails_the_episode_with_its_error_and_traceback():
    record = episode(ScriptedEnv(), FailingPolicy(fail_on_call=2), action_steps=4)
    assert not record.success and record.steps == 4
    first_line, *tail = record.error.splitlines()
    assert first_line == "RuntimeError: the model fell over"
    assert any("in get_action" in line for line in tail)


def test_a_malformed_chunk_fails_the_episode():
    class Misspelt(CountingPolicy):
        def get_action(self, obs):
            chunk = super().get_action(obs)
            chunk["action.left_harm"] = chunk.pop("action.left_arm")
            return chunk

    record = episode(ScriptedEnv(), Misspelt())
    assert record.steps == 0 and record.error.startswith("InvalidChunkError: unexpected key(s) ['action.left_harm']")


def test_a_policy_that_fails_to_reset_fails_the_episode_before_any_step():
    class BadReset(CountingPolicy):
        def reset(self, task, instruction):
            raise KeyError("no such task")

    policy = BadReset()
    record = episode(ScriptedEnv(), policy)
    assert record.error.startswith("KeyError: 'no such task'") and record.steps == 0 and policy.calls == 0


def test_a_policy_that_hangs_past_the_time_out_fails_with_a_timeout_error():
    release = threading.Event()

    class Hanging(CountingPolicy):
        def get_action(self, obs):
            chunk = super().get_action(obs)
            if self.calls == 2:
                release.wait(30)
            return chunk

    start = time.perf_counter()
    try:
        record = episode(ScriptedEnv(), Hanging(), action_steps=4, policy_timeout_s=0.3)
    finally:
        release.set()
    assert time.perf_counter() - start < 5
    assert record.error.startswith("TimeoutError: the policy did not answer within 0.3 s")
    assert record.steps == 4 and not record.success


def test_a_policy_within_its_time_out_runs_as_without_one():
    record = episode(ScriptedEnv(success_at=7), CountingPolicy(), policy_timeout_s=5.0)
    assert (record.success, record.steps, record.error) == (True, 7, None)


class StateLog:
    """Wraps a policy and keeps every state it was shown."""

    def __init__(self, policy):
        self.policy, self.states = policy, []

    def reset(self, task, instruction):
        self.policy.reset(task, instruction)

    def get_action(self, obs):
        self.states.append(np.concatenate([obs[key] for key in STATE_KEYS.values()]))
        return self.policy.get_action(obs)


def test_a_filmed_episode_writes_an_mp4_at_every_step_and_runs_the_same_physics(task_env, tmp_path):
    env = task_env(TASK)
    plain, filmed = StateLog(make_policy("random", seed=4)), StateLog(make_policy("random", seed=4))
    record = run_episode(env, plain, SPEC, 1, 1, 4, 10, policy_name="random")
    path = tmp_path / "videos" / "trial1.mp4"
    filmed_record = run_episode(env, filmed, SPEC, 1, 1, 4, 10, policy_name="random", video_path=path)
    assert (filmed_record.steps, filmed_record.success) == (record.steps, record.success) == (10, False)
    np.testing.assert_array_equal(np.array(filmed.states), np.array(plain.states))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        assert stream.average_rate == 20
    assert len(frames) == 11  # the first observation, then one per control step
    height, width = frames[0].shape[:2]
    assert width == 256 and height > 256 and height % 2 == 0  # the caption band sits under the picture
    assert frames[0][256:].max() > 200, "no caption drawn"
