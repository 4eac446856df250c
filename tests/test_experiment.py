"""Experiments: one YAML file runs demonstrations, training, evaluation and report, skipping what is done;
a bad file is refused with the key at fault named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lda_bench.cli import main
from lda_bench.experiment import claim, experiment_status, load_experiment
from lda_bench.lerobot import LeRobotDataset
from lda_bench.records import RecordStore

SMOKE = Path(__file__).resolve().parent.parent / "experiments" / "smoke.yaml"


def _outputs(out: Path) -> dict[Path, int]:
    """Every file the stages write (not submitit's logs), with its modification time."""
    return {path: path.stat().st_mtime_ns for path in out.rglob("*")
            if path.is_file() and "submitit" not in path.parts}


def test_smoke_experiment_runs_end_to_end_and_then_has_nothing_to_redo(tmp_path, capsys):
    out = tmp_path / "smoke"
    assert main(["experiment", "run", str(SMOKE), "--out", str(out)]) == 0
    (dataset,) = (out / "demos").glob("gr1_unified.*")
    assert LeRobotDataset.open(dataset).num_episodes == 2 and not (out / "demos/shards").exists()
    assert (out / "train/tiny/checkpoint.pt").is_file()
    assert sorted(p.name for p in (out / "train/tiny/checkpoints").iterdir()) == ["step-000005.pt", "step-000010.pt"]
    # the policy read the encoder pretrained on the demonstrations, and carries its weights
    from model.encoders import DinoEncoder
    from model.train import load_checkpoint

    checkpoint = load_checkpoint(out / "train/tiny")
    encoder = DinoEncoder.from_pretrained(str(out / "encoder"))
    assert checkpoint["encoder_state"]["dino"].keys() == encoder.state_dict().keys()
    assert all(checkpoint["encoder_state"]["dino"][k].equal(v) for k, v in encoder.state_dict().items())
    policies = {}
    for folder in (out / "eval").iterdir():
        if (folder / "protocol.json").is_file():
            records = RecordStore(folder).read()
            policies[records[0].policy] = len(records)
    assert policies == {"lda": 2, "hold": 2}
    assert "| hold | lda |" in (out / "report.md").read_text() and (out / "report.html").is_file()
    assert [(row.stage, row.state) for row in experiment_status(out)] == [
        ("demonstrations", "done"), ("encoder", "done"), ("training", "done"), ("evaluation", "done"),
        ("report", "done")]

    written = _outputs(out)
    capsys.readouterr()
    assert main(["experiment", "run", str(SMOKE), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"experiment done: {out}\n"
    assert _outputs(out) == written

    changed = tmp_path / "changed.yaml"
    changed.write_text(SMOKE.read_text().replace("trials: 2", "trials: 3"))
    assert main(["experiment", "run", str(changed), "--out", str(out)]) == 2
    assert "holds an experiment made from another file: it differs in trials" in capsys.readouterr().err


def test_status_of_a_new_experiment_folder(tmp_path, capsys):
    claim(load_experiment(SMOKE), tmp_path)
    assert [row.state for row in experiment_status(tmp_path)] == ["not started"] * 5
    assert main(["experiment", "status", str(tmp_path)]) == 0
    assert "demonstrations  not started  0/2 episodes: PnP Can To Drawer Close 0/2" in capsys.readouterr().out


def _variant(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(SMOKE.read_text())
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(trails=3), r"unknown key 'trails' \(did you mean 'trials'\?\); the experiment may set tasks"),
    (lambda d: d["train"][0].update(stepz=3), r"unknown key 'train\[0\].stepz' \(did you mean 'steps'\?\)"),
    (lambda d: d["train"][0].pop("preset"), r"train\[0\] lacks 'train\[0\].preset'"),
    (lambda d: d["demos"].update(episodes=0), r"demos.episodes must be a whole number >= 1, got 0"),
    (lambda d: d["demos"].update(low_quality_fraction=1.5), r"low_quality_fraction must be a fraction between 0 and 1"),
    (lambda d: d.update(tasks="PnP Can To Drawer Close"), r"tasks must be a list of task names or families"),
    (lambda d: d.update(tasks=["PnP Can To Drawer Clsoe"]), r"tasks: unknown task 'PnP Can To Drawer Clsoe'"),
    (lambda d: d["train"][0].update(preset="huge"), r"train\[0\].preset: .*huge"),
    (lambda d: d["evaluate"].append({"policy": "holdd"}), r"evaluate\[1\].policy: .*holdd"),
    (lambda d: d.update(executor="cluster"), r"executor must be one of local, slurm, debug, got 'cluster'"),
    (lambda d: d.update(executor="slurm"), r"executor slurm needs profile"),
    (lambda d: d.update(profile="nowhere.yaml"), r"cluster profile nowhere.yaml not found"),
    (lambda d: d["train"].append(dict(d["train"][0])), r"train\[1\].name 'tiny' is given twice"),
    (lambda d: d["train"][0].update(preset="tiny"), r"train\[0\].preset 'tiny' reads 64-pixel images; the encoder is "
                                                    r"pretrained at 96"),
    (lambda d: d["encoder"].update(stepz=3), r"unknown key 'encoder.stepz'"),
    (lambda d: d["train"][0].update(model_overrides="relative"), r"train\[0\].model_overrides must be a mapping of "
                                                                 r"model configuration fields"),
    (lambda d: d["train"][0].update(model_overrides={"action_space": "delta"}),
     r"train\[0\].model_overrides: action_space must be 'absolute' or 'relative'"),
    (lambda d: d["train"][0].update(model_overrides={"chunk": 8}), r"train\[0\].model_overrides: .*'chunk'"),
])
def test_a_bad_experiment_file_is_refused_naming_the_key(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        load_experiment(_variant(tmp_path, change))


def test_model_overrides_reach_the_training_run_and_unset_ones_leave_recorded_folders_as_they_were(tmp_path,
                                                                                                   monkeypatch):
    import model.train
    from lda_bench.experiment import train_policy

    plain = load_experiment(SMOKE)
    assert "model_overrides" not in plain.resolved()["train"][0]  # folders recorded before the key still match
    experiment = load_experiment(_variant(tmp_path, lambda d: d["train"][0].update(
        model_overrides={"action_space": "relative"})))
    assert experiment.resolved()["train"][0]["model_overrides"] == {"action_space": "relative"}
    runs = []
    monkeypatch.setattr(model.train, "train", lambda cfg: runs.append(cfg) or Path(cfg.out).mkdir(parents=True))
    train_policy(experiment, experiment.train[0], tmp_path)
    assert runs[0].model == "tiny-vision" and runs[0].model_overrides == {"action_space": "relative"}


def test_the_cpu_proof_experiment_file_is_valid():
    experiment = load_experiment(SMOKE.with_name("cpu-proof.yaml"))
    assert len(experiment.tasks) == 3 and experiment.trials == 51
    assert [p.policy for p in experiment.evaluate] == ["hold"]
    assert experiment.encoder is not None and experiment.train[0].preset == "tiny-vision"


@pytest.mark.parametrize("preset, policy", [("tiny", "lda"), ("tiny-vision", "lda"), ("lda-1b", "lda"),
                                            ("lda-dit", "lda-dit"), ("gr00t-n1.6-tiny", "gr00t-n1.6"),
                                            ("starvla", "starvla"), ("gr00t-ei-tiny", "gr00t-ei")])
def test_each_trained_preset_is_evaluated_by_the_policy_of_its_family(preset, policy):
    from lda_bench.experiment import policy_for_preset
    from lda_bench.policy import available_policies

    assert policy_for_preset(preset) == policy and policy in available_policies()
