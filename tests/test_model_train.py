"""Training runs: atomic checkpoints, exact resume, save/load round trip, the lda policies."""

from __future__ import annotations

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lda_bench.policy import make_policy, validate_chunk  # noqa: E402
from model.config import POLICY  # noqa: E402
from model.data import Normalizer  # noqa: E402
from model.encoders import DinoEncoder, VLMEncoder  # noqa: E402
from model.lda import LDA  # noqa: E402
from model.synthetic import make_dataset  # noqa: E402
from model.data import ROLES  # noqa: E402
from model.train import (CHECKPOINT, TrainConfig, checkpoint_payload, evaluate, load_checkpoint,  # noqa: E402
                         load_model, lr_factor, save_checkpoint, train)
from model_helpers import random_batch, small_config  # noqa: E402
from policy_helpers import INSTRUCTION, make_observation  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "synthetic", episodes=4, low=1, video=1, length=24)


def _config(dataset, out, **changes) -> TrainConfig:
    values = dict(model="tiny", model_overrides={"hidden": 64, "layers": 2}, data=[str(dataset)], out=str(out),
                  cache=str(out.parent / "features"), steps=6, batch_size=8, warmup=2, log_every=1, eval_every=0,
                  ckpt_every=3, holdout=0.25, eval_samples=8)
    return TrainConfig(**{**values, **changes})


def test_a_killed_run_resumes_to_exactly_the_uninterrupted_result(dataset, tmp_path):
    straight = _config(dataset, tmp_path / "straight")
    train(straight, echo=None)

    class Killed(Exception):
        pass

    def kill_at_step_5(text):  # after the step-3 checkpoint, in the middle of step 5's bookkeeping
        if text.startswith("step 5/"):
            raise Killed
    interrupted = _config(dataset, tmp_path / "interrupted")
    with pytest.raises(Killed):
        train(interrupted, echo=kill_at_step_5)
    assert load_checkpoint(tmp_path / "interrupted")["step"] == 3
    result = train(interrupted, echo=None)
    assert result["step"] == 6
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "interrupted")
    assert a["step"] == b["step"] == 6
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["scheduler"] == b["scheduler"]
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
    log = (tmp_path / "interrupted/log.jsonl").read_text()
    assert '"event": "resume", "step": 3' in log
    # the per-objective losses are logged
    assert '"loss/visual_forecasting"' in log


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / CHECKPOINT, {"format": "lda-checkpoint-1", "step": 1})
    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"format": "lda-checkpoint-1", "step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1  # the old checkpoint is intact, and no temporary file is left
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]
    with pytest.raises(ValueError, match="is not an LDA checkpoint"):
        save_checkpoint(tmp_path / "other.pt", {"step": 0})
        load_checkpoint(tmp_path / "other.pt")


def test_the_schedule_warms_up_then_decays_to_the_minimum():
    cfg = TrainConfig(steps=100, warmup=10, lr=1e-4, min_lr=1e-6)
    factors = [lr_factor(s, cfg) for s in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[100] == pytest.approx(0.01)


def _saved_model(path):
    config = small_config()
    torch.manual_seed(0)
    model = LDA(config)
    with torch.no_grad():  # move off the AdaLN-Zero start so outputs depend on every weight
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    dino, vlm = DinoEncoder.tiny(), VLMEncoder.tiny()
    rng = np.random.default_rng(0)
    normalizer = Normalizer(rng.normal(size=29).astype(np.float32), rng.uniform(0.5, 2, 29).astype(np.float32),
                            np.zeros(32, np.float32), np.ones(32, np.float32))
    save_checkpoint(path, checkpoint_payload(config, model.state_dict(), normalizer, dino, vlm, step=0))
    return model, normalizer


class _HeldOut:
    """Held-out samples as `evaluate` reads them: one high-quality and one low-quality episode."""

    def __init__(self, config, low_quality_offset: float):
        batch = random_batch(config, size=2)
        batch["actions"][1] += low_quality_offset
        batch["roles"] = torch.from_numpy(np.stack([ROLES["high"], ROLES["low"]]))
        self.items = [{k: v[i] for k, v in batch.items() if k != "vlm_mask"} for i in range(2)]
        self.index = [(0, 0), (1, 0)]
        self.episodes = [types.SimpleNamespace(actions=np.zeros(1))] * 2
        self.normalizer = types.SimpleNamespace(action_std=np.ones(config.action_dim, np.float32))

    def __getitem__(self, i):
        return self.items[i]


def test_held_out_policy_error_leaves_out_low_quality_episodes():
    config = small_config()
    model = LDA(config)
    clean, moved = (evaluate(model, _HeldOut(config, offset)) for offset in (0.0, 50.0))
    assert clean["policy/action_l1"] == moved["policy/action_l1"]
    assert clean["baseline/hold_last_action_l1"] == moved["baseline/hold_last_action_l1"]
    assert moved["inverse_dynamics/action_l1"] > clean["inverse_dynamics/action_l1"] + 10  # still counted


def test_save_and_load_reproduce_the_outputs(tmp_path):
    model, normalizer = _saved_model(tmp_path / "model.pt")
    loaded, loaded_normalizer, dino, vlm = load_model(tmp_path / "model.pt")
    assert loaded.config == model.config and dino.encoder_id == DinoEncoder.tiny().encoder_id
    np.testing.assert_array_equal(loaded_normalizer.action_std, normalizer.action_std)
    model.eval()
    b = random_batch(model.config)
    cond = {k: b[k] for k in ("obs", "past_actions", "state", "vlm", "vlm_mask")}
    noise = torch.randn(4, 16, 29)
    assert torch.equal(model.sample(POLICY, **cond, noise=noise), loaded.sample(POLICY, **cond, noise=noise))
    assert model.sample(POLICY, **cond, noise=noise).abs().sum() > 0


@pytest.mark.parametrize("name, backbone", [("lda", "mmdit"), ("lda-0.5b", "mmdit"), ("lda-dit", "dit")])
def test_lda_policies_act_from_a_checkpoint(tmp_path, name, backbone):
    path = tmp_path / "model.pt"
    if backbone == "dit":
        config = small_config(backbone="dit")
        save_checkpoint(path, checkpoint_payload(config, LDA(config).state_dict(), Normalizer(
            np.zeros(29, np.float32), np.ones(29, np.float32), np.zeros(32, np.float32), np.ones(32, np.float32)),
            DinoEncoder.tiny(), VLMEncoder.tiny()))
    else:
        _saved_model(path)
    policy = make_policy(name, checkpoint=str(path), execute="4")
    obs = make_observation(size=48)
    policy.reset("task", INSTRUCTION)
    first = validate_chunk(policy.get_action(obs))
    assert first["action.left_arm"].shape == (4, 7) and first["action.waist"].shape == (4, 3)
    second = validate_chunk(policy.get_action(obs))
    policy.reset("task", INSTRUCTION)
    assert all(np.array_equal(first[k], v) for k, v in validate_chunk(policy.get_action(obs)).items())
    assert any(not np.array_equal(first[k], second[k]) for k in first)  # history and past actions moved on
    other = "lda-dit" if backbone == "mmdit" else "lda"
    with pytest.raises(ValueError, match=f"holds a '{backbone}' LDA"):
        make_policy(other, checkpoint=str(path))


def test_cli_trains_then_finetunes_from_the_checkpoint(dataset, tmp_path, capsys):
    from lda_bench.cli import main

    common = ["--data", str(dataset), "--steps", "2", "--batch-size", "8"]
    assert main(["train", "--config", "tiny", "--out", str(tmp_path / "pre"), *common]) == 0
    pretrained = load_checkpoint(tmp_path / "pre")
    assert pretrained["step"] == 2 and pretrained["model_config"]["name"] == "tiny"
    pretrained["model"]["action_pos"] += 1.0  # a mark that only the pretrained weights carry
    save_checkpoint(tmp_path / "pre/checkpoint.pt", pretrained)
    assert main(["finetune", "--from", str(tmp_path / "pre/checkpoint.pt"), "--out", str(tmp_path / "ft"), *common]) == 0
    finetuned = load_checkpoint(tmp_path / "ft")
    assert finetuned["train_config"]["init_from"] == str(tmp_path / "pre/checkpoint.pt")
    assert finetuned["encoders"] == pretrained["encoders"]  # the encoders travel with the weights
    start, end = pretrained["model"]["action_pos"], finetuned["model"]["action_pos"]
    assert not torch.equal(start, end) and torch.allclose(start, end, atol=0.01)  # trained on from them ...
    out = capsys.readouterr().out
    assert "step 2/2" in out  # ... and logged its progress


def test_a_run_submitted_through_submitit_trains_in_its_run_folder(dataset, tmp_path):
    """submitit's local executor runs the job in another process: the same TrainJob, profile reading and
    run folder as on a Slurm cluster."""
    pytest.importorskip("submitit")
    pytest.importorskip("lda_bench.sweep")
    from model.train import submit

    profile = tmp_path / "profile.yaml"
    profile.write_text("partition: debug\ncpus_per_task: 1\ntime_min: 5\n")
    job = submit(_config(dataset, tmp_path / "run", steps=2), profile, cluster="local")
    assert job.result()["step"] == 2
    assert load_checkpoint(tmp_path / "run")["step"] == 2
