"""Acting for many environments at once: a model policy's batch path, and `lda-bench serve` answering GR00T's
batched requests (B environments; N1.5 and N1.6 forms). Real sockets on 127.0.0.1, every wait bounded."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import zmq

torch = pytest.importorskip("torch")

import policies.gr00t  # noqa: E402,F401  (registers the GR00T family before the installed entry points know it)
import policies.lda  # noqa: E402,F401
import policies.uwm  # noqa: E402,F401  (and the UWM family)
from lda_bench.policy import CHUNK_KEYS, LANGUAGE_KEY, STATE_KEYS, VIDEO_KEY, make_policy  # noqa: E402
from lda_bench.remote import pack, unpack  # noqa: E402
from model.config import build_model, get_config  # noqa: E402
from model_helpers import moved, saved_checkpoint, small_config  # noqa: E402
from policy_helpers import make_observation, served  # noqa: E402
from tasks.layout import ACTION_DIMS, ACTION_KEYS  # noqa: E402

REPO = Path(__file__).parents[1]
TASK = "PnP Can To Drawer Close"
INSTRUCTIONS = ["pick up the can and put it in the drawer", "open the microwave", "place the apple into the bowl",
                "put the milk in the cabinet and close it"]
# One network of each family, small enough for a CPU test.
FAMILIES = {"lda": small_config, "gr00t-n1.6": lambda: get_config("gr00t-n1.6-tiny"),
            "uwm": lambda: get_config("uwm-tiny")}
ATOL = 1e-5  # one forward over B rows rounds differently from B forwards of one row: equal to float rounding


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """`checkpoint(name)`: the path of a tiny trained-looking checkpoint of that family, made once."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            torch.manual_seed(0)
            config = FAMILIES[name]()
            network = moved(build_model(config))
            made[name] = saved_checkpoint(tmp_path_factory.mktemp(name) / "model.pt", config, network)
        return made[name]

    return get


def observation(env: int, step: int) -> dict:
    """What environment `env` shows at `step`: its own picture, joints and instruction."""
    obs = make_observation(seed=100 * env + step, size=48)
    obs[VIDEO_KEY] = np.random.default_rng([env, step]).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    obs[LANGUAGE_KEY] = INSTRUCTIONS[env % len(INSTRUCTIONS)]
    return obs


def flat(chunk: dict) -> np.ndarray:
    return np.concatenate([chunk[CHUNK_KEYS[part]] for part in ACTION_KEYS], axis=-1)


@pytest.mark.parametrize("name", FAMILIES)
def test_each_environment_of_a_batch_acts_as_it_would_alone(checkpoint, name):
    policy = make_policy(name, checkpoint=str(checkpoint(name)), execute="4")
    alone = {}  # each environment on the single-environment path; environment 1 restarts before step 2
    for env in range(3):
        policy.reset(TASK, INSTRUCTIONS[env])
        alone[env] = [policy.get_action(observation(env, step)) for step in range(2)]
        if env == 1:
            policy.reset(TASK, INSTRUCTIONS[env])
        alone[env].append(policy.get_action(observation(env, 2)))
    policy.reset(TASK, "")
    together = [policy.get_action_batch([observation(env, step) for env in range(3)], [0, 1, 2]) for step in range(2)]
    policy.reset(TASK, INSTRUCTIONS[1], env_ids=[1])
    together.append(policy.get_action_batch([observation(env, 2) for env in range(3)], [0, 1, 2]))
    for env in range(3):
        for step in range(3):
            np.testing.assert_allclose(flat(together[step][env]), flat(alone[env][step]), rtol=0, atol=ATOL,
                                       err_msg=f"environment {env}, step {step}")
    assert flat(together[0][0]).shape == (4, 29)
    assert not np.allclose(flat(together[0][0]), flat(together[0][1]), atol=1e-3)  # the environments differ
    policy.reset(TASK, INSTRUCTIONS[1])  # ... and the reset of environment 1 alone mattered
    continued = [policy.get_action(observation(1, step)) for step in range(3)][-1]
    assert not np.allclose(flat(together[2][1]), flat(continued), atol=1e-3)
    with pytest.raises(ValueError, match="one observation per distinct environment"):
        policy.get_action_batch([observation(0, 0)] * 2, [0, 0])


# --- the server ---------------------------------------------------------------------------------------

@contextmanager
def gr00t_client(address: str) -> Iterator:
    """`ask(endpoint, data)`, as GR00T's clients call: a REQ socket, msgpack, replies within 10 s."""
    context = zmq.Context()
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, 10_000)
    socket.connect(address)

    def ask(endpoint: str, data=None):
        socket.send(pack({"endpoint": endpoint, **({} if data is None else {"data": data})}))
        return unpack(socket.recv())

    try:
        yield ask
    finally:
        socket.close()
        context.term()


def gr00t_observation(observations: list[dict], form: str) -> dict:
    """B environments' observations as GR00T's clients send them: its simulation clients' flat layout (a
    vector env's observation with a time axis: video (B, 1, H, W, 3), state (B, 1, D) float32, B strings),
    or N1.6's nested layout for a bare policy (language (B, 1) lists)."""
    video = np.stack([obs[VIDEO_KEY] for obs in observations])[:, None]
    state = {key: np.stack([obs[key] for obs in observations]).astype(np.float32)[:, None]
             for key in STATE_KEYS.values()}
    language = [obs[LANGUAGE_KEY] for obs in observations]
    if form == "nested":
        return {"video": {"ego_view": video}, "state": {key.removeprefix("state."): v for key, v in state.items()},
                "language": {"annotation.human.coarse_action": [[text] for text in language]}}
    return {VIDEO_KEY: video, **state, LANGUAGE_KEY: language}


def get_action(ask, observations: list[dict], form: str) -> dict:
    """The reply's actions, (B, K, D) by `action.*` key, for a request in `form` (n1.5, n1.6 or nested)."""
    batched = gr00t_observation(observations, form)
    if form == "n1.5":
        return ask("get_action", batched)
    actions, info = ask("get_action", {"observation": batched, "options": None})
    assert info == {}
    return {f"action.{key}" if form == "nested" else key: value for key, value in actions.items()}


def alone(policy, observations_by_step: list[list[dict]]) -> list[list[np.ndarray]]:
    """Each environment's chunks from `policy` acting for it alone, one episode each: [step][env] (K, 29)."""
    steps, envs = len(observations_by_step), len(observations_by_step[0])
    by_env = []
    for env in range(envs):
        policy.reset(TASK, "")
        by_env.append([flat(policy.get_action(observations_by_step[step][env])) for step in range(steps)])
    return [[by_env[env][step] for env in range(envs)] for step in range(steps)]


@pytest.mark.parametrize("form, size", [("n1.5", 3), ("n1.6", 8), ("nested", 3)])
def test_a_batched_request_gets_each_environment_its_own_chunk(checkpoint, form, size):
    path = str(checkpoint("lda"))
    steps = [[observation(env, step) for env in range(size)] for step in range(2)]
    expected = alone(make_policy("lda", checkpoint=path), steps)
    with served(make_policy("lda", checkpoint=path)) as server, gr00t_client(server.address) as ask:
        if form != "n1.5":  # GR00T's N1.6 rollout resets its policy once, without options; N1.5 never does
            assert ask("reset", {"options": None}) == {}
        for step, observations in enumerate(steps):
            actions = get_action(ask, observations, form)
            assert list(actions) == [CHUNK_KEYS[part] for part in ACTION_KEYS]
            length = len(expected[step][0])
            assert all(value.dtype == np.float32 and value.shape == (size, length, ACTION_DIMS[part])
                       for part, value in zip(ACTION_KEYS, actions.values()))
            for env in range(size):
                np.testing.assert_allclose(flat({key: value[env] for key, value in actions.items()}),
                                           expected[step][env], rtol=0, atol=ATOL)


def test_a_policy_that_acts_for_one_environment_is_served_one_instance_per_row():
    new = lambda: make_policy("random", seed=4, chunk=5)  # noqa: E731
    local = [new() for _ in range(3)]
    with served(new(), make_instance=new) as server, gr00t_client(server.address) as ask:
        assert ask("reset", {"options": {"task": TASK, "instruction": INSTRUCTIONS[0]}}) == {}
        for policy in local:
            policy.reset(TASK, INSTRUCTIONS[0])
        for step in range(3):
            if step == 2:  # environment 1's episode ends: only its instance starts over
                assert ask("reset", {"options": {"task": TASK, "instruction": INSTRUCTIONS[1], "env_ids": [1]}}) == {}
                local[1].reset(TASK, INSTRUCTIONS[1])
            observations = [observation(env, step) for env in range(3)]
            actions = get_action(ask, observations, "n1.6")
            for env, policy in enumerate(local):
                np.testing.assert_allclose(flat({key: value[env] for key, value in actions.items()}),
                                           flat(policy.get_action(observations[env])), rtol=0, atol=1e-6)


def _disagreeing_sizes(batched):
    batched["state.left_arm"] = batched["state.left_arm"][:2]
    return "the batch sizes of the observation's keys disagree: state.left_arm 2 against video.ego_view 3$"


def _short_language(batched):
    batched[LANGUAGE_KEY] = batched[LANGUAGE_KEY][:1]
    return "disagree: annotation.human.coarse_action 1 against video.ego_view 3$"


def _missing_key(batched):
    del batched["state.waist"]
    return r"the observation lacks state.waist; GR1's layout is video.ego_view \(B, T, H, W, 3\) uint8"


def _wrong_width(batched):
    batched["state.left_arm"] = batched["state.left_arm"][..., :6]
    return r"state.left_arm has shape \(3, 1, 6\) float32; expected \(B, T, 7\)"


def _no_time_axis(batched):
    batched[VIDEO_KEY] = batched[VIDEO_KEY][:, 0]
    return r"video.ego_view has shape \(3, 48, 48, 3\) uint8; expected \(B, T, H, W, 3\) uint8"


def _float_video(batched):
    batched[VIDEO_KEY] = batched[VIDEO_KEY] / 255.0
    return r"video.ego_view has shape \(3, 1, 48, 48, 3\) float64; expected \(B, T, H, W, 3\) uint8"


def _too_many(batched):
    for key, value in list(batched.items()):
        batched[key] = value * 2 if isinstance(value, list) else np.concatenate([value, value])
    return r"a batch of 6 environments; this server takes 1 to 4 \(--max-batch\)"


@pytest.mark.parametrize("spoil", [_disagreeing_sizes, _short_language, _missing_key, _wrong_width, _no_time_axis,
                                   _float_video, _too_many])
def test_a_bad_batch_is_refused_by_name_and_the_server_serves_on(spoil):
    new = lambda: make_policy("hold")  # noqa: E731
    observations = [observation(env, 0) for env in range(3)]
    with served(new(), make_instance=new, max_batch=4) as server, gr00t_client(server.address) as ask:
        batched = gr00t_observation(observations, "n1.6")
        message = spoil(batched)
        refused = ask("get_action", {"observation": batched, "options": None})
        assert refused.keys() == {"error"}
        assert refused["error"].startswith("InvalidBatchError: ")
        assert re.search(message, refused["error"]), refused["error"]
        actions = get_action(ask, observations, "n1.6")  # the next good batch is answered
    np.testing.assert_array_equal(actions["action.waist"][:, 0], np.stack([obs["state.waist"] for obs in observations]))


def test_a_server_of_one_instance_says_it_serves_batches_of_one_and_bad_env_ids_are_refused():
    with served(make_policy("hold"), max_batch=4) as server, gr00t_client(server.address) as ask:
        refused = ask("get_action", gr00t_observation([observation(env, 0) for env in range(2)], "n1.5"))
        assert "serves batches of one (serve the policy by name to serve batches)" in refused["error"]
        refused = ask("reset", {"options": {"env_ids": [0, 4]}})
        assert "options.env_ids must be a list of distinct environment indices 0 to 3; got [0, 4]" in refused["error"]
        assert ask("ping") == {"status": "ok", "message": "Server is running"}


def test_lda_bench_serve_answers_gr00t_n1_6_batches_of_8_with_one_model(checkpoint):
    """`lda-bench serve --policy lda` in its own process, as a GR00T rollout with n_envs 8 would meet it."""
    path = str(checkpoint("lda"))
    command = [sys.executable, "-m", "lda_bench.cli", "serve", "--policy", "lda", "--policy-arg", f"checkpoint={path}",
               "--port", "0", "--max-batch", "8"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                                    "OMP_NUM_THREADS": "1"})
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the server printed no ready line within 60 s"
        line = process.stdout.readline()
        assert line.startswith("serving policy 'lda' on tcp://127.0.0.1:"), line
        observations = [observation(env, 0) for env in range(9)]
        with gr00t_client(line.split(" on ")[1].strip()) as ask:
            assert ask("reset", {"options": None}) == {}
            actions = get_action(ask, observations[:8], "n1.6")
            refused = ask("get_action", {"observation": gr00t_observation(observations, "n1.6"), "options": None})
            assert ask("kill") == {"status": "ok", "message": "Server is shutting down"}
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            os.kill(process.pid, 9)
            process.wait(timeout=5)
    expected = alone(make_policy("lda", checkpoint=path), [observations[:8]])[0]
    for env in range(8):
        np.testing.assert_allclose(flat({key: value[env] for key, value in actions.items()}), expected[env],
                                   rtol=0, atol=ATOL)
    assert "a batch of 9 environments; this server takes 1 to 8 (--max-batch)" in refused["error"]
