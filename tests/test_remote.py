"""Policies over ZeroMQ in GR00T's wire protocol: real sockets on 127.0.0.1, every wait bounded."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from lda_bench.policy import CHUNK_KEYS, STATE_KEYS, make_policy
from lda_bench.remote import (PolicyServer, RemotePolicy, RemotePolicyError, RemoteTimeoutError, pack,
                              unpack)
from policy_helpers import INSTRUCTION, make_observation, served
from tasks.layout import ACTION_DIMS, ACTION_KEYS

REPO = Path(__file__).parents[1]
TASK = "PnP Can To Drawer Close"


@contextmanager
def scripted_server(replies: list[object]) -> Iterator[tuple[int, list]]:
    """A ROUTER socket that answers the n-th request with replies[n]: raw bytes as they are, None never,
    anything else packed. Requests past the end of the script are never answered either.
    Yields the port and the decoded requests."""
    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    requests: list = []
    stop = threading.Event()

    def answer():
        while not stop.is_set():
            if socket.poll(20, zmq.POLLIN):
                identity, empty, payload = socket.recv_multipart()
                requests.append(unpack(payload))
                reply = replies[len(requests) - 1] if len(requests) <= len(replies) else None
                if reply is not None:
                    socket.send_multipart([identity, empty, reply if isinstance(reply, bytes) else pack(reply)])
        socket.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield port, requests
    finally:
        stop.set()
        thread.join(timeout=5)
        context.term()


def client(port: int, **kwargs) -> RemotePolicy:
    return RemotePolicy(port=port, **{"timeout_s": 5.0, "retries": 0, **kwargs})


class FailingPolicy:
    def reset(self, task, instruction):
        pass

    def get_action(self, obs):
        raise ValueError("boom: the model ran out of memory")


@pytest.mark.parametrize("array", [
    np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    np.linspace(-1, 1, 7, dtype=np.float32),
    np.random.default_rng(0).normal(size=(3, 5)),
    np.array([[-(2**40), 2**40]], dtype=np.int64),
    np.array([True, False, True]),
    np.array(3.5),
    np.zeros((0, 7)),
], ids=["uint8", "float32", "float64", "int64", "bool", "0d", "empty"])
def test_arrays_round_trip_in_gr00t_encoding(array):
    message = {"endpoint": "get_action", "data": {"x": array, "text": ["hi"], "n": np.int64(3)}}
    decoded = unpack(pack(message))
    assert decoded["data"]["x"].dtype == array.dtype and np.array_equal(decoded["data"]["x"], array)
    assert decoded["data"]["text"] == ["hi"] and decoded["data"]["n"] == 3
    # On the wire: GR00T's tagged map, np.save bytes inside, readable without this module's decoder.
    raw = msgpack.unpackb(pack({"x": array}))["x"]
    assert set(raw) == {"__ndarray_class__", "as_npy"} and raw["__ndarray_class__"] is True
    assert np.array_equal(np.load(io.BytesIO(raw["as_npy"])), array)


@pytest.mark.parametrize("name, kwargs", [("random", {"seed": 4, "chunk": 5}), ("hold", {})])
def test_get_action_over_the_wire_equals_the_local_policy(name, kwargs):
    local = make_policy(name, **kwargs)
    with served(make_policy(name, **kwargs)) as server, client(server.port) as remote:
        for policy in (local, remote):
            policy.reset(TASK, INSTRUCTION)
        for step in range(3):
            obs = make_observation(seed=step)
            expected, got = local.get_action(obs), remote.get_action(obs)
            assert list(got) == [CHUNK_KEYS[part] for part in ACTION_KEYS]
            for key in expected:
                assert got[key].shape == expected[key].shape
                np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-6)  # float32 on the wire


def test_ping_and_modality_config_through_the_registry():
    with served(make_policy("hold")) as server:
        remote = make_policy("remote", port=str(server.port), timeout_s="5")
        try:
            assert remote.ping()
            config = remote.get_modality_config()
        finally:
            remote.close()
    assert config["action"]["modality_keys"] == list(ACTION_KEYS)
    assert config["state"]["modality_keys"] == list(ACTION_KEYS)
    assert config["video"]["modality_keys"] == ["ego_view"]
    assert config["language"]["modality_keys"] == ["annotation.human.coarse_action"]


def test_a_wrong_api_token_is_refused_clearly():
    with served(make_policy("hold"), api_token="s3cret") as server:
        for token, why in [(None, "no token was sent"), ("guess", "the token sent does not match")]:
            with client(server.port, api_token=token) as remote:
                with pytest.raises(RemotePolicyError, match=f"refused the API token \\({why}\\)"):
                    remote.reset(TASK, INSTRUCTION)
        with client(server.port, api_token="s3cret") as remote:
            assert remote.ping()


def test_an_error_on_the_server_reaches_the_client_and_the_server_lives_on():
    with served(FailingPolicy()) as server, client(server.port) as remote:
        remote.reset(TASK, INSTRUCTION)
        with pytest.raises(RemotePolicyError, match="failed on 'get_action': ValueError: boom"):
            remote.get_action(make_observation())
        with pytest.raises(RemotePolicyError, match="Unknown endpoint: teleport"):
            remote.call("teleport")
        assert remote.ping()


def test_get_action_before_reset_is_refused():
    with served(make_policy("hold")) as server, client(server.port) as remote:
        with pytest.raises(RuntimeError, match="call reset"):
            remote.get_action(make_observation())


def test_a_silent_server_times_out_within_the_bound():
    with scripted_server([]) as (port, requests), client(port, timeout_s=0.2, retries=1) as remote:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no reply from tcp://127.0.0.1:\d+ to 'ping' within 0.2 s "
                                               r"\(2 attempt\(s\)\)") as raised:
            remote.call("ping")
        elapsed = time.monotonic() - start
        assert isinstance(raised.value, RemoteTimeoutError)
        assert 0.35 < elapsed < 1.5
        assert not remote.ping()


def test_a_lost_reply_is_retried_on_a_fresh_socket():
    ok = {"status": "ok", "message": "Server is running"}
    with scripted_server([None, ok]) as (port, requests), client(port, timeout_s=0.3, retries=1) as remote:
        assert remote.call("ping") == ok
    assert [request["endpoint"] for request in requests] == ["ping", "ping"]


def test_a_malformed_reply_is_reported_as_such():
    with scripted_server([b"\xc1 not msgpack"]) as (port, _), client(port) as remote:
        with pytest.raises(RemotePolicyError, match="malformed reply .* to 'ping': not a GR00T-protocol message"):
            remote.call("ping")
    no_waist = {CHUNK_KEYS[part]: np.zeros((1, 2, ACTION_DIMS[part]), np.float32) for part in ACTION_KEYS[:-1]}
    with scripted_server([{}, [no_waist, {}]]) as (port, _), client(port) as remote:
        remote.reset(TASK, INSTRUCTION)
        with pytest.raises(RemotePolicyError, match=r"has no array for action.waist \(nor waist\); its keys: "):
            remote.get_action(make_observation())
    nan_chunk = {**no_waist, "action.waist": np.full((1, 2, 3), np.nan, np.float32)}
    with scripted_server([{}, [nan_chunk, {}]]) as (port, _), client(port) as remote:
        remote.reset(TASK, INSTRUCTION)
        with pytest.raises(RemotePolicyError, match="not a GR1 action chunk: action.waist has non-finite"):
            remote.get_action(make_observation())


def test_a_gr00t_n15_server_without_reset_is_spoken_to_in_its_layout():
    bare = {part: np.full((1, 4, ACTION_DIMS[part]), 0.5, np.float32) for part in ACTION_KEYS}
    script = [{"error": "Unknown endpoint: reset"}, bare]
    with scripted_server(script) as (port, requests), client(port) as remote:
        remote.reset(TASK, INSTRUCTION)
        chunk = remote.get_action(make_observation())
    assert all(value.shape == (4, ACTION_DIMS[part]) and np.all(value == 0.5)
               for part, value in zip(ACTION_KEYS, chunk.values()))
    data = requests[1]["data"]  # N1.5: the batched observation itself, with a time axis
    assert data["video.ego_view"].shape == (1, 1, 16, 16, 3) and data["video.ego_view"].dtype == np.uint8
    assert data["state.left_arm"].shape == (1, 1, 7) and data["state.left_arm"].dtype == np.float32
    assert data["annotation.human.coarse_action"] == [INSTRUCTION]


def test_the_server_answers_n15_requests_in_kind_and_one_instance_serves_batches_of_one():
    obs = make_observation()
    batched = {key: [value] if isinstance(value, str) else np.asarray(value)[None, None] for key, value in obs.items()}
    context = zmq.Context()
    with served(make_policy("hold")) as server:
        socket = context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVTIMEO, 5000)
        socket.connect(server.address)
        socket.send(pack({"endpoint": "get_action", "data": batched}))
        reply = unpack(socket.recv())
        two = {key: value * 2 if isinstance(value, list) else np.concatenate([value, value])
               for key, value in batched.items()}
        socket.send(pack({"endpoint": "get_action", "data": {"observation": two, "options": None}}))
        refused = unpack(socket.recv())
        socket.close()
    context.term()
    assert set(reply) == set(CHUNK_KEYS.values())
    np.testing.assert_array_equal(reply["action.left_arm"], obs[STATE_KEYS["left_arm"]][None, None])
    assert "serves batches of one" in refused["error"]  # batches: tests/test_batched_serving.py


def test_kill_stops_a_server_thread():
    server = PolicyServer(make_policy("hold"), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with client(server.port) as remote:
        remote.kill()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_serve_in_a_subprocess_then_kill_it():
    command = [sys.executable, "-c", "from lda_bench.remote import serve; serve('hold', {}, '127.0.0.1', 0, 'tok')"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "the server printed no ready line within 30 s"
        line = process.stdout.readline()
        assert line.startswith("serving policy 'hold' on tcp://127.0.0.1:"), line
        with client(int(line.rsplit(":", 1)[1]), api_token="tok") as remote:
            remote.reset(TASK, INSTRUCTION)
            obs = make_observation()
            np.testing.assert_array_equal(remote.get_action(obs)["action.waist"], obs["state.waist"][None])
            remote.kill()
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            os.kill(process.pid, 9)
            process.wait(timeout=5)
