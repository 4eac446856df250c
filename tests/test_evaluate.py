"""Evaluations: resuming, failing episodes that do not stop the run, and results independent of workers."""

from __future__ import annotations

import re
import threading

import pytest

import lda_bench.policy as policy_module
from lda_bench.evaluate import evaluate
from lda_bench.policy import available_policies, make_policy
from lda_bench.records import RecordStore
from lda_bench.rollout import run_episode
from policies.basic import HoldPolicy
from tasks.sampling import sample_scene
from tasks.specs import get_task

TASK = "PnP Can To Drawer Close"


def outcomes(run_dir) -> dict:
    """What must not depend on how the trials were run, per record key."""
    return {r.key: (r.seed, r.instruction, r.success, r.steps, r.first_success_step, r.error)
            for r in RecordStore(run_dir).read()}


def record_lines(run_dir) -> int:
    return sum(len(path.read_text().splitlines()) for path in (run_dir / "records").glob("*.jsonl"))


def test_a_second_run_only_runs_the_trials_not_yet_recorded(tmp_path, capsys):
    first = evaluate("hold", tasks=[TASK], trials=2, max_steps=10, out=tmp_path, progress=False)
    assert first.episodes_run == 2
    more = evaluate("hold", tasks=[TASK], trials=3, max_steps=10, out=tmp_path, progress=False)
    assert more.episodes_run == 1
    again = evaluate("hold", tasks=[TASK], trials=3, max_steps=10, out=tmp_path, progress=False)
    assert again.episodes_run == 0
    assert record_lines(tmp_path) == 3
    row = again.rows[0]
    assert (row.task, row.done, row.total, row.successes, row.errors, row.rate) == (TASK, 3, 3, 0, 0, 0.0)
    printed = capsys.readouterr().out
    assert re.search(rf"^{TASK} +3/3 +0 +0\.0 +0$", printed, re.MULTILINE), printed


@pytest.fixture
def misbehaving(monkeypatch):
    """Registers `misbehaving`, a hold policy whose 2nd episode raises and whose 3rd hangs (this test only)."""
    available_policies()
    monkeypatch.setattr(policy_module, "_registry", dict(policy_module._registry))
    release = threading.Event()

    class Misbehaving(HoldPolicy):
        episodes = instances = 0

        def __init__(self):
            Misbehaving.instances += 1

        def reset(self, task, instruction):
            Misbehaving.episodes += 1
            self.episode = Misbehaving.episodes

        def get_action(self, obs):
            if self.episode == 2:
                raise RuntimeError("episode 2 breaks")
            if self.episode == 3:
                release.wait(30)
            return super().get_action(obs)

    policy_module.register_policy("misbehaving", "fails now and then")(Misbehaving)
    yield Misbehaving
    release.set()


def test_failing_episodes_are_recorded_with_their_errors_and_the_run_goes_on(tmp_path, misbehaving):
    summary = evaluate("misbehaving", tasks=[TASK], trials=4, max_steps=8, out=tmp_path, progress=False,
                       policy_timeout_s=0.5)
    errors = {r.trial: r.error and r.error.splitlines()[0] for r in RecordStore(tmp_path).read()}
    assert errors[0] is None and errors[3] is None
    assert errors[1] == "RuntimeError: episode 2 breaks"
    assert errors[2].startswith("TimeoutError: the policy did not answer within 0.5 s")
    assert misbehaving.instances == 2, "the policy that timed out was not replaced"
    row = summary.rows[0]
    assert (row.done, row.errors, row.successes) == (4, 2, 0)
    assert f"error: {TASK} trial 1: RuntimeError: episode 2 breaks" in summary.table()


@pytest.mark.parametrize("policy, args", [("hold", {}), ("random", {"seed": "7", "scale": "0.3"})])
def test_one_and_two_workers_record_the_same_episodes_as_a_single_fresh_run(tmp_path, task_env, policy, args):
    novel = "PnP Novel From Plate To Bowl"  # the object, and so the instruction, is drawn per trial
    settings = dict(tasks=[novel], trials=3, max_steps=20, action_steps=8, progress=False)
    evaluate(policy, args, workers=1, out=tmp_path / "one", **settings)
    evaluate(policy, args, workers=2, out=tmp_path / "two", **settings)
    one, two = outcomes(tmp_path / "one"), outcomes(tmp_path / "two")
    assert len(one) == 3 and one == two
    spec = get_task(novel)
    drawn = [spec.language(sample_scene(spec, trial).object) for trial in range(3)]
    assert [one[key][1] for key in sorted(one, key=lambda key: key[3])] == drawn, "trial i is evaluation scene i"
    fresh = run_episode(task_env(novel), make_policy(policy, **args), get_task(novel), 2, 2, 8, 20,
                        policy_name=policy, policy_args=args)
    assert one[fresh.key] == (fresh.seed, fresh.instruction, fresh.success, fresh.steps, fresh.first_success_step,
                              fresh.error)


def test_bad_settings_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="trials must be a positive integer"):
        evaluate("hold", tasks=[TASK], trials=0, out=tmp_path)
    with pytest.raises(ValueError, match="policy_timeout_s must be a positive"):
        evaluate("hold", tasks=[TASK], policy_timeout_s=0, out=tmp_path)
    assert not (tmp_path / "protocol.json").exists()
    with pytest.raises(ValueError, match="instances must be one of"):
        evaluate("hold", tasks=[TASK], instances="C", out=tmp_path)
    with pytest.raises(ValueError, match="image variant must be one of"):
        evaluate("hold", tasks=[TASK], image_variant="crop", out=tmp_path)
    assert not (tmp_path / "protocol.json").exists()


def test_a_generalisation_run_draws_the_held_out_instances_in_its_workers(tmp_path):
    """`instances="B"` reaches the worker's environment: the records say so, and a folder of split A refuses it."""
    novel = "PnP Novel From Tray To Pot"
    evaluate("hold", tasks=[novel], trials=2, max_steps=4, workers=2, out=tmp_path, progress=False, instances="B")
    records = RecordStore(tmp_path).read()
    assert len(records) == 2 and {r.protocol["instances"] for r in records} == {"B"}
    assert {r.protocol["image_variant"] for r in records} == {"bg_crop_pad"}
    with pytest.raises(ValueError, match="instances"):
        evaluate("hold", tasks=[novel], trials=2, max_steps=4, out=tmp_path, progress=False)
