"""Observations for policy tests, in the layout the environments produce."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from lda_bench.policy import LANGUAGE_KEY, STATE_KEYS, VIDEO_KEY
from tasks.layout import ACTION_DIMS

INSTRUCTION = "pick up the can, place it into the drawer and close the drawer"


def make_observation(seed: int = 0, size: int = 16) -> dict[str, Any]:
    """Random joint states, a black ego view and an instruction.

    The states are rounded to float32 values, which is what a GR00T server receives, so that a policy
    served over the wire sees exactly the state a local copy sees.
    """
    rng = np.random.default_rng(seed)
    obs: dict[str, Any] = {VIDEO_KEY: np.zeros((size, size, 3), dtype=np.uint8), LANGUAGE_KEY: INSTRUCTION}
    for part, key in STATE_KEYS.items():
        obs[key] = rng.uniform(-1.0, 1.0, ACTION_DIMS[part]).astype(np.float32).astype(np.float64)
    return obs


@contextmanager
def served(policy, **kwargs) -> Iterator:
    """A PolicyServer on a free loopback port, answering from a thread until the test ends (keyword arguments
    go to PolicyServer: api_token, make_instance, max_batch, ...)."""
    from lda_bench.remote import PolicyServer

    server = PolicyServer(policy, port=0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_s": 0.01}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=5)
        assert not thread.is_alive(), "the policy server did not stop"
