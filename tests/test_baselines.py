"""Every registered model policy (LDA's variants, the GR00T-N1.6 family and the UWM family): shapes,
save/load, learning, data roles, acting through an episode; and the GR00T family trained by `lda-bench
train` (the UWM family's own tests: tests/test_uwm.py)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import policies.gr00t  # noqa: E402,F401  (registers the GR00T family before the installed entry points know it)
import policies.uwm  # noqa: E402,F401  (and the UWM family)
from lda_bench.policy import _registry, available_policies, make_policy, validate_chunk  # noqa: E402
from lda_bench.rollout import run_episode  # noqa: E402
from model.blocks import sample_flow_time  # noqa: E402
from model.config import OBJECTIVES, POLICY, PRESETS, build_model, get_config  # noqa: E402
from model.gr00t import GR00T  # noqa: E402
from model.synthetic import make_dataset  # noqa: E402
from model.train import CHECKPOINT, load_checkpoint, load_model  # noqa: E402
from model_helpers import moved, random_batch, saved_checkpoint, small_config  # noqa: E402
from policies.checkpoint import CheckpointPolicy  # noqa: E402
from policy_helpers import INSTRUCTION, make_observation  # noqa: E402
from tasks.specs import get_task  # noqa: E402

# A network small enough for a CPU test, for each registered policy that acts from a model checkpoint.
NETWORKS = {
    "lda": lambda: small_config(),
    "lda-0.5b": lambda: small_config(),
    "lda-dit": lambda: small_config(backbone="dit"),
    "gr00t-n1.6": lambda: get_config("gr00t-n1.6-tiny"),
    "starvla": lambda: get_config("starvla-tiny"),
    "gr00t-ei": lambda: get_config("gr00t-ei-tiny"),
    "uwm": lambda: get_config("uwm-tiny"),
    "uwm-xl": lambda: get_config("uwm-xl-tiny"),
    "uwm-mmdit": lambda: get_config("uwm-mmdit-tiny"),
}
GR00T_FAMILY = [name for name in NETWORKS if NETWORKS[name]().family == "gr00t"]
TASK = get_task("PnP Can To Drawer Close")


def test_every_model_policy_is_tested_here():
    available_policies()
    model_policies = {name for name, entry in _registry.items()
                      if isinstance(entry.factory, type) and issubclass(entry.factory, CheckpointPolicy)}
    assert model_policies == set(NETWORKS)


def _conditions(batch):
    return {k: batch[k] for k in ("obs", "past_actions", "state", "vlm", "vlm_mask", "has_actions")}


@pytest.mark.parametrize("policy", NETWORKS)
def test_shapes(policy):
    config = NETWORKS[policy]()
    network = build_model(config)
    batch = random_batch(config, size=3)
    assert OBJECTIVES[POLICY] in network.objectives
    out = network.loss(batch)
    assert out["loss"].shape == () and out["count/policy"].item() <= 3
    assert set(out) == {"loss"} | {f"{kind}/{name}" for kind in ("loss", "count") for name in network.objectives}
    chunk = network.sample(POLICY, **_conditions(batch), steps=2)
    assert chunk.shape == (3, config.action_chunk, config.action_dim) == (3, 16, 29)


@pytest.mark.parametrize("policy", NETWORKS)
def test_save_and_load_reproduce_the_outputs(tmp_path, policy):
    config = NETWORKS[policy]()
    torch.manual_seed(0)
    network = moved(build_model(config)).eval()
    saved_checkpoint(tmp_path / "model.pt", config, network)
    loaded = load_model(tmp_path / "model.pt")[0]
    assert type(loaded) is type(network) and loaded.config == config
    batch = random_batch(config)
    noise = torch.randn(4, 16, 29, generator=torch.Generator().manual_seed(2))
    expected = network.sample(POLICY, **_conditions(batch), noise=noise)
    assert torch.equal(loaded.sample(POLICY, **_conditions(batch), noise=noise), expected)
    assert expected.sub(noise).abs().sum() > 0  # the network moved the noise: its weights were used


@pytest.mark.parametrize("policy", NETWORKS)
def test_a_short_overfit_drives_the_policy_loss_down(policy):
    torch.manual_seed(0)
    config = NETWORKS[policy]()
    network = build_model(config)
    batch = random_batch(config, size=8)
    batch["roles"][:, 1:] = False  # every sample trains the policy, and only the policy
    optimizer = torch.optim.AdamW(network.parameters(), lr=2e-3, betas=(0.9, 0.95))
    losses = []
    for _ in range(40):
        torch.manual_seed(1)  # the same noise and flow times every step: a fixed regression target
        out = network.loss(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss/policy"].item())
    assert out["count/policy"].item() == 8
    assert losses[-1] < 0.25 * losses[0], losses[::8]


def _grads(network):
    return {n: p.grad.clone() for n, p in network.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("policy", GR00T_FAMILY)
def test_a_low_quality_sample_cannot_move_a_gr00t_loss(policy):
    config = NETWORKS[policy]()
    network = moved(build_model(config))
    batch = random_batch(config, size=3)
    batch["roles"] = torch.tensor([[True] * 4, [False, True, True, True], [False, False, False, True]])

    def loss_and_grads(b):
        network.zero_grad()
        torch.manual_seed(1)
        out = network.loss(b)
        out["loss"].backward()
        return out, _grads(network)

    out, grads = loss_and_grads(batch)
    assert out["count/policy"].item() == 1  # neither the low-quality sample nor the action-free one counts
    changed = {k: v.clone() for k, v in batch.items()}
    for key in ("actions", "state", "vlm"):  # everything the low-quality and the video sample hold
        changed[key][1:] += 5.0
    out2, grads2 = loss_and_grads(changed)
    assert out2["loss"].item() == out["loss"].item()
    assert grads.keys() == grads2.keys() and all(torch.equal(grads[n], grads2[n]) for n in grads)
    # ... while the high-quality sample's data does move it
    changed["actions"][0] += 1.0
    assert loss_and_grads(changed)[0]["loss"].item() != out["loss"].item()
    # a batch without a high-quality sample trains nothing
    batch["roles"][0, POLICY] = False
    out, grads = loss_and_grads(batch)
    assert out["count/policy"].item() == 0 and out["loss"].item() == 0
    assert all(g.abs().max() == 0 for g in grads.values())


def test_gr00t_n1_6_time_distribution_is_s_times_one_minus_beta():
    torch.manual_seed(0)
    config = get_config("gr00t-n1.6-tiny")
    t = sample_flow_time(200_000, config)
    s = config.flow_s
    # t = s (1 - u) with u ~ Beta(1.5, 1): E[u] = 0.6, P(t < x) = P(u > 1 - x / s) = 1 - (1 - x / s)^1.5
    assert t.mean().item() == pytest.approx(s * 0.4, abs=3e-3)
    assert (t < 0.5).float().mean().item() == pytest.approx(1 - (1 - 0.5 / s) ** 1.5, abs=3e-3)
    assert t.min().item() >= 0 and t.max().item() <= s


def test_the_gr00t_presets_are_one_network_at_gr00t_n1_6_sizes():
    full = {name: config for name, config in PRESETS.items() if config.family == "gr00t" and "tiny" not in name}
    assert set(full) == {"gr00t-n1.6", "starvla", "gr00t-ei"}
    for name, config in full.items():
        assert (config.hidden, config.heads, config.hidden // config.heads, config.state_hidden, config.output_hidden,
                config.action_chunk, config.sample_steps, config.flow_time) == (1536, 32, 48, 1024, 1024, 16, 4, "scaled")
        assert 2 * config.layers == 32  # one self- and one cross-attention per block
        tiny = PRESETS[f"{name}-tiny"]
        assert tiny.tune_vlm == config.tune_vlm and tiny.vlm_dim == 32
        with torch.device("meta"):
            assert 0.9e9 < build_model(config).num_params() < 1.0e9
        assert build_model(tiny).num_params() < 2e6
    assert (full["gr00t-n1.6"].vlm_dim, full["starvla"].vlm_dim, full["gr00t-ei"].vlm_dim) == (2048, 2560, 2048)
    assert [name for name, config in full.items() if config.tune_vlm] == ["gr00t-ei"]


class RecordingEnv:
    """Stands in for a task environment (no simulation): records the chunks it is given."""

    image_hw = (48, 48)
    image_variant, scene_split, instances = "square", "eval", "A"

    def __init__(self):
        self.chunks = []

    def reset(self, seed: int):
        return make_observation(seed, size=48), {"instruction": INSTRUCTION, "seed": seed, "success": False,
                                                 "scene": {"object": "can"}}

    def step_chunk(self, chunk, render=True):
        self.chunks.append(chunk)
        steps = len(next(iter(chunk.values())))
        return make_observation(len(self.chunks), size=48), steps, False, None


@pytest.mark.parametrize("policy", NETWORKS)
def test_each_model_policy_acts_through_an_episode(tmp_path, policy):
    config = NETWORKS[policy]()
    torch.manual_seed(0)
    path = saved_checkpoint(tmp_path / "model.pt", config, moved(build_model(config)))
    actions = []
    for _ in range(2):
        env = RecordingEnv()
        record = run_episode(env, make_policy(policy, checkpoint=str(path), execute="4"), TASK, 0, 0, 4, 12,
                             policy_name=policy)
        assert (record.error, record.steps) == (None, 12)
        assert [len(c["action.left_arm"]) for c in env.chunks] == [4, 4, 4]
        actions.append(np.concatenate([np.concatenate(list(c.values()), axis=1) for c in env.chunks]))
    assert actions[0].shape == (12, 29) and np.isfinite(actions[0]).all() and np.abs(actions[0]).sum() > 0
    np.testing.assert_array_equal(actions[0], actions[1])  # a policy reset acts again exactly as before
    other = "lda" if config.family == "gr00t" else "gr00t-n1.6"
    with pytest.raises(ValueError, match=f"holds a '{config.family}' network"):
        make_policy(other, checkpoint=str(path))


# --- the GR00T family through `lda-bench train` / `finetune` ----------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "synthetic", episodes=4, low=1, video=1, length=24)


def test_cli_trains_resumes_and_acts_with_a_gr00t_preset(dataset, tmp_path, capsys):
    from lda_bench.cli import main

    out = tmp_path / "run"
    common = ["--config", "gr00t-n1.6-tiny", "--data", str(dataset), "--out", str(out), "--batch-size", "8"]
    assert main(["train", *common, "--steps", "2"]) == 0
    first = load_checkpoint(out)
    assert first["step"] == 2 and first["model_config"]["family"] == "gr00t"
    assert main(["train", *common, "--steps", "4"]) == 0  # the run folder holds a checkpoint: resumed
    log = (out / "log.jsonl").read_text()
    assert '"event": "resume", "step": 2' in log and '"loss/policy"' in log and "loss/forward_dynamics" not in log
    assert "step 4/4 loss" in capsys.readouterr().out
    network = load_model(out)[0]
    assert isinstance(network, GR00T) and network.config == get_config("gr00t-n1.6-tiny")
    assert any(not torch.equal(v, load_checkpoint(out)["model"][k]) for k, v in first["model"].items())
    policy = make_policy("gr00t-n1.6", checkpoint=str(out / CHECKPOINT))
    policy.reset("task", INSTRUCTION)
    chunk = validate_chunk(policy.get_action(make_observation(size=48)))
    assert chunk["action.right_hand"].shape == (network.config.execute_steps, 6)


def test_a_gr00t_run_evaluates_its_policy_against_holding_the_last_action(dataset, tmp_path):
    from model.train import TrainConfig, train

    result = train(TrainConfig(model="gr00t-n1.6-tiny", data=[str(dataset)], out=str(tmp_path / "run"), steps=2,
                               batch_size=8, warmup=1, eval_every=2, eval_samples=8, holdout=0.5), echo=None)
    assert set(result["eval"]) == {"policy/action_l1", "baseline/hold_last_action_l1"}
    assert all(np.isfinite(v) and v > 0 for v in result["eval"].values())


@pytest.mark.parametrize("preset, trains_vlm", [("gr00t-n1.6-tiny", False), ("gr00t-ei-tiny", True)])
def test_gr00t_ei_finetunes_its_vlm_and_gr00t_n1_6_keeps_it_frozen(dataset, tmp_path, preset, trains_vlm):
    from lda_bench.cli import main

    common = ["--data", str(dataset), "--batch-size", "8", "--steps", "2"]
    assert main(["train", "--config", preset, "--out", str(tmp_path / "pre"), *common]) == 0
    assert main(["finetune", "--from", str(tmp_path / "pre/checkpoint.pt"), "--out", str(tmp_path / "ft"),
                 *common]) == 0
    before, after = (load_checkpoint(tmp_path / run) for run in ("pre", "ft"))
    assert after["train_config"]["unfreeze_vlm"] is trains_vlm
    vlm_before, vlm_after = before["encoder_state"]["vlm"], after["encoder_state"]["vlm"]
    changed = any(not torch.equal(vlm_before[k], vlm_after[k]) for k in vlm_before)
    assert changed is trains_vlm
