"""The policy contract of the benchmark, and the registry that finds policies by name.

A policy sees one environment's observation in GR00T's key layout and answers with a chunk of absolute
joint targets in the same layout, so a local policy and a GR00T policy server are interchangeable.
Policies come from factories registered by name. Built-ins and third-party packages declare them the same
way, in the `lda_bench.policies` entry-point group, so a plugin never has to edit this repository.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tasks.layout import ACTION_DIMS, ACTION_KEYS, LANGUAGE_KEY, VIDEO_KEY  # noqa: F401 (the keys, for policies)
STATE_KEYS = {part: f"state.{part}" for part in ACTION_KEYS}
CHUNK_KEYS = {part: f"action.{part}" for part in ACTION_KEYS}

ENTRY_POINT_GROUP = "lda_bench.policies"
# Imported on first use as well as declared as entry points: a source checkout that was never
# pip-installed has no entry-point metadata, and the built-ins must be there all the same.
BUILTIN_MODULES = ("policies.basic", "lda_bench.remote")


@runtime_checkable
class Policy(Protocol):
    """What the rollout drives: one instance per environment, reset at the start of every episode.

    `obs` is one environment's observation: `video.ego_view` uint8 (H, W, 3); `state.left_arm` (7,),
    `state.right_arm` (7,), `state.left_hand` (6,), `state.right_hand` (6,), `state.waist` (3,) float64
    joint positions in radians; `annotation.human.coarse_action` the instruction. The answer maps
    `action.left_arm` ... `action.waist` to (K, dim) absolute joint targets for the next K >= 1 steps.

    A privileged policy (the scripted expert) may also define `bind_env(env)`: the rollout then hands it
    the environment before each episode, so it can read the simulator's state.
    """

    def reset(self, task: str, instruction: str) -> None: ...

    def get_action(self, obs: dict[str, Any]) -> dict[str, np.ndarray]: ...


@runtime_checkable
class BatchPolicy(Policy, Protocol):
    """A policy that acts for many environments in one call: the model policies, one forward for all.

    Environment `k` (a batch row, as GR00T's clients number them) keeps its own episode state: its history
    and its noise generator, seeded at its reset as a fresh instance would be. So an environment's actions
    do not depend on which others share its batch, and `get_action(obs)` is environment 0 acting alone.
    `reset(task, instruction)` starts a new episode in every environment; with `env_ids`, only in those.
    """

    def reset(self, task: str, instruction: str, env_ids: Sequence[int] | None = None) -> None: ...

    def get_action_batch(self, observations: Sequence[dict[str, Any]],
                         env_ids: Sequence[int]) -> list[dict[str, np.ndarray]]: ...


class UnknownPolicyError(KeyError):
    """A policy name that no factory is registered under."""

    def __init__(self, name: str, known: list[str]):
        super().__init__(name)
        self.message = (f"unknown policy {name!r}{_did_you_mean(name, known)}; "
                        f"known policies: {', '.join(sorted(known)) or 'none'}")

    def __str__(self) -> str:  # KeyError would print the repr of its argument, quotes and all
        return self.message


class PolicyArgumentError(ValueError):
    """A keyword argument a policy factory does not take, lacks, or cannot convert."""


class InvalidChunkError(ValueError):
    """An action chunk with the wrong keys, shapes or values."""


def validate_chunk(chunk: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Check an action chunk against GR1's action layout; return it as float64 arrays in GR00T's key order.

    Rejects unknown keys rather than ignoring them: a misspelt key would otherwise leave a limb without
    its targets and fail silently in the simulator.
    """
    expected = {CHUNK_KEYS[part]: ACTION_DIMS[part] for part in ACTION_KEYS}
    layout = ", ".join(f"{key} (K, {dim})" for key, dim in expected.items())
    if not isinstance(chunk, Mapping):
        raise InvalidChunkError(f"an action chunk is a dict of {layout}; got {type(chunk).__name__}")
    unknown = sorted(set(chunk) - set(expected))
    if unknown:
        raise InvalidChunkError(f"unexpected key(s) {unknown} in action chunk; expected {layout}")
    checked: dict[str, np.ndarray] = {}
    for key, dim in expected.items():
        if key not in chunk:
            raise InvalidChunkError(f"action chunk lacks {key}: expected an array of shape (K, {dim})")
        try:
            value = np.asarray(chunk[key], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidChunkError(f"{key} is not numeric ({exc}); expected shape (K, {dim})") from exc
        if value.ndim != 2 or value.shape[1] != dim or value.shape[0] < 1:
            raise InvalidChunkError(f"{key} has shape {value.shape}; expected (K, {dim}) with K >= 1")
        bad_steps = np.flatnonzero(~np.isfinite(value).all(axis=1))
        if bad_steps.size:
            raise InvalidChunkError(f"{key} has non-finite values at step(s) {bad_steps.tolist()}")
        checked[key] = value
    lengths = {key: value.shape[0] for key, value in checked.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidChunkError(f"every key of a chunk needs the same number of steps K; got {lengths}")
    return checked


def current_state(obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The joint positions in an observation, by part (`left_arm`, ...), checked against GR1's layout."""
    state = {}
    for part, key in STATE_KEYS.items():
        if key not in obs:
            raise KeyError(f"observation lacks {key} (expected shape ({ACTION_DIMS[part]},))")
        value = np.asarray(obs[key], dtype=np.float64)
        if value.shape != (ACTION_DIMS[part],):
            raise ValueError(f"{key} has shape {value.shape}; expected ({ACTION_DIMS[part]},)")
        state[part] = value
    return state


# --- registry ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicyEntry:
    """One registered policy: what `available_policies` lists and `make_policy` calls."""

    name: str
    description: str
    factory: Callable[..., Policy]


_registry: dict[str, PolicyEntry] = {}
_plugins_loaded = False


def register_policy(name: str, description: str) -> Callable:
    """Decorator: register a factory (a class or a function taking keyword arguments) under `name`."""

    def decorator(factory: Callable[..., Policy]) -> Callable[..., Policy]:
        _add(PolicyEntry(name, description, factory))
        return factory

    return decorator


def make_policy(name: str, **kwargs: Any) -> Policy:
    """Build the policy registered under `name`.

    String values (as given on the command line, `--policy-arg key=value`) are converted to the type the
    factory's parameter is annotated with: int, float, bool, str or Path (optionally `| None`).
    """
    entry = _lookup(name)
    parameters, takes_any = _keyword_parameters(entry.factory)
    accepted = ", ".join(parameters) or "no arguments"
    unknown = [key for key in kwargs if key not in parameters]
    if unknown and not takes_any:
        named = ", ".join(f"{key!r}{_did_you_mean(key, parameters)}" for key in unknown)
        raise PolicyArgumentError(f"policy {name!r} does not take {named}; it accepts: {accepted}")
    missing = [key for key, p in parameters.items() if p.default is inspect.Parameter.empty and key not in kwargs]
    if missing:
        raise PolicyArgumentError(f"policy {name!r} needs {', '.join(missing)}; it accepts: {accepted}")
    converted = {key: _convert(name, parameters[key], value) if key in parameters else value
                 for key, value in kwargs.items()}
    policy = entry.factory(**converted)
    if not isinstance(policy, Policy):
        raise TypeError(f"the factory of policy {name!r} ({_origin(entry.factory)}) returned a "
                        f"{type(policy).__name__!r} object, which lacks reset(task, instruction) or get_action(obs)")
    return policy


def available_policies() -> dict[str, str]:
    """Every registered policy name and its one-line description, sorted by name."""
    _load_plugins()
    return {name: _registry[name].description for name in sorted(_registry)}


def policy_arguments(name: str) -> list[str]:
    """The keyword arguments the factory registered under `name` accepts, in signature order."""
    return list(_keyword_parameters(_lookup(name).factory)[0])


def _lookup(name: str) -> PolicyEntry:
    _load_plugins()
    if name not in _registry:
        raise UnknownPolicyError(name, list(_registry))
    return _registry[name]


def _add(entry: PolicyEntry) -> None:
    existing = _registry.get(entry.name)
    # The same factory may arrive twice (decorator on import, then its entry point): that is no clash.
    if existing is not None and _origin(existing.factory) != _origin(entry.factory):
        raise ValueError(f"policy name {entry.name!r} is already taken by {_origin(existing.factory)}; "
                         f"cannot register {_origin(entry.factory)} under it")
    _registry[entry.name] = entry


def _origin(factory: Callable) -> str:
    return f"{factory.__module__}.{getattr(factory, '__qualname__', repr(factory))}"


def _load_plugins() -> None:
    """Import the built-ins and every `lda_bench.policies` entry point, once, on first use.

    An entry point `name = "module:factory"` registers `factory` under `name` (unless importing the module
    already did, through `register_policy`); `name = "module"` imports a module that registers its own
    policies. A plugin that fails to load is skipped with a warning, so one broken package cannot hide
    every other policy.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # set first: a plugin may itself ask for the registry while it loads
    try:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
    except BaseException:
        _plugins_loaded = False  # let the next call raise the same error, not see a half-empty registry
        raise
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry_point.load()
            if not isinstance(loaded, types.ModuleType) and entry_point.name not in _registry:
                _add(PolicyEntry(entry_point.name, _summary(loaded), loaded))
        except Exception as exc:  # noqa: BLE001 - any plugin failure is reported, not fatal
            warnings.warn(f"skipping policy plugin {entry_point.name!r} ({entry_point.value}): "
                          f"{type(exc).__name__}: {exc}", stacklevel=3)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _summary(factory: Callable) -> str:
    doc = inspect.getdoc(factory) or ""
    return doc.splitlines()[0] if doc else f"{_origin(factory)} (no description)"


def _keyword_parameters(factory: Callable) -> tuple[dict[str, inspect.Parameter], bool]:
    """The parameters a factory takes by keyword, and whether it also takes arbitrary `**kwargs`."""
    try:
        signature = inspect.signature(factory, eval_str=True)
    except NameError:  # annotations naming types imported only for type checkers: keep them as strings
        signature = inspect.signature(factory)
    named = {name: p for name, p in signature.parameters.items()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    return named, takes_any


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(policy: str, parameter: inspect.Parameter, value: Any) -> Any:
    """Convert a command-line string to the parameter's annotated type; other values pass unchanged."""
    target = _plain_type(parameter.annotation)
    if not isinstance(value, str) or target not in (int, float, bool, Path):
        return value
    if target is bool:
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
    else:
        try:
            return target(value)
        except ValueError:
            pass
    raise PolicyArgumentError(f"policy {policy!r} argument {parameter.name!r} expects {target.__name__}, "
                              f"got {value!r}")


def _plain_type(annotation: Any) -> Any:
    """`X | None` and `Optional[X]` -> X; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation
