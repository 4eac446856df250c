"""Relative action chunks (`ModelConfig.action_space`): the chunk minus the last commanded action, in
training samples, checkpoints, held-out errors and acting; absolute checkpoints keep loading as they were."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from lda_bench.policy import CHUNK_KEYS, STATE_KEYS, make_policy  # noqa: E402
from model.cache import FeatureCache  # noqa: E402
from model.config import get_config  # noqa: E402
from model.data import (Episode, LDASamples, Normalizer, action_reference, encode_episodes,  # noqa: E402
                        load_episodes, sample_frames)
from model.encoders import DinoEncoder, VLMEncoder  # noqa: E402
from model.lda import LDA  # noqa: E402
from model.synthetic import make_dataset  # noqa: E402
from model.train import checkpoint_payload, evaluate, load_checkpoint, load_model, save_checkpoint  # noqa: E402
from model_helpers import small_config  # noqa: E402
from policy_helpers import INSTRUCTION, make_observation  # noqa: E402
from tasks.layout import ACTION_KEYS  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "synthetic", episodes=3, low=1, video=1, length=20)


def _unit_normalizer(dino_dim: int = 32, relative_std: np.ndarray | None = None) -> Normalizer:
    return Normalizer(np.zeros(29, np.float32), np.ones(29, np.float32), np.zeros(dino_dim, np.float32),
                      np.ones(dino_dim, np.float32), relative_std)


def test_the_action_space_is_absolute_unless_asked_and_checked():
    assert all(not config.relative for config in (get_config("tiny"), get_config("uwm-tiny"), get_config("lda-1b")))
    assert get_config("gr00t-n1.6-tiny", action_space="relative").relative
    with pytest.raises(ValueError, match="action_space must be 'absolute' or 'relative'; got 'delta'"):
        get_config("tiny", action_space="delta")


def test_relative_chunks_round_trip_to_the_absolute_ones_from_the_first_anchor_on(dataset):
    config = get_config("tiny")
    episodes = [e for e in load_episodes([dataset]) if e.actions is not None]
    normalizer = Normalizer.fit(episodes, np.zeros((4, 32), np.float32), relative_chunk=config.action_chunk)
    differences = []
    for e in episodes:
        np.testing.assert_array_equal(action_reference(e, 0), e.joints[0])  # nothing commanded yet: the joints
        np.testing.assert_array_equal(action_reference(e, np.arange(1, e.length)), e.actions[:-1])
        for t in range(e.length):
            chunk, reference = e.actions[sample_frames(config, t, e.length)["chunk"]], action_reference(e, t)
            relative = normalizer.chunk(chunk, reference)
            np.testing.assert_allclose(relative * normalizer.relative_std, chunk - reference, atol=1e-6)
            np.testing.assert_allclose(normalizer.unchunk(relative, reference), chunk, rtol=0, atol=1e-6)
            differences.append(chunk - reference)
    rms = np.sqrt((np.concatenate(differences).astype(np.float64) ** 2).mean(0))
    np.testing.assert_allclose(normalizer.relative_std, np.maximum(rms, 1e-3), rtol=1e-5)
    # holding still is the zero chunk, whatever the position held
    still = np.full((6, 29), 0.7, np.float32)
    held = Episode(None, 0, 6, "high", "", still, still.copy())
    for t in range(6):
        assert not normalizer.chunk(still[sample_frames(config, t, 6)["chunk"]], action_reference(held, t)).any()


def test_samples_and_the_held_out_hold_yardstick_measure_radians_in_either_space(dataset, tmp_path):
    """The hold-last-action error is the L1 in radians of repeating the reference: in relative space the zero
    chunk, in absolute space (as before) the last past action, a[0] at the start."""
    dino, vlm = DinoEncoder.tiny(), VLMEncoder.tiny()
    episodes = load_episodes([dataset])
    cache = FeatureCache(tmp_path / "features")
    encode_episodes(episodes, cache, dino, vlm, vlm_stride=8, log=None)
    rng = np.random.default_rng(0)
    absolute = Normalizer(rng.normal(size=29).astype(np.float32), rng.uniform(0.5, 2, 29).astype(np.float32),
                          np.zeros(32, np.float32), np.ones(32, np.float32))
    relative = Normalizer.fit(episodes, np.zeros((4, 32), np.float32), relative_chunk=16)
    spaces = {"absolute": (absolute, lambda e, t: e.actions[max(t - 1, 0)]), "relative": (relative, action_reference)}
    for space, (normalizer, reference) in spaces.items():
        config = small_config(action_space=space)
        samples = LDASamples(episodes, config, cache, dino.encoder_id, vlm.encoder_id, normalizer)
        expected, start = [], None
        for i, (e, t) in enumerate(samples.index):
            episode = episodes[e]
            if episode.quality != "high":
                continue
            chunk = episode.actions[sample_frames(config, t, episode.length)["chunk"]]
            expected.append(np.abs(chunk - reference(episode, t)).mean())
            if t == 0 and start is None:
                start = samples[i]["actions"].numpy()
        result = evaluate(LDA(config), samples, count=10**6)
        assert result["baseline/hold_last_action_l1"] == pytest.approx(np.mean(expected), rel=1e-5)
        first = episodes[0]
        chunk = first.actions[sample_frames(config, 0, first.length)["chunk"]]
        np.testing.assert_allclose(start, normalizer.chunk(chunk, reference(first, 0)), rtol=1e-6)
    with pytest.raises(ValueError, match="generates relative action chunks, but the normaliser lacks"):
        LDASamples(episodes, small_config(action_space="relative"), cache, dino.encoder_id, vlm.encoder_id,
                   absolute)


def _absolute(chunk: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([chunk[CHUNK_KEYS[part]] for part in ACTION_KEYS], axis=1)


def test_a_relative_policy_adds_each_environments_last_commanded_action_back(tmp_path):
    """At its first call an environment's reference is its joints, later its last commanded action; the
    network's chunk (controlled here) comes back unnormalised by relative_std on top of it."""
    config = small_config(action_space="relative")
    relative_std = np.random.default_rng(1).uniform(0.01, 0.1, 29).astype(np.float32)
    path = save_checkpoint(tmp_path / "model.pt", checkpoint_payload(
        config, LDA(config).state_dict(), _unit_normalizer(relative_std=relative_std), DinoEncoder.tiny(),
        VLMEncoder.tiny()))
    policy = make_policy("lda", checkpoint=str(path), execute="4")
    sampled = torch.randn(2, config.action_chunk, config.action_dim, generator=torch.Generator().manual_seed(0))
    policy.model.sample = lambda *args, noise, **kwargs: sampled[:len(noise)]
    step = sampled.numpy()[:, :4] * relative_std
    observations = [make_observation(seed=1, size=48), make_observation(seed=2, size=48)]
    joints = [np.concatenate([o[STATE_KEYS[part]] for part in ACTION_KEYS]) for o in observations]
    policy.reset("task", INSTRUCTION)
    first = [_absolute(chunk) for chunk in policy.get_action_batch(observations, [0, 1])]
    for env in range(2):
        np.testing.assert_allclose(first[env], joints[env] + step[env], rtol=1e-6, atol=1e-6)
    second = [_absolute(chunk) for chunk in policy.get_action_batch(observations, [0, 1])]
    for env in range(2):
        np.testing.assert_allclose(second[env], first[env][-1] + step[env], rtol=1e-6, atol=1e-6)
    alone = _absolute(policy.get_action(observations[0]))  # environment 0 of this policy, now on its third call
    np.testing.assert_allclose(alone, second[0][-1] + step[0], rtol=1e-6, atol=1e-6)


def test_checkpoints_from_before_relative_actions_load_as_absolute(tmp_path):
    config = small_config()
    payload = checkpoint_payload(config, LDA(config).state_dict(), _unit_normalizer(), DinoEncoder.tiny(),
                                 VLMEncoder.tiny())
    del payload["model_config"]["action_space"]
    assert "relative_std" not in payload["normalizer"]
    save_checkpoint(tmp_path / "old.pt", payload)
    model, normalizer, _, _ = load_model(tmp_path / "old.pt")
    assert model.config.action_space == "absolute" and not normalizer.relative
    np.testing.assert_array_equal(normalizer.chunk_std, np.ones(29, np.float32))
    make_policy("lda", checkpoint=str(tmp_path / "old.pt")).get_action(make_observation(size=48))
    payload["model_config"]["action_space"] = "relative"  # a relative network without its statistics
    save_checkpoint(tmp_path / "torn.pt", payload)
    with pytest.raises(ValueError, match="lacks relative statistics"):
        load_model(tmp_path / "torn.pt")


def test_a_yaml_training_config_trains_a_relative_network_that_acts(dataset, tmp_path):
    from lda_bench.cli import main

    config_file = tmp_path / "relative.yaml"
    config_file.write_text(yaml.safe_dump({"model": "tiny", "model_overrides": {
        "hidden": 64, "layers": 2, "action_space": "relative"}, "eval_every": 2, "eval_samples": 8}))
    assert main(["train", "--config", str(config_file), "--data", str(dataset), "--out", str(tmp_path / "run"),
                 "--steps", "2", "--batch-size", "8"]) == 0
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint["model_config"]["action_space"] == "relative"
    assert len(checkpoint["normalizer"]["relative_std"]) == 29
    chunk = make_policy("lda", checkpoint=str(tmp_path / "run/checkpoint.pt")).get_action(make_observation(size=64))
    assert all(np.isfinite(v).all() for v in chunk.values())


def test_the_proof_of_learning_trains_relative_chunks_in_a_run_folder_of_their_own(tmp_path, capsys):
    from model.prove_learning import main

    assert main(["--out", str(tmp_path), "--presets", "tiny", "--steps", "2", "--batch-size", "8", "--episodes", "5",
                 "--eval-samples", "12", "--action-space", "relative"]) == 1  # two steps do not beat holding still
    assert "relative action chunks" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "tiny-relative")["model_config"]["action_space"] == "relative"
    assert not (tmp_path / "tiny").exists()


@pytest.mark.slow  # about 2.5 minutes on one busy core
def test_tiny_trained_on_relative_chunks_beats_holding_the_last_action(tmp_path):
    from model.prove_learning import prove

    (row,) = [r for r in prove(tmp_path, presets=("tiny",), action_space="relative", echo=None)
              if r.objective == "policy"]
    assert row.trained < row.trivial < row.initial, row
