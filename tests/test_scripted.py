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


# Seeds of the evaluation split (tasks.sampling.sample_scene(spec, seed).object names the object).
@pytest.mark.parametrize("seed, drawn", [(4, "lemon"), (21, "tomato")])  # a lemon with a second object beside it
                                           # on the plate (taken palm down, fingers turned away from the other)
                                           # and a tomato (palm rolled under it)
def test_expert_puts_the_object_in_the_bowl(task_env, seed, drawn):
    env = task_env("PnP Novel From Plate To Bowl")
    expert = make_policy("scripted")
    expert.bind_env(env)
    assert _run(env, expert, seed)
    assert env.sample.object == drawn, "the seed no longer shows the situation this case is about"
    assert env.conditions()["hands_away"]


@pytest.mark.parametrize("task, seed, drawn", [
    ("PnP Novel From Placemat To Tieredshelf", 11, "squash"),  # 17 cm: by its neck, onto the open top tier
    ("PnP Novel From Tray To Pot", 11, "croissant"),           # palm down: the open hand leaves the pot standing
    ("PnP Novel From Tray To Pot", 0, "cupcake"),              # in the rolled palm, wider than the pot's opening:
])                                                             # lowered onto the rim, the hand tipped the pot
def test_expert_places_on_a_top_tier_and_in_a_pot(task_env, task, seed, drawn):
    env = task_env(task)
    expert = make_policy("scripted")
    expert.bind_env(env)
    assert _run(env, expert, seed, max_steps=720), env.conditions()
    assert env.sample.object == drawn, "the seed no longer shows the situation this case is about"


def test_expert_needs_the_environment():
    with pytest.raises(RuntimeError, match="bind_env"):
        make_policy("scripted").reset("PnP Novel From Plate To Bowl", "pick ...")


@pytest.mark.parametrize("task, seed", [
    ("PnP Milk To Microwave Close", 0),     # a carton, taken with the palm flat against a face
    ("PnP Bottle To Cabinet Close", 0),
    ("PnP Wine To Cabinet Close", 4),      # the hand starts beside the wine's neck: it rises first, or drags it over
])
def test_expert_places_the_object_and_shuts_the_door(task_env, task, seed):
    """The door opens towards the placing hand's side of the table, so the other hand sweeps it shut."""
    env = task_env(task)
    expert = make_policy("scripted")
    expert.bind_env(env)
    assert _run(env, expert, seed, max_steps=720)
    assert env.conditions() == {"object_inside": True, "closed": True}


@pytest.mark.parametrize("task, seed", [
    ("PnP Cup To Drawer Close", 0),            # upright, grasped from above: the palm once landed on the rim
    ("PnP Novel From Placemat To Bowl", 15),   # a croissant, long along its own y axis: lying produce
    ("PnP Wine To Cabinet Close", 1),          # tall and heavy, from the side: it once slid out of the fingers
])
def test_expert_lifts_the_object(task_env, task, seed):
    """Whatever the kind of grasp, the object comes off its support with the hand (pick, then carry)."""
    env = task_env(task)
    expert = make_policy("scripted")
    expert.bind_env(env)
    obs, _ = env.reset(seed=seed)
    expert.reset(task, env.instruction)
    data = env.scene.sim.data._data
    body = env.scene.bodies[env.sample.object_body].body_id
    start = data.xpos[body][2]
    rise = 0.0
    while env.elapsed_steps < 240:
        obs, *_ = env.step_chunk(expert.get_action(obs), render=False)
        rise = max(rise, data.xpos[body][2] - start)
    assert rise > 0.06, f"the {env.sample.object} rose only {rise:.3f} m"
