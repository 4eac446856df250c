"""Policies over the network, speaking the wire protocol of GR00T's policy server.

Speaking GR00T's protocol means a GR00T server can be benchmarked as it is, and a policy served by
`lda-bench serve` can be driven by GR00T's own rollout client. The protocol, as in Isaac-GR00T's
`gr00t/eval/service.py` (N1.5) and `gr00t/policy/server_client.py` (N1.6):

- ZeroMQ REQ/REP. A request is a msgpack map `{"endpoint": name, "data": ..., "api_token": ...}` (`data`
  only for endpoints that take input, `api_token` only when set). numpy arrays travel as maps
  `{"__ndarray_class__": True, "as_npy": <np.save bytes>}`. A failed request is answered
  `{"error": message}`; a wrong token gets `{"error": "Unauthorized: Invalid API token"}`.
- Endpoints: `ping`, `kill`, `get_action`, `get_modality_config`, and since N1.6 `reset`.
- Observations are batched over B environments with a time axis: video (B, T, H, W, C) uint8, state
  (B, T, D) float32, language a list of B strings (or of B one-element lists); actions come back as
  (B, K, D) per key. GR00T's simulation clients send their vector env's observation as it is, so row k
  is environment k.
- N1.5: `get_action`'s data is the observation and the reply is the action dict.
  N1.6: the data is `{"observation": obs, "options": ...}` and the reply is `[action dict, info dict]`.
  The observation is flat (`video.ego_view`, `state.left_arm`, ..., as GR00T's simulation wrapper takes
  it) or nested (`{"video": {"ego_view": ...}, "state": {...}, "language": {key: [[text], ...]}}`, as a
  bare GR00T policy takes it). Servers that wrap their policy for GR00T's simulators name actions
  `action.left_arm`; bare policies name them `left_arm`. The client here accepts both, and the server
  answers a nested observation with bare names.

`lda-bench serve` answers batches: a `BatchPolicy` (the model policies) acts for all B environments in one
call; any other policy gets one instance per environment. `reset` starts a new episode in every
environment, or with `options["env_ids"]` (an lda-bench extension) only in those. N1.6's `get_action` may
name its rows' environments the same way (`options["env_ids"]`; default 0 to B-1), so that many clients,
each with environments of its own, share one policy: requests that arrive within the server's batching
window are answered with one call of the policy (`lda-bench eval --serve` runs its workers so).
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import zmq

from lda_bench.policy import (CHUNK_KEYS, LANGUAGE_KEY, STATE_KEYS, VIDEO_KEY, BatchPolicy, InvalidChunkError, Policy,
                              make_policy, register_policy, validate_chunk)
from tasks.layout import ACTION_DIMS, ACTION_KEYS

log = logging.getLogger(__name__)

ARRAY_TAG = "__ndarray_class__"
MODALITY_CONFIG_TAG = "__ModalityConfig_class__"
UNAUTHORIZED = "Unauthorized: Invalid API token"
UNKNOWN_ENDPOINT = "Unknown endpoint"
MAX_BATCH = 64


# --- messages ---------------------------------------------------------------------------------------

def pack(message: Any) -> bytes:
    """Encode a message as GR00T's servers do: msgpack, with numpy arrays as tagged `np.save` bytes."""
    return msgpack.packb(message, default=_encode)


def unpack(payload: bytes) -> Any:
    """Decode a message; tagged arrays become numpy arrays, tagged modality configs plain dicts."""
    return msgpack.unpackb(payload, object_hook=_decode)


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, obj, allow_pickle=False)
        return {ARRAY_TAG: True, "as_npy": buffer.getvalue()}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send a {type(obj).__name__} to a policy server")


def _decode(obj: dict) -> Any:
    if ARRAY_TAG in obj:
        return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
    if MODALITY_CONFIG_TAG in obj:  # N1.5 sends its fields as a JSON string, N1.6 as a map
        fields = obj["as_json"]
        return json.loads(fields) if isinstance(fields, str) else fields
    return obj


def _batch_observation(obs: dict[str, Any]) -> dict[str, Any]:
    """One environment's observation -> GR00T's batched layout (B = T = 1).

    States go as float32 because GR00T servers in strict mode (their default) reject anything else.
    """
    batched: dict[str, Any] = {}
    for key, value in obs.items():
        if isinstance(value, str):
            batched[key] = [value]
        else:
            array = np.asarray(value)
            batched[key] = (array.astype(np.float32) if key.startswith("state.") else array)[None, None]
    return batched


class InvalidBatchError(ValueError):
    """A batched observation that is not GR1's layout, whose sizes disagree, or that is too large."""


# GR1's batched observation (B environments, T time steps): each array's number of axes and last axis.
BATCHED_LAYOUT = {VIDEO_KEY: (5, 3), **{key: (3, ACTION_DIMS[part]) for part, key in STATE_KEYS.items()}}


def _batched_shape(key: str) -> str:
    axes, last = BATCHED_LAYOUT[key]
    return "(B, T, H, W, 3) uint8" if axes == 5 else f"(B, T, {last})"


def _unbatch_observation(batched: dict[str, Any], max_batch: int) -> list[dict[str, Any]]:
    """GR00T's batched layout (flat) -> one observation per environment, at the latest time step."""
    missing = [key for key in BATCHED_LAYOUT if key not in batched]
    if missing:
        layout = ", ".join(f"{key} {_batched_shape(key)}" for key in BATCHED_LAYOUT)
        raise InvalidBatchError(f"the observation lacks {', '.join(missing)}; GR1's layout is {layout}")
    for key, (axes, last) in BATCHED_LAYOUT.items():
        value = batched[key]
        shaped = isinstance(value, np.ndarray) and value.ndim == axes and (key != VIDEO_KEY or value.dtype == np.uint8)
        if not (shaped and value.shape[1] > 0 and value.shape[-1] == last):
            got = f"shape {value.shape} {value.dtype}" if isinstance(value, np.ndarray) else f"a {type(value).__name__}"
            raise InvalidBatchError(f"{key} has {got}; expected {_batched_shape(key)}")
    sizes = {key: len(value) for key, value in batched.items()
             if isinstance(value, (list, tuple)) or isinstance(value, np.ndarray) and value.ndim > 0}
    size = sizes[VIDEO_KEY]
    others = ", ".join(f"{key} {other}" for key, other in sizes.items() if other != size)
    if others:
        raise InvalidBatchError(f"the batch sizes of the observation's keys disagree: {others} "
                                f"against {VIDEO_KEY} {size}")
    if not 1 <= size <= max_batch:
        raise InvalidBatchError(f"a batch of {size} environments; this server takes 1 to {max_batch} (--max-batch)")
    observations: list[dict[str, Any]] = [{} for _ in range(size)]
    for key, value in batched.items():
        for row, obs in enumerate(observations):
            if key not in sizes:  # not batched: the same for every environment
                obs[key] = value
            elif key in BATCHED_LAYOUT:
                obs[key] = value[row, -1].astype(np.float64) if key.startswith("state.") else value[row, -1]
            else:  # language: B strings, or B lists of strings over time (N1.6's [[text], ...])
                item = value[row]
                obs[key] = item[-1] if isinstance(item, (list, tuple, np.ndarray)) else item
    return observations


def _flat_observation(observation: dict[str, Any]) -> dict[str, Any]:
    """N1.6's nested layout (`{"video": {"ego_view": ...}, "state": {...}, "language": {...}}`) -> the flat one."""
    flat = {f"{modality}.{key}": value for modality in ("video", "state")
            for key, value in (observation.get(modality) or {}).items()}
    language = observation.get("language") or {}
    if len(language) > 1:
        raise InvalidBatchError(f"the observation has language keys {sorted(language)}; GR1's tasks have one")
    flat.update({LANGUAGE_KEY: value for value in language.values()})
    return flat


def _gr1_modality_config() -> dict[str, Any]:
    """GR1's observation and action keys in GR00T's `ModalityConfig` form.

    A local policy has no fixed horizon (its chunk length is whatever `get_action` returns), so every
    modality lists only the current step.
    """

    def config(keys: list[str]) -> dict[str, Any]:
        return {MODALITY_CONFIG_TAG: True, "as_json": {"delta_indices": [0], "modality_keys": keys}}

    return {"video": config([VIDEO_KEY.removeprefix("video.")]), "state": config(list(ACTION_KEYS)),
            "action": config(list(ACTION_KEYS)), "language": config([LANGUAGE_KEY])}


# --- server -----------------------------------------------------------------------------------------

@dataclass
class _Request:
    """A request as received: the routing frames its reply goes back with, and the decoded message (or, for
    one that cannot be answered, the error reply it gets)."""

    envelope: list[bytes]
    message: Any = None
    refusal: dict | None = None

    @property
    def endpoint(self) -> str | None:
        return None if self.refusal else self.message.get("endpoint", "get_action")  # GR00T's default endpoint


@dataclass
class _Asked:
    """A `get_action` request read: its environments' observations and ids, and the form to answer it in."""

    request: _Request
    observations: list[dict[str, Any]]
    env_ids: list[int]
    n16_layout: bool
    nested: bool


class PolicyServer:
    """Serves a local policy over GR00T's protocol to batches of up to `max_batch` environments.

    A `BatchPolicy` answers a whole batch in one call. Any other policy acts for environment 0; the others
    get instances of their own from `make_instance` (without it, only batches of one are served), each reset
    with its environment. Requests from many clients are gathered: those waiting, and those that arrive
    within `batch_window_s` of the first, until they ask for `max_batch` environments; their environments
    (distinct `options.env_ids`) are answered in one call. `port=0` binds a free port; the bound one is in
    `.port`. It answers both N1.5 and N1.6 request layouts in kind, so either generation of GR00T client can
    drive it.
    """

    def __init__(self, policy: Policy, host: str = "127.0.0.1", port: int = 5555, api_token: str | None = None,
                 make_instance: Callable[[], Policy] | None = None, max_batch: int = MAX_BATCH,
                 batch_window_s: float = 0.0):
        if max_batch < 1 or batch_window_s < 0:
            raise ValueError(f"need max_batch >= 1 and batch_window_s >= 0; got {max_batch}, {batch_window_s}")
        self.policy, self.make_instance, self.max_batch = policy, make_instance, max_batch
        self.batch_window_s = batch_window_s
        self._rows: dict[int, Policy] = {0: policy}  # a policy that acts for one environment: each one's instance
        self._episode = ("", "")  # (task, instruction) of the last reset of all: where a new row's instance starts
        self.api_token = api_token
        self._context = zmq.Context()
        # ROUTER, not REP: it holds many clients' requests at once, so that they can be answered as one batch.
        # GR00T's clients (REQ sockets) cannot tell the difference.
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        try:
            self._socket.bind(f"tcp://{host}:{port or '*'}")
        except zmq.ZMQError as exc:
            self.close()
            raise OSError(f"policy server cannot listen on {host}:{port}: {exc}") from exc
        self.address = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.port = int(self.address.rsplit(":", 1)[1])
        self._running = False
        self._endpoints = {"ping": self._ping, "kill": self._kill, "reset": self._reset,
                           "get_modality_config": self._modality_config}

    def serve_forever(self, poll_s: float = 0.1) -> None:
        """Answer requests until a `kill` request or `stop()`; then close the socket."""
        self._running = True
        try:
            while self._running:
                if self._socket.poll(int(poll_s * 1000), zmq.POLLIN):
                    self._answer(self._gather())
        finally:
            self.close()

    def stop(self) -> None:
        """Make `serve_forever` return within one poll interval (safe from another thread)."""
        self._running = False

    def close(self) -> None:
        self._socket.close()
        if not self._context.closed:
            self._context.term()

    def _gather(self) -> list[_Request]:
        """The requests waiting now, and those that come within the batching window after the first, until
        they ask actions for `max_batch` environments."""
        requests = [self._receive()]
        deadline = time.monotonic() + self.batch_window_s
        while sum(_rows_asked(request) for request in requests) < self.max_batch:
            wait_ms = max(0, math.ceil(1000 * (deadline - time.monotonic())))
            if not self._socket.poll(wait_ms, zmq.POLLIN):
                break
            requests.append(self._receive())
        return requests

    def _receive(self) -> _Request:
        *envelope, payload = self._socket.recv_multipart()
        request = _Request(envelope)
        try:
            request.message = unpack(payload)
        except Exception as exc:  # noqa: BLE001 - whatever the bytes were, the client gets an answer
            request.refusal = {"error": f"undecodable request ({type(exc).__name__}: {exc})"}
            return request
        if not isinstance(request.message, dict):
            request.refusal = {"error": f"a request is a map with an 'endpoint'; got {type(request.message).__name__}"}
        elif self.api_token is not None and not hmac.compare_digest(
                str(request.message.get("api_token", "")).encode(), self.api_token.encode()):
            request.refusal = {"error": UNAUTHORIZED}
        elif request.endpoint not in self._endpoints and request.endpoint != "get_action":
            request.refusal = {"error": f"{UNKNOWN_ENDPOINT}: {request.endpoint}"}
        return request

    def _answer(self, requests: list[_Request]) -> None:
        """Answer the requests in the order they came; consecutive `get_action`s whose environments differ
        are acted on together. A client gets an answer whatever fails, so failures become error replies."""
        batch: list[_Asked] = []
        for request in requests:
            if request.endpoint != "get_action":
                self._act_on(batch)
                batch = []
                self._reply(request, request.refusal or self._call(request.endpoint, self._endpoints[request.endpoint],
                                                                   request.message.get("data") or {}))
                continue
            try:
                asked = self._read_get_action(request.message.get("data") or {}, request)
            except Exception as exc:  # noqa: BLE001 - a bad request is refused by name, the others are answered
                self._reply(request, _error_reply("get_action", exc))
                continue
            taken = {env_id for other in batch for env_id in other.env_ids}
            if taken & set(asked.env_ids) or len(taken) + len(asked.env_ids) > self.max_batch:
                self._act_on(batch)
                batch = []
            batch.append(asked)
        self._act_on(batch)

    def _act_on(self, batch: list[_Asked]) -> None:
        """Act for every environment of the batch's requests in one call; answer each request its rows."""
        if not batch:
            return
        observations = [obs for asked in batch for obs in asked.observations]
        env_ids = [env_id for asked in batch for env_id in asked.env_ids]
        try:
            chunks = [validate_chunk(chunk) for chunk in self._act(observations, env_ids)]
        except Exception as exc:  # noqa: BLE001 - every request of the batch learns why
            for asked in batch:
                self._reply(asked.request, _error_reply("get_action", exc))
            return
        start = 0
        for asked in batch:
            rows = chunks[start:start + len(asked.env_ids)]
            start += len(rows)
            self._reply(asked.request, self._call("get_action", lambda: _action_reply(rows, asked)))

    def _reply(self, request: _Request, reply: Any) -> None:
        self._socket.send_multipart([*request.envelope, pack(reply)])

    def _call(self, endpoint: str, handler: Callable, *args: Any) -> Any:
        try:
            return handler(*args)
        except Exception as exc:  # noqa: BLE001 - reported to the client, logged here
            return _error_reply(endpoint, exc)

    def _ping(self, data: dict) -> dict:
        return {"status": "ok", "message": "Server is running"}

    def _kill(self, data: dict) -> dict:
        # GR00T replies None here; a map is kinder to its N1.5 client, which looks for "error" in the reply.
        self._running = False
        return {"status": "ok", "message": "Server is shutting down"}

    def _reset(self, data: dict) -> dict:
        """A new episode in every environment, or in those of `options["env_ids"]`."""
        options = data.get("options") or {}
        task, instruction = str(options.get("task", "")), str(options.get("instruction", ""))
        env_ids = options.get("env_ids")
        batch_policy = isinstance(self.policy, BatchPolicy)
        if env_ids is None:
            self._episode = (task, instruction)
            for policy in [self.policy] if batch_policy else self._rows.values():
                policy.reset(task, instruction)
        elif batch_policy:
            self.policy.reset(task, instruction, env_ids=self._env_ids(env_ids))
        else:
            for env_id in self._env_ids(env_ids):
                self._row(env_id).reset(task, instruction)
        return {}

    def _read_get_action(self, data: dict, request: _Request) -> _Asked:
        n16_layout = "observation" in data
        observation = data["observation"] if n16_layout else data
        nested = isinstance(observation.get("video"), dict)
        observations = _unbatch_observation(_flat_observation(observation) if nested else observation, self.max_batch)
        env_ids = ((data.get("options") or {}).get("env_ids") if n16_layout else None)
        if env_ids is None:
            env_ids = list(range(len(observations)))
        elif len(self._env_ids(env_ids)) != len(observations):
            raise InvalidBatchError(f"options.env_ids names {len(env_ids)} environment(s) for a batch of "
                                    f"{len(observations)}")
        return _Asked(request, observations, env_ids, n16_layout, nested)

    def _env_ids(self, env_ids: Any) -> list[int]:
        """`options.env_ids`, checked: distinct environment indices below `max_batch`."""
        if not (isinstance(env_ids, list) and all(isinstance(k, int) and 0 <= k < self.max_batch for k in env_ids)
                and len(set(env_ids)) == len(env_ids)):
            raise InvalidBatchError(f"options.env_ids must be a list of distinct environment indices 0 to "
                                    f"{self.max_batch - 1}; got {env_ids!r}")
        return env_ids

    def _act(self, observations: list[dict[str, Any]], env_ids: list[int]) -> list[dict[str, np.ndarray]]:
        """Environment `env_ids[i]`'s observation -> its chunk: in one call of a batch policy, or by its instance."""
        if isinstance(self.policy, BatchPolicy):
            return self.policy.get_action_batch(observations, env_ids)
        rows = [self._row(env_id) for env_id in env_ids]  # all of them before any acts
        return [row.get_action(obs) for row, obs in zip(rows, observations)]

    def _row(self, env_id: int) -> Policy:
        """The instance acting for environment `env_id`, of a policy that acts for one environment."""
        if env_id not in self._rows:
            if self.make_instance is None:
                raise InvalidBatchError("this server holds one instance of a policy that acts for one environment: "
                                        "it serves batches of one (serve the policy by name to serve batches)")
            instance = self.make_instance()
            instance.reset(*self._episode)
            self._rows[env_id] = instance
        return self._rows[env_id]

    def _modality_config(self, data: dict) -> dict:
        return _gr1_modality_config()


def _rows_asked(request: _Request) -> int:
    """How many environments a request asks actions for (0 for other endpoints; 1 for an unreadable batch)."""
    if request.endpoint != "get_action":
        return 0
    data = request.message.get("data")
    observation = data.get("observation", data) if isinstance(data, dict) else None
    if not isinstance(observation, dict):
        return 1
    nested = observation.get("video")
    video = nested.get("ego_view") if isinstance(nested, dict) else observation.get(VIDEO_KEY)
    return len(video) if isinstance(video, np.ndarray) and video.ndim > 0 else 1


def _action_reply(chunks: list[dict[str, np.ndarray]], asked: _Asked) -> Any:
    """A request's chunks as GR00T's (B, K, D) arrays, named and wrapped in the form it was asked in."""
    lengths = {len(chunk[CHUNK_KEYS[ACTION_KEYS[0]]]) for chunk in chunks}
    if len(lengths) > 1:
        raise InvalidChunkError(f"the environments' chunks have different lengths {sorted(lengths)}: "
                                "they cannot travel as one (B, K, D) array")
    action = {key.removeprefix("action.") if asked.nested else key:  # a bare policy's names for a nested request
              np.stack([chunk[key] for chunk in chunks]).astype(np.float32) for key in chunks[0]}
    return [action, {}] if asked.n16_layout else action


def _error_reply(endpoint: str, exc: Exception) -> dict:
    log.error("policy server: %s failed", endpoint, exc_info=exc)
    return {"error": f"{type(exc).__name__}: {exc}"}


def policy_server(policy_name: str, policy_kwargs: dict[str, Any], host: str = "127.0.0.1", port: int = 5555,
                  api_token: str | None = None, max_batch: int = MAX_BATCH, batch_window_s: float = 0.0) -> PolicyServer:
    """A server of a registered policy: a policy that acts for one environment gets an instance per environment."""
    make_instance = lambda: make_policy(policy_name, **policy_kwargs)  # noqa: E731
    return PolicyServer(make_instance(), host, port, api_token, make_instance=make_instance, max_batch=max_batch,
                        batch_window_s=batch_window_s)


def serve(policy_name: str, policy_kwargs: dict[str, Any], host: str = "127.0.0.1", port: int = 5555,
          api_token: str | None = None, max_batch: int = MAX_BATCH, batch_window_s: float = 0.0) -> None:
    """Build a registered policy and serve it until a client sends `kill` (or Ctrl-C).

    Prints one line with the bound address when ready (with `port=0`, the port chosen).
    """
    server = policy_server(policy_name, policy_kwargs, host, port, api_token, max_batch, batch_window_s)
    print(f"serving policy {policy_name!r} on {server.address}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


# --- client -----------------------------------------------------------------------------------------

class RemotePolicyError(RuntimeError):
    """A call to a policy server failed: error reply, refused token, malformed reply."""


class RemoteTimeoutError(RemotePolicyError, TimeoutError):
    """A policy server did not answer in time, on every attempt."""


@register_policy("remote", "a policy behind a GR00T-protocol ZeroMQ server (lda-bench serve, GR00T's server)")
class RemotePolicy:
    """Client of a GR00T-protocol policy server; one instance per environment.

    `env_id` is the environment this client acts for on a server that serves many (`lda-bench serve`'s
    `options.env_ids`, see the module docstring): its resets and actions are that environment's, so that
    clients with distinct ids share one served model. Without it, the server's environment 0 acts, and a
    reset starts a new episode in every environment. Every request waits at most `timeout_s` for its reply and is sent up to `retries` more times after a
    time-out, so a call gives up after (retries + 1) * timeout_s. A retried `get_action` may reach a server
    that did receive the first one: with a stateful policy that skips one chunk.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 5555, timeout_s: float = 30.0,
                 api_token: str | None = None, retries: int = 2, env_id: int | None = None):
        if timeout_s <= 0 or retries < 0 or (env_id is not None and env_id < 0):
            raise ValueError(f"need timeout_s > 0, retries >= 0 and env_id >= 0; got {timeout_s}, {retries}, {env_id}")
        self.address = f"tcp://{host}:{port}"
        self.timeout_s, self.api_token, self.retries = timeout_s, api_token, retries
        self._env_ids = None if env_id is None else [env_id]
        self._context = zmq.Context()
        self._socket = self._connect()
        self._server_has_reset: bool | None = None

    def reset(self, task: str, instruction: str) -> None:
        """Forward the reset to servers that have a `reset` endpoint (GR00T N1.6, lda-bench).

        GR00T N1.5 servers have none and answer "Unknown endpoint: reset"; their policies keep no state
        between episodes, so the reset is simply skipped. The answer also tells which `get_action` request
        layout the server expects (N1.5 or N1.6, see the module docstring).
        """
        options = {"task": task, "instruction": instruction}
        try:
            self.call("reset", {"options": options if self._env_ids is None else {**options, "env_ids": self._env_ids}})
            self._server_has_reset = True
        except RemotePolicyError as exc:
            if UNKNOWN_ENDPOINT not in str(exc):
                raise
            self._server_has_reset = False

    def get_action(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        if self._server_has_reset is None:
            raise RuntimeError("call reset(task, instruction) before get_action: it tells which request "
                               "layout the server speaks")
        observation = _batch_observation(obs)
        options = None if self._env_ids is None else {"env_ids": self._env_ids}
        data = {"observation": observation, "options": options} if self._server_has_reset else observation
        return self._chunk_from_reply(self.call("get_action", data))

    def ping(self) -> bool:
        """Whether the server answers; an error reply (such as a refused token) still raises."""
        try:
            self.call("ping")
        except RemoteTimeoutError:
            return False
        return True

    def get_modality_config(self) -> dict[str, Any]:
        return self.call("get_modality_config")

    def kill(self) -> None:
        """Ask the server to shut down."""
        self.call("kill")

    def close(self) -> None:
        self._socket.close()
        if not self._context.closed:
            self._context.term()

    def __enter__(self) -> RemotePolicy:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def call(self, endpoint: str, data: Any = None) -> Any:
        """One request and its reply; raises RemotePolicyError for an error reply or a malformed one."""
        request: dict[str, Any] = {"endpoint": endpoint}
        if data is not None:
            request["data"] = data
        if self.api_token is not None:
            request["api_token"] = self.api_token
        payload = pack(request)
        for _ in range(self.retries + 1):
            try:
                self._socket.send(payload)
                if self._socket.poll(int(self.timeout_s * 1000), zmq.POLLIN):
                    return self._parse(endpoint, self._socket.recv())
            except zmq.Again:
                pass
            # A REQ socket whose reply never came cannot send again: start over with a fresh one.
            self._socket.close()
            self._socket = self._connect()
        raise RemoteTimeoutError(f"no reply from {self.address} to {endpoint!r} within {self.timeout_s:g} s "
                                 f"({self.retries + 1} attempt(s)): is the server running at that address?")

    def _connect(self) -> zmq.Socket:
        socket = self._context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDTIMEO, int(self.timeout_s * 1000))
        socket.connect(self.address)
        return socket

    def _parse(self, endpoint: str, payload: bytes) -> Any:
        try:
            reply = unpack(payload)
        except Exception as exc:  # noqa: BLE001 - msgpack raises several types for bad input
            raise RemotePolicyError(f"malformed reply from {self.address} to {endpoint!r}: not a GR00T-protocol "
                                    f"message ({type(exc).__name__}: {exc}); is that port a policy server?") from exc
        if isinstance(reply, dict) and "error" in reply:
            error = str(reply["error"])
            if error.startswith("Unauthorized"):
                sent = "no token was sent" if self.api_token is None else "the token sent does not match"
                raise RemotePolicyError(f"{self.address} refused the API token ({sent}): "
                                        "pass the server's token as api_token")
            raise RemotePolicyError(f"{self.address} failed on {endpoint!r}: {error}")
        return reply

    def _chunk_from_reply(self, reply: Any) -> dict[str, np.ndarray]:
        """The action chunk in a get_action reply, whichever GR00T generation and key naming sent it."""
        actions = reply[0] if isinstance(reply, list) and len(reply) == 2 else reply
        if not isinstance(actions, dict):
            raise RemotePolicyError(f"malformed get_action reply from {self.address}: expected a map of actions, "
                                    f"got {type(actions).__name__}")
        chunk = {}
        for part in ACTION_KEYS:
            key = CHUNK_KEYS[part]
            value = actions.get(key, actions.get(part))
            if not isinstance(value, np.ndarray):
                raise RemotePolicyError(f"get_action reply from {self.address} has no array for {key} "
                                        f"(nor {part}); its keys: {sorted(actions)}")
            if value.ndim != 3 or value.shape[0] != 1:
                raise RemotePolicyError(f"get_action reply from {self.address}: {key} has shape {value.shape}, "
                                        f"expected (1, K, {ACTION_DIMS[part]})")
            chunk[key] = value[0]
        try:
            return validate_chunk(chunk)
        except InvalidChunkError as exc:
            raise RemotePolicyError(f"get_action reply from {self.address} is not a GR1 action chunk: {exc}") from exc
