"""The scripted expert, through the same chunked stepping an evaluation uses."""

import pytest

from lda_bench.policy import make_policy


def _run(env, policy, seed, max_steps=480):
    obs, _ = env.reset(seed=seed)
    policy.reset(env.spec_.name, env.instruction)
    while env.elapsed_steps < max_steps:
        obs, steps, success, first = env.step_chunk(policy.get_action(obs), render=False)
        if success:
            return True
    return False


@pytest.mark.parametrize("seed", [0, 5])   # a lemon (palm rolled under it) and a tomato
def test_expert_puts_the_object_in_the_bowl(task_env, seed):
    env = task_env("PnP Novel From Plate To Bowl")
    expert = make_policy("scripted")
    expert.bind_env(env)
    assert _run(env, expert, seed)
    assert env.conditions()["hands_away"]


def test_expert_needs_the_environment():
    with pytest.raises(RuntimeError, match="bind_env"):
        make_policy("scripted").reset("PnP Novel From Plate To Bowl", "pick ...")


@pytest.mark.parametrize("task, seed", [("PnP Milk To Microwave Close", 0), ("PnP Bottle To Cabinet Close", 2)])
def test_expert_places_the_object_and_shuts_the_door(task_env, task, seed):
    """The door opens towards the placing hand's side of the table, so the other hand sweeps it shut."""
    env = task_env(task)
    expert = make_policy("scripted")
    expert.bind_env(env)
    assert _run(env, expert, seed, max_steps=720)
    assert env.conditions() == {"object_inside": True, "closed": True}
