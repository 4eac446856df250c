"""The UWM family: its modes chosen by the two timesteps, its data roles, learning each mode, the VAE latents
it reads through the feature cache, its presets, and training and acting through `lda-bench train`."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import policies.uwm  # noqa: E402,F401  (registers the UWM family before the installed entry points know it)
from lda_bench.policy import make_policy, validate_chunk  # noqa: E402
from model.cache import FeatureCache  # noqa: E402
from model.config import (FORECAST, FORWARD, INVERSE, OBJECTIVES, POLICY, PRESETS, build_model,  # noqa: E402
                          get_config)
from model.data import LDASamples, Normalizer, encode_episodes, load_episodes  # noqa: E402
from model.encoders import VAEEncoder, VLMEncoder, build_encoders, encoder_state  # noqa: E402
from model.synthetic import make_dataset  # noqa: E402
from model.train import CHECKPOINT, TrainConfig, load_checkpoint, load_model, train  # noqa: E402
from model.uwm import UWM  # noqa: E402
from model_helpers import random_batch  # noqa: E402
from policy_helpers import INSTRUCTION, make_observation  # noqa: E402

T = 100  # DDPM training timesteps


def _network(name="uwm-tiny", seed=0, moved=True):
    torch.manual_seed(seed)
    network = build_model(get_config(name))
    if moved:  # every weight off its AdaLN-Zero / zero-head start, so that outputs depend on all of them
        with torch.no_grad():
            for p in network.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return network.eval()


def _conditions(batch):
    return {k: batch[k] for k in ("obs", "past_actions", "state", "vlm", "vlm_mask", "has_actions")}


def _recording(network, method):
    """Wrap a method of `network` to record the (actions, future, t_action, t_future) it is given."""
    calls, original = [], getattr(network, method)

    def wrapper(*args, **kwargs):
        actions, future, *_ = args[1:] if method == "denoise" else args
        t_a, t_f = (args[3], args[4]) if method == "denoise" else (args[6], args[7])
        calls.append((actions.clone(), future.clone(), t_a.clone(), t_f.clone()))
        return original(*args, **kwargs)
    setattr(network, method, wrapper)
    return calls


@pytest.mark.parametrize("objective", range(4), ids=OBJECTIVES)
def test_the_two_timesteps_choose_the_mode_in_sampling(objective):
    network = _network()
    batch = random_batch(network.config, size=2)
    calls = _recording(network, "denoise")
    network.sample(objective, **_conditions(batch), actions=batch["actions"], future=batch["future"])
    steps = [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]  # DDIM's 10 of the 100 training timesteps (upstream's)
    target_actions = objective in (POLICY, INVERSE)
    held_t = 0 if objective in (FORWARD, INVERSE) else T - 1
    assert len(calls) == 10
    for (actions, future, t_a, t_f), t in zip(calls, steps):
        target_t, other_t = (t_a, t_f) if target_actions else (t_f, t_a)
        assert target_t.tolist() == [t, t] and other_t.tolist() == [held_t, held_t]
        held = future if target_actions else actions
        given = batch["future"] if target_actions else batch["actions"]
        if held_t == 0:  # forward / inverse dynamics: the condition, clean
            assert torch.equal(held, given)
        else:  # policy / video prediction: pure noise, the same at every step
            assert torch.equal(held, calls[0][1 if target_actions else 0]) and not torch.allclose(held, given)
            assert held.std().item() == pytest.approx(1, abs=0.25)


def test_policy_mode_ignores_the_future_and_inverse_dynamics_reads_it():
    network = _network()
    batch = random_batch(network.config, size=2)
    other = batch["future"] + 2.0
    noise = torch.randn(2, 16, 29, generator=torch.Generator().manual_seed(3))
    sample = lambda objective, future: network.sample(objective, **_conditions(batch), future=future,  # noqa: E731
                                                      noise=noise)
    assert torch.equal(sample(POLICY, batch["future"]), sample(POLICY, other))
    assert not torch.allclose(sample(INVERSE, batch["future"]), sample(INVERSE, other))
    # forward dynamics reads the actions; video prediction does not
    noise = torch.randn(2, 64, 4, generator=torch.Generator().manual_seed(4))
    sample = lambda objective, actions: network.sample(objective, **_conditions(batch), actions=actions,  # noqa: E731
                                                       noise=noise)
    assert torch.equal(sample(FORECAST, batch["actions"]), sample(FORECAST, batch["actions"] + 2.0))
    assert not torch.allclose(sample(FORWARD, batch["actions"]), sample(FORWARD, batch["actions"] + 2.0))
    with pytest.raises(ValueError, match="forward_dynamics holds the actions clean"):
        network.sample(FORWARD, **_conditions(batch))


@pytest.mark.parametrize("objective", range(4), ids=OBJECTIVES)
def test_the_two_timesteps_choose_the_mode_in_training(objective):
    network = _network()
    batch = random_batch(network.config, size=64)
    calls = _recording(network, "forward")
    torch.manual_seed(0)
    network.loss(batch, objective=torch.full((64,), objective))
    (actions, future, t_a, t_f), = calls
    target_actions = objective in (POLICY, INVERSE)
    target_t, other_t = (t_a, t_f) if target_actions else (t_f, t_a)
    assert target_t.min() >= 0 and target_t.max() <= T - 1 and len(target_t.unique()) > 20  # uniform over 0..T-1
    held, given = (future, batch["future"]) if target_actions else (actions, batch["actions"])
    if objective in (FORWARD, INVERSE):
        assert (other_t == 0).all() and torch.equal(held, given)
    else:  # the marginalised modality is pure noise: nothing of the sample's own reaches the network
        assert (other_t == T - 1).all() and held.std().item() == pytest.approx(1, abs=0.05)
        assert torch.corrcoef(torch.stack([held.flatten(), given.flatten()]))[0, 1].abs() < 0.05


def _grads(network):
    return {n: p.grad.clone() for n, p in network.named_parameters() if p.grad is not None}


def test_a_low_quality_sample_cannot_move_the_policy_and_video_only_trains_video_prediction():
    network = _network()
    batch = random_batch(network.config, size=3)
    batch["roles"] = torch.tensor([[True] * 4, [False, True, True, True], [False, False, False, True]])

    def loss_and_grads(b, objective):
        network.zero_grad()
        torch.manual_seed(1)
        out = network.loss(b, objective=torch.full((3,), objective))
        out["loss"].backward()
        return out, _grads(network)

    out, grads = loss_and_grads(batch, POLICY)
    assert out["count/policy"].item() == 1  # neither the low-quality sample nor the action-free one counts
    changed = {k: v.clone() for k, v in batch.items()}
    for key in ("actions", "future", "obs", "state"):  # everything the low-quality and the video sample hold
        changed[key][1:] += 3.0
    out2, grads2 = loss_and_grads(changed, POLICY)
    assert out2["loss"].item() == out["loss"].item()
    assert all(torch.equal(grads[n], grads2[n]) for n in grads)
    changed["actions"][0] += 1.0  # ... while the high-quality sample's actions do move it
    assert loss_and_grads(changed, POLICY)[0]["loss"].item() != out["loss"].item()
    # the low-quality sample trains the dynamics; the video sample, video prediction alone
    for objective, counted in ((FORWARD, 2), (INVERSE, 2), (FORECAST, 3)):
        assert loss_and_grads(batch, objective)[0][f"count/{OBJECTIVES[objective]}"].item() == counted
    # drawn from the roles: low quality never trains the policy, action-free video only video prediction
    drawn = {"low": torch.zeros(4), "video": torch.zeros(4)}
    for seed in range(10):
        for role, row in (("low", [False, True, True, True]), ("video", [False, False, False, True])):
            torch.manual_seed(seed)
            out = network.loss({**batch, "roles": torch.tensor([row] * 3)})
            drawn[role] += torch.tensor([out[f"count/{name}"].item() for name in OBJECTIVES])
    assert drawn["low"][POLICY] == 0 and (drawn["low"][1:] > 0).all()
    assert drawn["video"].tolist() == [0, 0, 0, 30]


@pytest.mark.parametrize("objective", range(4), ids=OBJECTIVES)
@pytest.mark.parametrize("preset", ["uwm-tiny", "uwm-mmdit-tiny"])
def test_a_short_overfit_drives_each_mode_down(preset, objective):
    network = _network(preset, moved=False).train()
    batch = random_batch(network.config, size=8)
    optimizer = torch.optim.AdamW(network.parameters(), lr=2e-3, betas=(0.9, 0.95))
    losses = []
    for _ in range(40):
        torch.manual_seed(1)  # the same noise and timesteps every step: a fixed regression target
        out = network.loss(batch, objective=torch.full((8,), objective))
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out[f"loss/{OBJECTIVES[objective]}"].item())
    assert losses[-1] < 0.25 * losses[0], losses[::8]


def test_the_presets_have_upstreams_shape_and_the_papers_sizes():
    sizes = {}
    for name in ("uwm", "uwm-xl", "uwm-mmdit"):
        with torch.device("meta"):
            sizes[name] = build_model(PRESETS[name]).num_params()
        tiny = PRESETS[f"{name}-tiny"]
        assert (tiny.backbone, tiny.language) == (PRESETS[name].backbone, PRESETS[name].language)
        assert build_model(tiny).num_params() < 2e6
    assert 130e6 < sizes["uwm"] < 150e6  # the paper's UWM: 140 M
    assert 0.95e9 < sizes["uwm-xl"] < 1.1e9 and abs(sizes["uwm-mmdit"] / sizes["uwm-xl"] - 1) < 0.05
    uwm = PRESETS["uwm"]
    assert (uwm.hidden, uwm.heads, uwm.mlp_ratio, uwm.registers, uwm.latent_patch) == (768, 12, 4, 8, 4)
    assert (uwm.diffusion_steps, uwm.sample_steps, uwm.beta_schedule) == (100, 10, "squaredcos_cap_v2")
    assert (uwm.image_size, uwm.patch_grid, uwm.dino_dim, uwm.language, uwm.backbone) == (224, 28, 4, False, "dit")
    assert [PRESETS[n].backbone for n in ("uwm-xl", "uwm-mmdit")] == ["dit", "mmdit"]
    assert PRESETS["uwm-xl"].language and PRESETS["uwm-mmdit"].language and PRESETS["uwm-xl"].vlm_dim == 2560


def test_the_vae_gives_scaled_latent_means_and_rebuilds_from_its_spec():
    vae = VAEEncoder.tiny(64)
    frames = np.random.default_rng(0).integers(0, 255, (3, 48, 48, 3), dtype=np.uint8)
    latents = vae.encode(frames)
    assert latents.shape == (3, 8 * 8, 4) and (vae.grid, vae.dim) == (8, 4)
    assert torch.equal(vae.encode(frames), latents)  # the posterior's mean: one encoding per frame, cacheable
    x = torch.nn.functional.interpolate(torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255, size=(64, 64),
                                        mode="bilinear", antialias=True, align_corners=False)
    mean = vae.model.encode(2 * x - 1).latent_dist.mean * 0.13025
    torch.testing.assert_close(latents, mean.permute(0, 2, 3, 1).reshape(3, 64, 4))
    # a checkpoint rebuilds it from its spec and stored weights (a random VAE has no source to reload)
    rebuilt, _ = build_encoders({"dino": vae.spec(), "vlm": VLMEncoder.tiny().spec()},
                                encoder_state(vae, VLMEncoder.tiny()))
    assert isinstance(rebuilt, VAEEncoder) and rebuilt.encoder_id == vae.encoder_id
    assert torch.equal(rebuilt.encode(frames), latents)
    assert VAEEncoder.tiny(96).encoder_id != vae.encoder_id  # other size, other latents, other cache entry


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "synthetic", episodes=4, low=1, video=1, length=24)


def test_the_future_frames_latents_are_cached_and_read_back(dataset, tmp_path):
    config = get_config("uwm-tiny")
    vae, vlm = VAEEncoder.tiny(config.image_size), VLMEncoder.tiny(config.image_size)
    episodes = load_episodes([dataset])
    cache = FeatureCache(tmp_path)
    encode_episodes(episodes, cache, vae, vlm, config.vlm_stride, log=None)
    normalizer = Normalizer(np.zeros(29, np.float32), np.ones(29, np.float32), np.full(4, 0.5, np.float32),
                            np.full(4, 2.0, np.float32))
    samples = LDASamples(episodes, config, cache, vae.encoder_id, vlm.encoder_id, normalizer)
    episode = episodes[0]
    sample = samples[3]  # episode 0, anchored at frame 3
    frames = episode.dataset.episode_frames(episode.index, "ego_view")
    with torch.no_grad():
        expected = (vae.encode(frames[[0, 3, 3 + config.future_offset]]) - 0.5) / 2.0
    assert sample["future"].shape == (64, 4) and sample["obs"].shape == (2, 64, 4)
    torch.testing.assert_close(sample["future"], expected[2], atol=2e-3, rtol=2e-3)  # stored as float16
    torch.testing.assert_close(sample["obs"], expected[:2], atol=2e-3, rtol=2e-3)


def test_cli_trains_resumes_and_acts_with_a_uwm_preset(dataset, tmp_path, capsys):
    from lda_bench.cli import main

    out = tmp_path / "run"
    common = ["--config", "uwm-tiny", "--data", str(dataset), "--out", str(out), "--batch-size", "8"]
    assert main(["train", *common, "--steps", "2"]) == 0
    first = load_checkpoint(out)
    assert first["step"] == 2 and first["model_config"]["family"] == "uwm"
    assert first["encoders"]["dino"]["kind"] == "vae" and len(first["normalizer"]["visual_mean"]) == 4
    assert any(path.parent.name.startswith("vae_random") for path in (out / "features").rglob("*.safetensors"))
    assert main(["train", *common, "--steps", "4"]) == 0  # the run folder holds a checkpoint: resumed
    log = (out / "log.jsonl").read_text()
    assert '"event": "resume", "step": 2' in log and '"loss/visual_forecasting"' in log
    assert "step 4/4 loss" in capsys.readouterr().out
    network = load_model(out)[0]
    assert isinstance(network, UWM) and network.config == get_config("uwm-tiny")
    assert any(not torch.equal(v, load_checkpoint(out)["model"][k]) for k, v in first["model"].items())
    policy = make_policy("uwm", checkpoint=str(out / CHECKPOINT))
    policy.reset("task", INSTRUCTION)
    chunk = validate_chunk(policy.get_action(make_observation(size=48)))
    assert chunk["action.right_hand"].shape == (network.config.execute_steps, 6)
    with pytest.raises(ValueError, match="holds a 'dit' UWM"):
        make_policy("uwm-mmdit", checkpoint=str(out / CHECKPOINT))


def test_a_uwm_run_evaluates_every_mode_against_the_trivial_predictions(dataset, tmp_path):
    result = train(TrainConfig(model="uwm-tiny", data=[str(dataset)], out=str(tmp_path / "run"), steps=2,
                               batch_size=8, warmup=1, eval_every=2, eval_samples=8, holdout=0.5), echo=None)
    assert set(result["eval"]) == {"policy/action_l1", "inverse_dynamics/action_l1", "forward_dynamics/feature_mse",
                                   "visual_forecasting/feature_mse", "baseline/hold_last_action_l1",
                                   "baseline/unchanged_frame_mse"}
    assert all(np.isfinite(v) and v > 0 for v in result["eval"].values())
