"""Demonstration datasets: written in GR00T's LeRobot v2.1 layout, read back by the shared reader,
resumable after a kill, checked by `validate`, shown by `show`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lda_bench.cli import main
from lda_bench.demos import SpoiledExpert, generate, is_low_quality, show, validate
from lda_bench.lerobot import LeRobotDataset
from tasks.layout import ACTION_DIM

TASK = "PnP Novel From Tray To Pot"
SETTINGS = {"image_size": 64, "max_steps": 60, "progress": False}


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    (root,) = generate(TASK, 3, tmp_path_factory.mktemp("demos"), workers=2, low_quality_fraction=0.5, **SETTINGS)
    return root


def test_dataset_has_gr00t_layout_and_validates(dataset_root):
    assert dataset_root.name == "gr1_unified.PosttrainPnPNovelFromTrayToPotSplitA_GR1ArmsAndWaistFourierHands_3"
    info = json.loads((dataset_root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v2.1" and info["fps"] == 20 and info["total_episodes"] == 3
    assert info["features"]["video.ego_view"]["shape"] == [64, 64, 3]
    for name in ("modality.json", "stats.json", "episodes.jsonl", "tasks.jsonl", "episodes_stats.jsonl"):
        assert (dataset_root / "meta" / name).is_file()
    assert len((dataset_root / "meta/episodes_stats.jsonl").read_text().splitlines()) == 3
    assert validate(dataset_root) == [f"{dataset_root.name}: ok, 3 episodes, {info['total_frames']} frames"]


def test_reader_reads_episodes_back(dataset_root):
    dataset = LeRobotDataset.open(dataset_root)
    assert dataset.action_keys == ["left_arm", "right_arm", "left_hand", "right_hand", "waist"]
    for index in range(3):
        row = dataset.episode(index)
        actions, states = dataset.episode_actions(index), dataset.episode_states(index)
        assert actions["right_arm"].shape == (row["length"], 7) and states["waist"].shape == (row["length"], 3)
        assert sum(a.shape[1] for a in actions.values()) == ACTION_DIM
        assert dataset.episode_frames(index).shape == (row["length"], 64, 64, 3)
        assert row["seed"] == index
        low = is_low_quality(index, 0.5)
        assert dataset.quality(index) == ("high" if row["success"] and not low else "low")
        assert bool(row["spoilers"]) == low
        assert dataset.instruction(index) == row["tasks"][0]


def test_simulator_state_is_recorded_beside_each_frame_and_matches_the_scene(dataset_root):
    from tasks.env import ENVIRONMENT_STATE, GR1TabletopEnv

    dataset = LeRobotDataset.open(dataset_root)
    info = json.loads((dataset_root / "meta/info.json").read_text())
    assert info["features"]["observation.environment_state"]["shape"] == [len(ENVIRONMENT_STATE)]
    env = GR1TabletopEnv(TASK, image_size=64, scene_split="train")
    try:
        for index in range(3):
            state = dataset.episode_environment(index)
            assert state.shape == (dataset.episode_length(index), len(ENVIRONMENT_STATE))
            _, reset = env.reset(seed=dataset.episode(index)["seed"])
            named = dict(zip(ENVIRONMENT_STATE, state[0]))
            # the first frame shows the object where the scene put it, and the target container, as seen from the
            # robot's base (which the novel tasks jitter)
            base = np.asarray(reset["scene"]["robot_base"][:2])
            assert np.allclose([named["object_x"], named["object_y"]], np.subtract(reset["scene"]["object_pose"][:2], base),
                               atol=0.02)
            assert np.allclose([named["target_x"], named["target_y"]], np.subtract(reset["scene"]["target_pose"][:2], base),
                               atol=0.02)
            assert np.allclose(state[0], env.environment_state(), atol=1e-4)
            # the hands move over the episode: the state is read every frame, not once
            assert np.ptp(state[:, ENVIRONMENT_STATE.index("right_hand_z")]) > 0.01 or \
                np.ptp(state[:, ENVIRONMENT_STATE.index("left_hand_z")]) > 0.01
    finally:
        env.close()


def test_low_quality_fraction_is_drawn_from_the_seed():
    labels = [is_low_quality(seed, 0.2) for seed in range(2000)]
    assert 0.17 < np.mean(labels) < 0.23
    assert labels == [is_low_quality(seed, 0.2) for seed in range(2000)]
    assert not any(is_low_quality(seed, 0.0) for seed in range(100))


def test_spoiled_expert_pauses_and_perturbs():
    class Steady:
        def reset(self, task, instruction):
            pass

        def get_action(self, obs):
            return {f"action.{k}": np.zeros((8, d)) for k, d in (("left_arm", 7), ("right_arm", 7), ("waist", 3))}

    spoiled = SpoiledExpert(Steady(), np.random.default_rng(0))
    spoiled.spoilers = {"pause", "noise"}
    spoiled.reset("task", "instruction")
    chunks = [spoiled.get_action({}) for _ in range(30)]
    assert sum(len(c["action.right_arm"]) for c in chunks) > 30 * 8  # pauses add steps
    assert all(np.any(c["action.right_arm"] != 0) and np.all(c["action.waist"] == 0) for c in chunks)


def test_resume_regenerates_only_what_a_kill_left_unfinished(tmp_path):
    (root,) = generate(TASK, 2, tmp_path, **SETTINGS)
    first = (root / "data/chunk-000/episode_000000.parquet").stat().st_mtime_ns
    # As a kill during episode 1 leaves it: its parquet not yet renamed into place, its line cut short.
    (root / "data/chunk-000/episode_000001.parquet").unlink()
    lines = (root / "meta/episodes.jsonl").read_text().splitlines()
    (root / "meta/episodes.jsonl").write_text(lines[0] + "\n" + lines[1][:20])
    with pytest.raises(ValueError, match="episodes.jsonl line 2 is not valid JSON"):
        validate(root)
    generate(TASK, 2, tmp_path, **SETTINGS)
    assert (root / "data/chunk-000/episode_000000.parquet").stat().st_mtime_ns == first
    assert [json.loads(line)["episode_index"] for line in (root / "meta/episodes.jsonl").read_text().splitlines()] == [0, 1]
    validate(root)


def test_validate_names_a_missing_video(dataset_root, tmp_path, capsys):
    import shutil

    copy = tmp_path / dataset_root.name
    shutil.copytree(dataset_root, copy)
    (copy / "videos/chunk-000/video.ego_view/episode_000002.mp4").unlink()
    with pytest.raises(ValueError, match=r"episode 2: camera 'ego_view' .* missing: .*episode_000002.mp4"):
        validate(copy)
    assert main(["demos", "validate", str(copy)]) == 2
    assert "episode_000002.mp4" in capsys.readouterr().err


def test_show_writes_png_and_mp4(dataset_root, tmp_path):
    from PIL import Image

    sheet = show(dataset_root, 1, tmp_path / "sheet.png")
    assert Image.open(sheet).size == (6 * 64, 2 * 64)
    assert show(dataset_root, 1, tmp_path / "episode.mp4").stat().st_size > 0


class _BreaksAfter:
    """The scripted expert, raising once it has produced `calls` chunks (a bug or IK failure mid-episode)."""

    def __init__(self, calls: int):
        from policies.scripted import ScriptedExpert

        self.expert, self.calls = ScriptedExpert(), calls

    def bind_env(self, env):
        self.expert.bind_env(env)

    def reset(self, task, instruction):
        self.expert.reset(task, instruction)

    def get_action(self, obs):
        self.calls -= 1
        if self.calls < 0:
            raise FloatingPointError("IK diverged")
        return self.expert.get_action(obs)


def test_an_episode_broken_off_mid_way_is_kept_as_a_labelled_failure(tmp_path):
    from lda_bench.demos import DemoSettings, _writer, record_episode
    from tasks.env import GR1TabletopEnv

    env = GR1TabletopEnv(TASK, image_size=64)
    writer = _writer(tmp_path / "ds", TASK)
    settings = DemoSettings(str(tmp_path), 1, 0.0, 0, 64, 60)
    row = record_episode(env, writer, 0, settings, policy=_BreaksAfter(3))
    env.close()
    assert row["success"] is False and row["quality"] == "low" and row["length"] == 3 * 8
    assert "FloatingPointError: IK diverged" in row["error"]
    writer.episodes = [row]
    writer.close()
    validate(tmp_path / "ds")
    assert len(LeRobotDataset.open(tmp_path / "ds").episode_actions(0)["left_arm"]) == 3 * 8


REPLAY_TASK = "PnP Can To Drawer Close"  # the expert closes the drawer in about 400 steps


@pytest.fixture(scope="module")
def merged_root(tmp_path_factory):
    """Two episodes recorded as two shards (as `experiment run` records them), merged into one dataset."""
    from lda_bench.demos import dataset_folder, merge

    out = tmp_path_factory.mktemp("replay")
    shards = [generate(REPLAY_TASK, 2, out / f"shard{i}", indices=range(i, i + 1), low_quality_fraction=0.0,
                       image_size=64, max_steps=400, progress=False)[0] for i in range(2)]
    return merge(shards, out / dataset_folder(REPLAY_TASK, 2), REPLAY_TASK)


def test_shards_merge_into_one_dataset(merged_root):
    assert validate(merged_root) == [f"{merged_root.name}: ok, 2 episodes, "
                                     f"{json.loads((merged_root / 'meta/info.json').read_text())['total_frames']} frames"]
    dataset = LeRobotDataset.open(merged_root)
    assert [dataset.episode(i)["seed"] for i in range(2)] == [0, 1]
    assert [dataset.episode(i)["scene_split"] for i in range(2)] == ["train", "train"]


def test_replay_reproduces_recorded_success(merged_root, capsys):
    from lda_bench.demos import replay

    results = replay(merged_root)
    assert [(r.episode, r.reproduces) for r in results] == [(0, True), (1, True)]
    assert any(r.recorded for r in results), "the test needs a recorded success: raise max_steps"
    assert main(["demos", "replay", str(merged_root.parent), "--episodes", "1"]) == 0
    assert "1 of 1 episodes reproduce their recorded success" in capsys.readouterr().out


def test_replay_of_tampered_actions_does_not_reproduce(merged_root, tmp_path):
    import shutil

    import pandas as pd

    from lda_bench.demos import replay

    copy = tmp_path / merged_root.name
    shutil.copytree(merged_root, copy)
    dataset = LeRobotDataset.open(copy)
    succeeded = next(i for i in range(2) if dataset.episode(i)["success"])
    path = dataset.episode_path(succeeded)
    table = pd.read_parquet(path)
    table["action"] = [table["action"][0]] * len(table)  # the first action held throughout
    table.to_parquet(path)
    result = replay(copy)[succeeded]
    assert result.recorded and not result.replayed and not result.reproduces


def test_replay_needs_the_scene_split(merged_root, tmp_path):
    import shutil

    from lda_bench.demos import replay

    copy = tmp_path / merged_root.name
    shutil.copytree(merged_root, copy)
    rows = [json.loads(line) for line in (copy / "meta/episodes.jsonl").read_text().splitlines()]
    (copy / "meta/episodes.jsonl").write_text("".join(json.dumps({k: v for k, v in row.items() if k != "scene_split"}) + "\n"
                                                      for row in rows))
    with pytest.raises(ValueError, match=r"episode 0 has no field\(s\) \['scene_split'\]"):
        replay(copy)
