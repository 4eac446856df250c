"""The LeRobot reader and writer, the feature cache and the training samples with their data roles."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lda_bench.lerobot import LeRobotDataset, LeRobotWriter, find_datasets
from model_helpers import FIXTURE
from tasks.layout import ACTION_DIM, ACTION_DIMS

needs_fixture = pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"LeRobot v2.1 fixture not found at {FIXTURE}")


@needs_fixture
def test_reader_on_the_real_fixture_reads_what_is_present():
    dataset = LeRobotDataset.open(FIXTURE)
    assert dataset.fps == 30 and dataset.num_episodes == 4
    assert set(dataset.video_keys) == {"base_view", "base_view_2", "ego_view"}
    assert dataset.instruction(0) == "Move the shoe to the top of the cooking pot."
    assert dataset.quality(0) == "high"  # no label: a demonstration
    states = dataset.episode_states(0, ["joints", "gripper_width"])
    assert states["joints"].shape == (dataset.episode_length(0), 7) and states["gripper_width"].shape[1] == 6
    frames = dataset.episode_frames(0, "ego_view", size=32)
    assert frames.shape == (dataset.episode_length(0), 32, 32, 3) and frames.dtype == np.uint8
    assert 10 < frames.mean() < 245  # a picture, not a blank
    stats = dataset.key_stats("action", "joints")
    np.testing.assert_allclose(stats["mean"], dataset.episode_actions(0, ["joints"])["joints"].mean(0), atol=0.5)


@needs_fixture
def test_a_declared_camera_without_files_fails_only_when_asked_for():
    dataset = LeRobotDataset.open(FIXTURE)
    dataset.episode_frames(1, "video.ego_view", size=16)  # by column name too
    with pytest.raises(FileNotFoundError, match=r"camera 'base_view' is declared .* episode 2 is missing: .*"
                                                r"video\.base_view/episode_000002\.mp4 \(cameras present: \['ego_view'\]\)"):
        dataset.episode_frames(2, "base_view")
    with pytest.raises(KeyError, match=r"declares no camera 'wrist_view'"):
        dataset.episode_frames(0, "wrist_view")


def _copy_fixture(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(FIXTURE / "meta", copy / "meta")
    shutil.copytree(FIXTURE / "data", copy / "data")
    return copy


@needs_fixture
def test_missing_and_corrupt_files_are_named(tmp_path):
    copy = _copy_fixture(tmp_path)
    (copy / "data/chunk-000/episode_000001.parquet").unlink()
    (copy / "data/chunk-000/episode_000002.parquet").write_bytes(b"not parquet")
    (copy / "videos/chunk-000/video.ego_view").mkdir(parents=True)
    (copy / "videos/chunk-000/video.ego_view/episode_000000.mp4").write_bytes(b"\x00" * 64)
    dataset = LeRobotDataset.open(copy)
    with pytest.raises(FileNotFoundError, match="episode 1 of .* is missing: .*episode_000001.parquet"):
        dataset.episode_actions(1)
    with pytest.raises(ValueError, match="cannot read .*episode_000002.parquet"):
        dataset.episode_states(2)
    with pytest.raises(ValueError, match="cannot decode .*episode_000000.mp4"):
        dataset.episode_frames(0, "ego_view")
    (copy / "meta/episodes.jsonl").write_text('{"episode_index": 0\n')
    with pytest.raises(ValueError, match="episodes.jsonl line 1 is not valid JSON"):
        LeRobotDataset.open(copy)


def _gr1_episode(length: int, seed: int):
    rng = np.random.default_rng(seed)
    joints = np.cumsum(rng.normal(0, 0.01, (length + 1, ACTION_DIM)), axis=0)
    frames = rng.integers(0, 255, (length, 32, 32, 3), dtype=np.uint8)
    return joints[:-1], joints[1:], frames


def test_writer_round_trips_through_the_reader_in_gr00ts_per_task_layout(tmp_path):
    root = tmp_path / "gr00t"
    folder = root / "gr1_unified.PnPCanToDrawerClose_GR1ArmsAndWaistFourierHands_1000"
    writer = LeRobotWriter(folder, dict(ACTION_DIMS), fps=20)
    episodes = [_gr1_episode(12, 0), _gr1_episode(9, 1)]
    for i, (states, actions, frames) in enumerate(episodes):
        writer.add_episode(states, actions, {"ego_view": frames}, f"task {i}", quality=["high", "low"][i])
    writer.close()
    assert find_datasets(root) == [folder]
    dataset = LeRobotDataset.open(find_datasets(root)[0])
    assert dataset.name == "PnPCanToDrawerClose"
    assert dataset.action_keys == list(ACTION_DIMS) and dataset.state_keys == list(ACTION_DIMS)
    assert [dataset.quality(i) for i in range(2)] == ["high", "low"] and dataset.instruction(1) == "task 1"
    states, actions, frames = episodes[1]
    np.testing.assert_allclose(dataset.episode_actions(1)["left_hand"], actions[:, 14:20])
    np.testing.assert_allclose(dataset.episode_states(1)["waist"], states[:, 26:29])
    decoded = dataset.episode_frames(1)
    assert decoded.shape == frames.shape
    stats = json.loads((folder / "meta/stats.json").read_text())
    np.testing.assert_allclose(stats["action"]["mean"], np.concatenate([e[1] for e in episodes]).mean(0))
    # GR00T's episodes.jsonl may list labels beside the instruction: the annotation column decides
    lines = (folder / "meta/episodes.jsonl").read_text().splitlines()
    (folder / "meta/episodes.jsonl").write_text("".join(
        json.dumps({**json.loads(line), "tasks": ["valid", json.loads(line)["tasks"][0]]}) + "\n" for line in lines))
    assert LeRobotDataset.open(folder).instruction(1) == "task 1"
    with pytest.raises(FileNotFoundError, match="holds no LeRobot dataset"):
        find_datasets(tmp_path / "gr00t" / "gr1_unified.PnPCanToDrawerClose_GR1ArmsAndWaistFourierHands_1000" / "data")


torch = pytest.importorskip("torch")

from model.cache import FeatureCache  # noqa: E402
from model.config import FORECAST, POLICY, get_config  # noqa: E402
from model.data import (ROLES, LDASamples, Normalizer, collate, encode_episodes, load_episodes,  # noqa: E402
                        sample_frames, split_episodes, state_features, visual_sample, vlm_cache_id)
from model.encoders import DinoEncoder, VLMEncoder  # noqa: E402
from model.synthetic import make_dataset  # noqa: E402


@pytest.fixture(scope="module")
def encoders():
    return DinoEncoder.tiny(), VLMEncoder.tiny()


def test_tiny_encoders_give_patch_features_and_vlm_tokens(encoders):
    dino, vlm = encoders
    images = np.random.default_rng(0).integers(0, 255, (3, 48, 48, 3), dtype=np.uint8)
    features = dino.encode(images)  # resized to 64 px: a 4 x 4 grid, CLS and 4 registers dropped
    assert features.shape == (3, 16, 32)
    tokens, mask = vlm.encode(images, ["pick the can", "a much longer instruction than the first", "x"])
    assert tokens.shape[0] == 3 and tokens.shape[2] == 32 and mask.shape == tokens.shape[:2]
    assert mask.sum(1).tolist()[1] > mask.sum(1).tolist()[0] > mask.sum(1).tolist()[2]
    assert not any(p.requires_grad for p in dino.parameters()) and not dino.training
    assert dino.encoder_id == DinoEncoder.tiny().encoder_id != DinoEncoder.tiny(seed=1).encoder_id


def test_state_is_sin_cos_and_sample_indices_clamp_to_the_episode():
    joints = np.array([[0.0, np.pi / 2]])
    np.testing.assert_allclose(state_features(joints), [[0, 1, 1, 0]], atol=1e-7)
    config = get_config("tiny")
    at = sample_frames(config, t=3, length=20)
    assert at["history"].tolist() == [0, 3] and at["future"].tolist() == [19]
    assert at["chunk"].tolist() == list(range(3, 19)) and at["past"].tolist() == [1, 2]
    at = sample_frames(config, t=10, length=20)
    assert at["history"].tolist() == [2, 10] and at["future"].tolist() == [19]
    assert at["chunk"].tolist() == list(range(10, 20)) + [19] * 6 and at["past"].tolist() == [8, 9]


def test_samples_carry_their_roles_and_the_cache_encodes_each_frame_once(tmp_path, encoders):
    dino, vlm = encoders
    root = make_dataset(tmp_path / "synthetic", episodes=3, low=1, video=1, length=20)
    episodes = load_episodes([root])
    assert [e.quality for e in episodes] == ["high"] * 3 + ["low", "video"]
    assert episodes[-1].actions is None
    cache = FeatureCache(tmp_path / "cache")
    calls = []
    counting = lambda images: calls.append(len(images)) or DinoEncoder.encode(dino, images)  # noqa: E731
    dino.encode = counting
    try:
        encode_episodes(episodes, cache, dino, vlm, vlm_stride=8)
        encode_episodes(episodes, cache, dino, vlm, vlm_stride=8)  # everything cached: nothing encoded again
    finally:
        del dino.encode
    assert sum(calls) == 5 * 20
    assert cache.read(episodes[0].dataset, vlm_cache_id(vlm.encoder_id, 8), 0, "mask").shape[0] == 3  # frames 0, 8, 16
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    normalizer = Normalizer.fit(episodes, visual_sample(episodes, cache, dino.encoder_id))
    np.testing.assert_allclose(normalizer.action_mean, json.loads((root / "meta/stats.json").read_text())["action"]["mean"],
                               rtol=1e-5, atol=1e-6)  # from meta/stats.json
    samples = LDASamples(episodes, get_config("tiny"), cache, dino.encoder_id, vlm.encoder_id, normalizer)
    assert len(samples) == 100
    high, low, video = samples[5], samples[65], samples[85]
    assert high["roles"].tolist() == [True] * 4
    assert low["roles"].tolist() == ROLES["low"].tolist() and not low["roles"][POLICY]
    assert video["roles"].tolist() == [k == FORECAST for k in range(4)] and not video["has_actions"]
    batch = collate([high, low, video])
    assert batch["obs"].shape == (3, 2, 16, 32) and batch["actions"].shape == (3, 16, 29)
    assert batch["vlm_mask"].sum(1).tolist() == [s["vlm"].shape[0] for s in (high, low, video)]
    expected = normalizer.actions(episodes[0].actions[list(range(5, 20)) + [19]])  # the robot holds after the end
    np.testing.assert_allclose(batch["actions"][0].numpy(), expected, rtol=1e-5)
    train, held = split_episodes(episodes, 0.34, seed=0)
    assert len(held) == 1 and held[0].actions is not None and len(train) == 4
