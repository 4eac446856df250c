"""Evaluation with one shared policy: the server gathers many clients' requests into one call, and an
evaluation whose workers share one served model records what per-worker copies record."""

from __future__ import annotations

import threading
import time

import av
import numpy as np
import pytest

from lda_bench.evaluate import Serving, evaluate
from lda_bench.policy import CHUNK_KEYS, STATE_KEYS
from lda_bench.records import RecordStore
from lda_bench.remote import PolicyServer, RemotePolicy
from policy_helpers import make_observation
from tasks.layout import ACTION_KEYS

TASK = "PnP Can To Drawer Close"


class RecordingBatchPolicy:
    """A batch policy that holds each environment's joints, adding its environment id to the waist, and
    records the environments of every call."""

    def __init__(self):
        self.calls: list[list[int]] = []
        self.resets: list[list[int] | None] = []

    def reset(self, task, instruction, env_ids=None):
        self.resets.append(env_ids)

    def get_action(self, obs):
        return self.get_action_batch([obs], [0])[0]

    def get_action_batch(self, observations, env_ids):
        self.calls.append(list(env_ids))
        return [{CHUNK_KEYS[part]: obs[STATE_KEYS[part]][None] + (env_id if part == "waist" else 0.0)
                 for part in ACTION_KEYS} for obs, env_id in zip(observations, env_ids)]


def served_thread(server: PolicyServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_s": 0.01}, daemon=True)
    thread.start()
    return thread


def ask_together(clients: list[RemotePolicy], observations: list[dict]) -> list[dict]:
    """Every client's get_action at once, from a thread each; their answers in client order."""
    answers: list = [None] * len(clients)

    def ask(k: int) -> None:
        answers[k] = clients[k].get_action(observations[k])

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    return answers


def test_clients_with_their_own_environments_are_answered_in_one_call_once_all_have_asked():
    policy = RecordingBatchPolicy()
    server = PolicyServer(policy, port=0, max_batch=3, batch_window_s=10.0)
    thread = served_thread(server)
    clients = [RemotePolicy(port=server.port, timeout_s=20, retries=0, env_id=k) for k in range(3)]
    try:
        for client in clients:
            client.reset(TASK, "go")
        assert policy.resets == [[0], [1], [2]]  # each client resets its own environment only
        observations = [make_observation(seed=k) for k in range(3)]
        start = time.monotonic()
        answers = ask_together(clients, observations)
        elapsed = time.monotonic() - start
    finally:
        for client in clients:
            client.close()
        server.stop()
        thread.join(timeout=5)
    assert elapsed < 5, "the server waited out its window although every environment had asked"
    assert len(policy.calls) == 1 and sorted(policy.calls[0]) == [0, 1, 2]
    for k, (obs, answer) in enumerate(zip(observations, answers)):
        np.testing.assert_allclose(answer["action.waist"], obs["state.waist"][None] + k, atol=1e-6)
        np.testing.assert_allclose(answer["action.left_arm"], obs["state.left_arm"][None], atol=1e-6)


def test_requests_for_the_same_environment_are_answered_one_after_the_other():
    policy = RecordingBatchPolicy()
    server = PolicyServer(policy, port=0, max_batch=2, batch_window_s=0.2)
    thread = served_thread(server)
    clients = [RemotePolicy(port=server.port, timeout_s=20, retries=0) for _ in range(2)]  # both environment 0
    try:
        for client in clients:
            client.reset(TASK, "go")
        observations = [make_observation(seed=k) for k in range(2)]
        answers = ask_together(clients, observations)
    finally:
        for client in clients:
            client.close()
        server.stop()
        thread.join(timeout=5)
    assert policy.calls == [[0], [0]]
    for obs, answer in zip(observations, answers):
        np.testing.assert_allclose(answer["action.waist"], obs["state.waist"][None], atol=1e-6)


# --- evaluations -------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def lda_checkpoint(tmp_path_factory):
    import policies.lda  # noqa: F401  (registers the model policies before the installed entry points know them)
    from model.config import build_model
    from model_helpers import moved, saved_checkpoint, small_config

    torch.manual_seed(0)
    config = small_config()
    return saved_checkpoint(tmp_path_factory.mktemp("lda") / "model.pt", config, moved(build_model(config)))


def outcomes(run_dir) -> dict:
    return {r.key: (r.seed, r.instruction, r.object, r.success, r.steps, r.first_success_step, r.error)
            for r in RecordStore(run_dir).read()}


def frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]).astype(np.int16)


def test_workers_sharing_one_served_model_record_what_copies_of_it_record(tmp_path, lda_checkpoint):
    """2 tasks x 2 trials with a tiny LDA: each worker with a copy, then 2 workers sharing one served copy. The
    episodes, and the robot's motion in their videos, are the same: each trial's actions do not depend on
    which other trial shares its batch."""
    tasks = [TASK, "PnP Novel From Plate To Bowl"]
    settings = dict(tasks=tasks, trials=2, workers=2, max_steps=24, action_steps=8, image_size=64, video=True,
                    progress=False)
    args = {"checkpoint": str(lda_checkpoint)}
    evaluate("lda", args, out=tmp_path / "copies", **settings)
    summary = evaluate("lda", args, out=tmp_path / "served", serving=Serving(batch_window_ms=50), **settings)
    copies, served = outcomes(tmp_path / "copies"), outcomes(tmp_path / "served")
    assert len(copies) == 4 and copies == served
    assert summary.total.errors == 0
    protocols = {r.key: r.protocol for r in RecordStore(tmp_path / "served").read()}
    assert all(p["serving"] == {"batch_window_ms": 50, "device": None} for p in protocols.values())
    assert all(r.protocol["serving"] is None for r in RecordStore(tmp_path / "copies").read())
    videos = sorted(path.name for path in (tmp_path / "copies" / "videos").glob("*.mp4"))
    assert len(videos) == 4
    for name in videos:
        alone, shared = frames(tmp_path / "copies" / "videos" / name), frames(tmp_path / "served" / "videos" / name)
        assert alone.shape == shared.shape
        # The robot moves (pictures 10 to 20 levels off the first on average), and the same way: one forward for
        # two environments rounds a little differently from two forwards of one, and mp4 encodes nearly equal
        # pictures a little differently (measured: up to 1 level; another trial's scene: 7 levels).
        assert np.abs(alone - alone[0]).mean() > 8, f"{name}: the robot did not move; nothing is compared"
        assert np.abs(alone - shared).mean() < 2, f"{name}: the served episode moved otherwise"


def test_a_served_policy_that_cannot_be_built_fails_the_evaluation_before_it_starts(tmp_path):
    with pytest.raises(FileNotFoundError):
        evaluate("lda", {"checkpoint": str(tmp_path / "missing.pt")}, tasks=[TASK], trials=2, workers=2,
                 out=tmp_path / "run", progress=False, serving=Serving())
    assert not (tmp_path / "run" / "protocol.json").exists()
    with pytest.raises(ValueError, match="policy 'hold' takes no device argument"):
        evaluate("hold", tasks=[TASK], out=tmp_path / "run", serving=Serving(device="cuda:0"))
