"""The record store: JSON layout, concurrent writers, killed writers, duplicates, protocol guard, seeds."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from lda_bench.records import (SUITE_VERSION, EpisodeRecord, EvalProtocol, ProtocolMismatchError, RecordStore,
                               SeedManifest)

PROTOCOL = EvalProtocol(max_steps=720, action_steps=8, image_size=224)


def make_record(trial: int = 0, **changes) -> EpisodeRecord:
    record = EpisodeRecord(policy="random", policy_args={"seed": 3, "chunk": 8}, task="PnP Can To Drawer Close",
                           trial=trial, seed=trial, success=True, first_success_step=17, steps=17, wall_time_s=1.5,
                           error=None, instruction="pick up the can, place it into the drawer and close the drawer",
                           protocol={"max_steps": 720, "action_steps": 8, "image_size": 224, "suite": SUITE_VERSION},
                           finished_at=1000.0 + trial, object="can")
    return replace(record, **changes)


def test_a_record_is_one_json_line_and_reads_back_equal(tmp_path):
    store = RecordStore(tmp_path)
    record = make_record(error="ValueError: boom\nTraceback ...")
    store.append(record)
    store.close()
    files = list((tmp_path / "records").glob("*.jsonl"))
    assert len(files) == 1
    lines = files[0].read_text().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert list(data) == ["policy", "policy_args", "task", "trial", "seed", "success", "first_success_step", "steps",
                          "wall_time_s", "error", "instruction", "protocol", "finished_at", "object", "object_instance",
                          "scene_redraws"]
    assert data["protocol"] == {"max_steps": 720, "action_steps": 8, "image_size": 224, "suite": SUITE_VERSION}
    assert RecordStore(tmp_path).read() == [record]


def test_records_written_before_the_object_field_still_read(tmp_path):
    store = RecordStore(tmp_path)
    store.append(make_record())
    store.close()
    path = next((tmp_path / "records").glob("*.jsonl"))
    data = json.loads(path.read_text())
    for key in ("object", "object_instance", "scene_redraws"):
        del data[key]
    path.write_text(json.dumps(data) + "\n")
    assert RecordStore(tmp_path).read() == [make_record(object=None)]


def test_the_key_ignores_the_order_policy_args_were_given_in():
    a = make_record(policy_args={"seed": 3, "chunk": 8})
    b = make_record(policy_args={"chunk": 8, "seed": 3})
    assert a.key == b.key
    assert a.key != make_record(policy_args={"seed": 4, "chunk": 8}).key


def test_each_writer_has_its_own_file(tmp_path):
    first, second = RecordStore(tmp_path), RecordStore(tmp_path)
    first.append(make_record(0))
    second.append(make_record(1))
    first.append(make_record(2))
    assert len(list((tmp_path / "records").glob("*.jsonl"))) == 2
    assert [r.trial for r in RecordStore(tmp_path).read()] == [0, 1, 2]


def test_a_truncated_last_line_is_skipped_and_the_other_records_kept(tmp_path):
    store = RecordStore(tmp_path)
    for trial in range(3):
        store.append(make_record(trial))
    store.close()
    path = next((tmp_path / "records").glob("*.jsonl"))
    with open(path, "a") as f:  # a writer killed in the middle of its fourth record
        f.write(make_record(3).to_json()[:40])
    other = RecordStore(tmp_path)
    other.append(make_record(4))
    assert [r.trial for r in other.read()] == [0, 1, 2, 4]


def test_a_damaged_line_before_the_end_is_reported(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "w.jsonl").write_text(make_record(0).to_json() + "\n{oops\n" + make_record(1).to_json() + "\n")
    with pytest.raises(ValueError, match=r"w.jsonl:2 is not an episode record"):
        RecordStore(tmp_path).read()


def test_duplicates_across_writer_files_count_once_and_the_earliest_wins(tmp_path):
    late = RecordStore(tmp_path)
    late.append(make_record(0, success=False, finished_at=2000.0))
    early = RecordStore(tmp_path)
    early.append(make_record(0, success=True, finished_at=1000.0))
    early.append(make_record(1))
    records = RecordStore(tmp_path).read()
    assert [(r.trial, r.success) for r in records] == [(0, True), (1, True)]


def test_the_first_run_fixes_the_protocol_and_the_same_one_is_accepted_again(tmp_path):
    RecordStore(tmp_path).claim(PROTOCOL, "random", {"seed": 1})
    RecordStore(tmp_path).claim(PROTOCOL, "random", {"seed": 1})
    held = json.loads((tmp_path / "protocol.json").read_text())
    assert held == {"max_steps": 720, "action_steps": 8, "image_size": 224, "image_variant": "bg_crop_pad",
                    "scene_split": "eval", "instances": "A", "suite": SUITE_VERSION, "serving": None,
                    "policy": "random", "policy_args": {"seed": 1}}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"


def test_a_served_run_joins_a_folder_of_per_worker_episodes(tmp_path):
    """Serving changes how actions are computed, not what is measured: the folder takes both."""
    RecordStore(tmp_path).claim(PROTOCOL, "random", {"seed": 1})
    RecordStore(tmp_path).claim(replace(PROTOCOL, serving={"batch_window_ms": 5.0, "device": None}), "random",
                                {"seed": 1})


@pytest.mark.parametrize("protocol, policy, args, named", [
    (replace(PROTOCOL, max_steps=300), "random", {"seed": 1}, "max_steps 720 there, 300 here"),
    (replace(PROTOCOL, action_steps=12), "random", {"seed": 1}, "action_steps 8 there, 12 here"),
    (PROTOCOL, "hold", {"seed": 1}, "policy 'random' there, 'hold' here"),
    (PROTOCOL, "random", {"seed": 2}, "policy_args {'seed': 1} there, {'seed': 2} here"),
])
def test_a_run_of_another_protocol_is_refused_naming_what_differs(tmp_path, protocol, policy, args, named):
    RecordStore(tmp_path).claim(PROTOCOL, "random", {"seed": 1})
    with pytest.raises(ProtocolMismatchError) as error:
        RecordStore(tmp_path).claim(protocol, policy, args)
    assert named in str(error.value) and "never mixed" in str(error.value)
    assert str(error.value).count(" there, ") == 1


def test_trial_i_starts_from_scene_seed_i_and_the_rule_is_written_down(tmp_path):
    manifest = SeedManifest()
    assert [manifest.seed("PnP Can To Drawer Close", i) for i in range(3)] == [0, 1, 2]
    assert manifest.seed("PnP Novel From Plate To Bowl", 7) == 7
    manifest.write(tmp_path)
    manifest.write(tmp_path)  # a second writer finds it there
    assert json.loads((tmp_path / "seeds.json").read_text())["scene_seed"] == "trial index"
