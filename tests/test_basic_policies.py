"""The model-free baselines: random, hold, and replay of a LeRobot v2.1 episode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lda_bench.policy import CHUNK_KEYS, STATE_KEYS, make_policy, validate_chunk
from policies.basic import LeRobotDataset
from policy_helpers import INSTRUCTION, make_observation
from tasks.layout import ACTION_DIMS, HAND_RANGE

FIXTURE = Path(__file__).parents[2] / "shared/fixtures/lerobot_v21_sim_pick_place"
needs_fixture = pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"LeRobot v2.1 fixture not found at {FIXTURE}")


def write_gr1_dataset(root: Path, actions: np.ndarray, keys: dict[str, tuple[int, int]]) -> Path:
    """A one-episode LeRobot v2.1 dataset in GR00T's layout: one `action` column, sliced per key."""
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps({
        "codebase_version": "v2.1", "total_episodes": 1, "chunks_size": 1000,
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"}))
    (root / "meta/modality.json").write_text(json.dumps({
        "action": {key: {"start": start, "end": end} for key, (start, end) in keys.items()}}))
    (root / "data/chunk-000").mkdir(parents=True)
    pd.DataFrame({"action": list(actions)}).to_parquet(root / "data/chunk-000/episode_000000.parquet")
    return root


# Both arms and both hands, no waist: the waist must hold its state.
GR1_KEYS = {"left_arm": (0, 7), "right_arm": (7, 14), "left_hand": (14, 20), "right_hand": (20, 26)}


def test_random_stays_within_its_bounds():
    policy = make_policy("random", seed=1, scale=0.05)
    obs = make_observation()
    chunk = validate_chunk(policy.get_action(obs))
    for part in ("left_arm", "right_arm", "waist"):
        assert chunk[CHUNK_KEYS[part]].shape == (8, ACTION_DIMS[part])
        assert np.abs(chunk[CHUNK_KEYS[part]] - obs[STATE_KEYS[part]]).max() <= 0.05
    for part in ("left_hand", "right_hand"):
        assert HAND_RANGE[0] <= chunk[CHUNK_KEYS[part]].min() and chunk[CHUNK_KEYS[part]].max() <= HAND_RANGE[1]


def test_random_is_reproducible_from_seed_and_reset():
    def same(a, b):
        return a.keys() == b.keys() and all(np.array_equal(a[key], b[key]) for key in a)

    obs = make_observation()
    first, second = make_policy("random", seed=7, chunk=3), make_policy("random", seed=7, chunk=3)
    episode = [first.get_action(obs), first.get_action(obs)]
    assert not same(episode[0], episode[1])
    assert same(second.get_action(obs), episode[0]) and same(second.get_action(obs), episode[1])
    first.reset("task", INSTRUCTION)
    assert same(first.get_action(obs), episode[0])
    assert not same(make_policy("random", seed=8, chunk=3).get_action(obs), episode[0])


def test_hold_targets_the_current_joints():
    obs = make_observation(seed=3)
    chunk = validate_chunk(make_policy("hold").get_action(obs))
    for part, key in STATE_KEYS.items():
        np.testing.assert_array_equal(chunk[CHUNK_KEYS[part]], obs[key][None])


def test_replay_plays_the_episode_in_chunks_then_holds_its_last_action(tmp_path):
    actions = np.arange(10 * 26, dtype=np.float64).reshape(10, 26) / 100
    dataset = write_gr1_dataset(tmp_path / "gr1", actions, GR1_KEYS)
    policy = make_policy("replay", dataset=str(dataset), chunk="4")
    obs = make_observation()
    policy.reset("task", INSTRUCTION)
    chunks = [validate_chunk(policy.get_action(obs)) for _ in range(4)]
    for chunk, frames in zip(chunks, ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 9, 9], [9, 9, 9, 9])):
        np.testing.assert_array_equal(chunk["action.left_arm"], actions[frames, 0:7])
        np.testing.assert_array_equal(chunk["action.right_hand"], actions[frames, 20:26])
        np.testing.assert_array_equal(chunk["action.waist"], np.repeat(obs["state.waist"][None], 4, axis=0))
    policy.reset("task", INSTRUCTION)
    np.testing.assert_array_equal(policy.get_action(obs)["action.left_arm"], actions[0:4, 0:7])


def test_replay_rejects_a_key_with_the_wrong_width(tmp_path):
    dataset = write_gr1_dataset(tmp_path / "gr1", np.zeros((3, 6)), {"left_arm": (0, 6)})
    with pytest.raises(ValueError, match="'left_arm' has 6 values per frame; GR1's left_arm has 7"):
        make_policy("replay", dataset=dataset)


def test_dataset_errors_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta/info.json is missing"):
        LeRobotDataset.open(tmp_path)
    dataset = LeRobotDataset.open(write_gr1_dataset(tmp_path / "gr1", np.zeros((3, 26)), GR1_KEYS))
    with pytest.raises(IndexError, match="has episodes 0..0; asked for 1"):
        dataset.episode_actions(1)


@needs_fixture
def test_reader_exposes_the_action_keys_of_a_real_dataset():
    dataset = LeRobotDataset.open(FIXTURE)
    assert dataset.num_episodes == 4
    assert dataset.action_keys[:3] == ["joints", "gripper_width", "gripper_close"]
    assert len(dataset.action_keys) == 16
    lengths = [json.loads(line)["length"] for line in (FIXTURE / "meta/episodes.jsonl").read_text().splitlines()]
    for episode in (0, 3):
        actions = dataset.episode_actions(episode, ["joints", "gripper_close"])
        assert actions["joints"].shape == (lengths[episode], 7)
        assert actions["gripper_close"].shape == (lengths[episode], 1)
    # The Franka starts from its home pose: elbow at -3/4 pi, wrist at pi/2.
    first = dataset.episode_actions(0, ["joints"])["joints"][0]
    np.testing.assert_allclose(first[[3, 5]], [-0.75 * np.pi, 0.5 * np.pi], atol=1e-3)


@needs_fixture
def test_replay_of_a_dataset_without_gr1_keys_says_so():
    with pytest.raises(ValueError, match=r"action keys \['joints', .*none of which GR1 has \(left_arm, "):
        make_policy("replay", dataset=str(FIXTURE))
