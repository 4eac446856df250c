"""The policy registry: names, arguments, plugins, and the action-chunk contract."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lda_bench.policy as policy_module
from lda_bench.policy import (CHUNK_KEYS, InvalidChunkError, PolicyArgumentError, UnknownPolicyError,
                              available_policies, make_policy, policy_arguments, register_policy,
                              validate_chunk)
from policy_helpers import INSTRUCTION, make_observation
from tasks.layout import ACTION_DIMS, ACTION_KEYS

REPO = Path(__file__).parents[1]


@pytest.fixture
def registry(monkeypatch):
    """A copy of the loaded registry that the test may change; the real one comes back afterwards."""
    available_policies()
    monkeypatch.setattr(policy_module, "_registry", dict(policy_module._registry))
    return policy_module


def test_builtin_policies_are_listed_with_descriptions():
    policies = available_policies()
    assert {"random", "hold", "replay", "remote"} <= set(policies)
    assert all(description.strip() for description in policies.values())


@pytest.mark.parametrize("name", ["random", "hold"])
def test_builtin_policy_answers_a_valid_chunk(name):
    policy = make_policy(name)
    policy.reset("PnP Can To Drawer Close", INSTRUCTION)
    chunk = validate_chunk(policy.get_action(make_observation()))
    assert list(chunk) == [CHUNK_KEYS[part] for part in ACTION_KEYS]


def test_pyproject_entry_points_name_the_registered_factories():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    table = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["lda_bench.policies"]
    assert {"random", "hold", "replay", "remote"} <= set(table)  # the built-ins; model families add theirs
    for name, target in table.items():
        module, _, attribute = target.partition(":")
        factory = getattr(importlib.import_module(module), attribute)
        assert name in available_policies()
        assert policy_module._registry[name].factory is factory


def test_unknown_policy_names_the_known_ones_and_the_closest():
    with pytest.raises(UnknownPolicyError) as raised:
        make_policy("radnom")
    assert isinstance(raised.value, KeyError)
    message = str(raised.value)
    assert "unknown policy 'radnom'" in message and "did you mean 'random'" in message
    for name in ("hold", "random", "remote", "replay"):
        assert name in message
    with pytest.raises(UnknownPolicyError):
        policy_arguments("nope")


def test_policy_arguments_come_from_the_factory_signature():
    assert policy_arguments("random") == ["seed", "scale", "chunk"]
    assert policy_arguments("hold") == []
    assert policy_arguments("remote") == ["host", "port", "timeout_s", "api_token", "retries", "env_id"]


def test_bad_argument_names_the_accepted_ones():
    with pytest.raises(PolicyArgumentError, match=r"does not take 'sed' \(did you mean 'seed'\?\); "
                                                  r"it accepts: seed, scale, chunk"):
        make_policy("random", sed=1)
    with pytest.raises(PolicyArgumentError, match="does not take 'speed'; it accepts: no arguments"):
        make_policy("hold", speed=1)


def test_missing_required_argument_is_named():
    with pytest.raises(PolicyArgumentError, match="'replay' needs dataset; it accepts: dataset, episode, chunk"):
        make_policy("replay")


class Recorder:
    """A policy that keeps the arguments it was built with."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def reset(self, task, instruction):
        pass

    def get_action(self, obs):
        return {}


def test_string_arguments_become_the_annotated_types(registry):
    @register_policy("typed", "a factory with one parameter of each convertible type")
    def typed(count: int = 0, gain: float = 1.0, flag: bool = False, path: Path | None = None,
              label: str = "", token: str | None = None):
        return Recorder(count=count, gain=gain, flag=flag, path=path, label=label, token=token)

    made = make_policy("typed", count="3", gain="0.25", flag="true", path="/tmp/data", label="7", token="abc")
    assert made.kwargs == dict(count=3, gain=0.25, flag=True, path=Path("/tmp/data"), label="7", token="abc")
    assert make_policy("typed", count=5, flag=True).kwargs["count"] == 5  # non-strings pass through
    for text, value in [("1", True), ("Yes", True), ("on", True), ("0", False), ("False", False), ("off", False)]:
        assert make_policy("typed", flag=text).kwargs["flag"] is value
    with pytest.raises(PolicyArgumentError, match="'flag' expects bool, got 'maybe'"):
        make_policy("typed", flag="maybe")
    with pytest.raises(PolicyArgumentError, match="'count' expects int, got '1.5'"):
        make_policy("typed", count="1.5")


def test_a_factory_must_build_a_policy(registry):
    register_policy("number", "builds a number, not a policy")(lambda: 42)
    with pytest.raises(TypeError, match="returned a 'int' object, which lacks reset"):
        make_policy("number")


def test_a_taken_name_cannot_be_registered_by_another_factory(registry):
    with pytest.raises(ValueError, match="'hold' is already taken by policies.basic.HoldPolicy"):
        register_policy("hold", "an impostor")(lambda: None)


def test_third_party_entry_points_register_factories_and_modules(tmp_path, monkeypatch, registry):
    (tmp_path / "lda_bench_test_plugin.py").write_text(textwrap.dedent('''
        class EchoPolicy:
            """Echoes the current joints (a third-party test plugin)."""

            def __init__(self, gain: float = 1.0):
                self.gain = gain

            def reset(self, task, instruction):
                pass

            def get_action(self, obs):
                return {}
    '''))
    (tmp_path / "lda_bench_test_plugin_module.py").write_text(textwrap.dedent('''
        from lda_bench.policy import register_policy

        @register_policy("wave", "registered when its module is imported")
        class WavePolicy:
            pass
    '''))
    dist_info = tmp_path / "lda_bench_test_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: lda-bench-test-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(
        "[lda_bench.policies]\n"
        "echo = lda_bench_test_plugin:EchoPolicy\n"
        "waves = lda_bench_test_plugin_module\n"
        "broken = lda_bench_test_plugin_missing:Nothing\n")
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.setattr(registry, "_plugins_loaded", False)

    with pytest.warns(UserWarning, match=r"skipping policy plugin 'broken' .*ModuleNotFoundError"):
        policies = available_policies()
    assert policies["echo"] == "Echoes the current joints (a third-party test plugin)."
    assert policies["wave"] == "registered when its module is imported"
    assert {"random", "hold", "replay", "remote"} <= set(policies)
    assert make_policy("echo", gain="2.5").gain == 2.5


def test_validate_chunk_accepts_the_gr1_layout_and_orders_it():
    chunk = {CHUNK_KEYS[part]: np.zeros((4, ACTION_DIMS[part]), dtype=np.float32) for part in reversed(ACTION_KEYS)}
    checked = validate_chunk(chunk)
    assert list(checked) == [CHUNK_KEYS[part] for part in ACTION_KEYS]
    assert all(value.dtype == np.float64 and value.shape[0] == 4 for value in checked.values())


def _chunk(**changes):
    chunk = {CHUNK_KEYS[part]: np.zeros((2, ACTION_DIMS[part])) for part in ACTION_KEYS}
    chunk.update(changes)
    return {key: value for key, value in chunk.items() if value is not None}


@pytest.mark.parametrize("chunk, message", [
    (_chunk(**{"action.waist": None}), r"lacks action.waist: expected an array of shape \(K, 3\)"),
    (_chunk(**{"action.left_arm": np.zeros((2, 6))}), r"action.left_arm has shape \(2, 6\); expected \(K, 7\)"),
    (_chunk(**{"action.left_hand": np.zeros(6)}), r"action.left_hand has shape \(6,\); expected \(K, 6\)"),
    (_chunk(**{"action.right_arm": np.zeros((0, 7))}), r"expected \(K, 7\) with K >= 1"),
    (_chunk(**{"action.waist": np.zeros((3, 3))}), r"same number of steps K; got .*'action.waist': 3"),
    (_chunk(**{"action.right_hand": np.array([[0.0] * 6, [np.nan] + [0.0] * 5])}),
     r"action.right_hand has non-finite values at step\(s\) \[1\]"),
    (_chunk(**{"action.left_Arm": np.zeros((2, 7))}), r"unexpected key\(s\) \['action.left_Arm'\]"),
    ([1, 2, 3], "got list"),
])
def test_validate_chunk_says_which_key_is_wrong(chunk, message):
    with pytest.raises(InvalidChunkError, match=message):
        validate_chunk(chunk)
