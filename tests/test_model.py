"""The LDA network: shapes, presets, initialisation, flow-matching time, data roles, learning."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from model.blocks import sample_flow_time  # noqa: E402
from model.config import FORECAST, FORWARD, INVERSE, OBJECTIVES, POLICY, PRESETS, build_model, get_config  # noqa: E402
from model.lda import LDA  # noqa: E402
from model_helpers import random_batch, small_config  # noqa: E402


@pytest.mark.parametrize("backbone", ["mmdit", "dit"])
def test_forward_and_sample_shapes(backbone):
    config = small_config(backbone=backbone)
    model = LDA(config)
    b = random_batch(config, size=3)
    objective = torch.tensor([POLICY, FORWARD, FORECAST])
    v_a, v_f = model(b["actions"], b["future"], b["obs"], b["past_actions"], b["state"], b["vlm"], b["vlm_mask"],
                     torch.rand(3), objective, b["has_actions"])
    assert v_a.shape == (3, config.action_chunk, config.action_dim) == (3, 16, 29)
    assert v_f.shape == (3, config.patches, config.dino_dim)
    cond = {k: b[k] for k in ("obs", "past_actions", "state", "vlm", "vlm_mask")}
    assert model.sample(POLICY, **cond).shape == (3, 16, 29)
    assert model.sample(FORWARD, **cond, actions=b["actions"], steps=2).shape == (3, config.patches, config.dino_dim)


def _euler(model, objective, cond, noise, steps, actions=None, future=None):
    """The straightforward sampler: the whole network, conditioning included, in every Euler step."""
    x = noise
    for i in range(steps):
        t = torch.full((noise.shape[0],), i / steps)
        obj = torch.full((noise.shape[0],), objective)
        target_actions = objective in (POLICY, INVERSE)
        v_a, v_f = model(x if target_actions else actions, future if target_actions else x, **cond, t=t,
                         objective=obj)
        x = x + (v_a if target_actions else v_f) / steps
    return x


@pytest.mark.parametrize("backbone", ["mmdit", "dit"])
@pytest.mark.parametrize("objective", [POLICY, FORWARD, INVERSE, FORECAST])
def test_sampler_gives_the_chunk_of_the_straightforward_euler_loop(backbone, objective):
    """`sample` computes the conditioning once per chunk and skips the unread stream's last-block work and
    output head; with the same noise it must integrate to what the plain per-step forward passes give."""
    config = small_config(backbone=backbone)
    model = LDA(config).eval()
    with torch.no_grad():  # move every weight off its AdaLN-Zero / zero-head start so that all paths matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    b = random_batch(config, size=2)
    cond = {k: b[k] for k in ("obs", "past_actions", "state", "vlm", "vlm_mask", "has_actions")}
    shape = b["actions"].shape if objective in (POLICY, INVERSE) else b["future"].shape
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    given = {"actions": b["actions"], "future": b["future"]}
    with torch.no_grad():
        expected = _euler(model, objective, cond, noise, 4, **given)
    got = model.sample(objective, **cond, **given, steps=4, noise=noise)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


def test_adaln_zero_starts_every_block_as_identity_and_predicts_zero_velocity():
    config = small_config()
    model = LDA(config)
    b = random_batch(config)
    v_a, v_f = model(b["actions"], b["future"], b["obs"], b["past_actions"], b["state"], b["vlm"], b["vlm_mask"],
                     torch.rand(4), torch.arange(4), b["has_actions"])
    assert v_a.abs().max() == 0 and v_f.abs().max() == 0
    # ... yet every parameter gets a gradient by the third step (output heads, then gates, then the rest)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        model.loss(b, objective=torch.arange(4))["loss"].backward()
        optimizer.step()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert dead == []


def test_presets_have_the_published_sizes():
    sizes = {}
    for name, config in PRESETS.items():
        with torch.device("meta"):
            sizes[name] = build_model(config).num_params()
    assert 1.1e9 < sizes["lda-1b"] < 1.3e9
    assert 0.45e9 < sizes["lda-0.5b"] < 0.6e9
    assert abs(sizes["lda-dit"] / sizes["lda-1b"] - 1) < 0.05  # same size, one stream
    assert sizes["tiny"] < 5e6
    big = PRESETS["lda-1b"]
    assert (big.hidden, big.layers, big.heads, big.patch_grid, big.dino_dim, big.action_chunk) == (1536, 16, 32, 14, 384, 16)
    assert (big.action_dim, big.state_dim, big.history, big.sample_steps) == (29, 58, 2, 4)


def test_flow_time_follows_gr00t_beta_distribution():
    torch.manual_seed(0)
    config = get_config("tiny")
    t = sample_flow_time(200_000, config)
    s = config.flow_s
    # t = (s - u) / s with u ~ Beta(1.5, 1): E[u] = 0.6, P(u > x) = 1 - x^1.5
    assert t.mean().item() == pytest.approx((s - 0.6) / s, abs=3e-3)
    assert (t < 0.5).float().mean().item() == pytest.approx(1 - (s / 2) ** 1.5, abs=3e-3)
    assert t.min().item() >= (s - 1) / s - 1e-6 and t.max().item() <= 1.0


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_a_low_quality_sample_cannot_move_the_policy():
    config = small_config()
    model = LDA(config)
    batch = random_batch(config, size=2)
    batch["roles"] = torch.tensor([[True] * 4, [False, True, True, True]])  # high, low quality
    policy = torch.full((2,), POLICY)

    def policy_grads(b):
        model.zero_grad()
        torch.manual_seed(1)
        out = model.loss(b, objective=policy)
        out["loss"].backward()
        return out, _grads(model)

    out, grads = policy_grads(batch)
    assert out["count/policy"].item() == 1  # only the high-quality sample counts
    changed = {k: v.clone() for k, v in batch.items()}
    changed["actions"][1] += 5.0  # the low-quality sample's demonstrated actions
    changed["future"][1] -= 3.0
    out2, grads2 = policy_grads(changed)
    assert out2["loss"].item() == out["loss"].item()
    assert all(torch.equal(grads[n], grads2[n]) for n in grads)
    # without forcing, objectives are drawn from the roles: low quality never trains the policy,
    # action-free video only forecasts
    batch = random_batch(config, size=3)
    batch["roles"] = torch.tensor([[False, True, True, True], [False, False, False, True], [True] * 4])
    counts = torch.zeros(3, 4)
    for seed in range(40):
        torch.manual_seed(seed)
        objective = torch.multinomial(batch["roles"].float(), 1).squeeze(1)
        counts[torch.arange(3), objective] += 1
    assert counts[0, POLICY] == 0 and counts[1, :FORECAST].sum() == 0 and (counts[2] > 0).all()


@pytest.mark.parametrize("objective", range(4), ids=OBJECTIVES)
def test_a_short_overfit_drives_each_objective_down(objective):
    torch.manual_seed(0)
    config = small_config()
    model = LDA(config)
    batch = random_batch(config, size=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95))
    chosen = torch.full((8,), objective)
    losses = []
    for _ in range(40):
        torch.manual_seed(1)  # the same noise and flow times every step: a fixed regression target
        out = model.loss(batch, objective=chosen)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out[f"loss/{OBJECTIVES[objective]}"].item())
    assert losses[-1] < 0.25 * losses[0], losses[::8]


@pytest.mark.parametrize("variant", ["gradient checkpointing",
                                     pytest.param("compiled blocks", marks=pytest.mark.slow)])  # compiling: ~1 min
def test_training_speed_options_give_the_same_loss_and_gradients(variant):
    config = small_config()
    plain = LDA(config)
    with torch.no_grad():  # away from AdaLN-Zero's start, where every block is the identity
        for p in plain.parameters():
            p.normal_(std=0.05)
    fast = LDA(config.with_(grad_checkpointing=True)) if variant == "gradient checkpointing" else LDA(config).compile_blocks()
    fast.load_state_dict(plain.state_dict())  # compiling keeps the checkpoint's parameter names
    batch = random_batch(config)
    losses, grads = [], []
    for model in (plain, fast):
        model.train()
        torch.manual_seed(3)
        loss = model.loss(batch, objective=torch.tensor([POLICY, FORWARD, INVERSE, FORECAST]))["loss"]
        loss.backward()
        losses.append(loss.item())
        grads.append(_grads(model))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-5) for n in grads[0])
