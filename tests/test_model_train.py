"""Training runs: atomic checkpoints, exact resume, save/load round trip, the lda policies."""

from __future__ import annotations

import dataclasses
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
from model.cache import FeatureCache  # noqa: E402
from model.data import LDASamples, collate, encode_episodes, load_episodes, split_episodes, vlm_cache_id  # noqa: E402
from model.train import (CHECKPOINT, TrainConfig, checkpoint_payload, evaluate, finetune_config,  # noqa: E402
                         load_checkpoint, load_model, lr_factor, save_checkpoint, train, with_vlm_tokens)
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


def test_kept_checkpoints_hold_the_weights_of_their_step(dataset, tmp_path):
    train(_config(dataset, tmp_path / "run", keep_every=2, ckpt_every=100), echo=None)
    kept = sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir())
    assert kept == ["step-000002.pt", "step-000004.pt", "step-000006.pt"]
    steps = [load_checkpoint(tmp_path / "run/checkpoints" / name)["step"] for name in kept]
    assert steps == [2, 4, 6]
    early, last = load_checkpoint(tmp_path / "run/checkpoints/step-000002.pt"), load_checkpoint(tmp_path / "run")
    assert not torch.equal(early["model"]["action_pos"], last["model"]["action_pos"])
    assert torch.equal(load_checkpoint(tmp_path / "run/checkpoints/step-000006.pt")["model"]["action_pos"],
                       last["model"]["action_pos"])


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
        self.normalizer = Normalizer(np.zeros(config.action_dim, np.float32), np.ones(config.action_dim, np.float32),
                                     np.zeros(config.dino_dim, np.float32), np.ones(config.dino_dim, np.float32))

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


# --- finetuning with the VLM unfrozen ------------------------------------------------------------------

def test_live_vlm_tokens_equal_the_cached_ones_at_initialisation(dataset, tmp_path):
    """A sample of a live VLM carries the very frame and instruction its cached tokens were encoded from."""
    dino, vlm = DinoEncoder.tiny(), VLMEncoder.tiny()
    config = small_config()
    episodes = load_episodes([dataset])
    cache = FeatureCache(tmp_path / "features")
    encode_episodes(episodes, cache, dino, vlm, config.vlm_stride)  # tokens, as a frozen run caches them
    encode_episodes(episodes, cache, dino, None, config.vlm_stride)  # frames, as a run that trains the VLM does
    normalizer = Normalizer(np.zeros(29, np.float32), np.ones(29, np.float32), np.zeros(32, np.float32),
                            np.ones(32, np.float32))
    cached = LDASamples(episodes, config, cache, dino.encoder_id, vlm.encoder_id, normalizer)
    live = LDASamples(episodes, config, cache, dino.encoder_id, None, normalizer)
    # anchors between two encoded frames, from episodes with instructions of different lengths (padding)
    chosen = [i for i, (_, t) in enumerate(cached.index) if t % config.vlm_stride == 5]
    assert len({episodes[cached.index[i][0]].instruction for i in chosen}) > 1
    batch = with_vlm_tokens(collate([live[i] for i in chosen]), vlm)
    for row, i in enumerate(chosen):
        expected = cached[i]["vlm"]  # float16 in the cache
        tokens = batch["vlm"][row][batch["vlm_mask"][row]]
        assert tokens.shape == expected.shape
        torch.testing.assert_close(tokens, expected, rtol=2e-3, atol=2e-3)
        assert torch.equal(live[i]["obs"], cached[i]["obs"]) and torch.equal(live[i]["actions"], cached[i]["actions"])
    with pytest.raises(ValueError, match="give the VLM"):
        with_vlm_tokens(collate([live[chosen[0]]]), None)


@pytest.fixture(scope="module")
def pretrained(dataset, tmp_path_factory):
    """A short pretraining run (frozen encoders) to finetune from."""
    out = tmp_path_factory.mktemp("pre") / "run"
    train(_config(dataset, out, steps=2), echo=None)
    return out / CHECKPOINT


def _vlm_weights(checkpoint) -> dict:
    return load_checkpoint(checkpoint)["encoder_state"]["vlm"]


def test_finetuning_with_the_vlm_unfrozen_trains_and_saves_it_and_a_frozen_run_leaves_it(dataset, pretrained, tmp_path,
                                                                                       capsys):
    from lda_bench.cli import main

    common = ["--from", str(pretrained), "--data", str(dataset), "--steps", "3", "--batch-size", "8"]
    assert main(["finetune", *common, "--out", str(tmp_path / "frozen")]) == 0
    assert main(["finetune", *common, "--out", str(tmp_path / "live"), "--unfreeze-vlm", "--vlm-lr", "3e-3"]) == 0
    start, frozen, live = (_vlm_weights(p) for p in (pretrained, tmp_path / "frozen", tmp_path / "live"))
    assert all(torch.equal(start[k], frozen[k]) for k in start)
    changed = [k for k in start if not torch.equal(start[k], live[k])]
    assert any("language_model" in k for k in changed) and any("visual" in k for k in changed)
    assert "model.lm_head.weight" not in changed  # encoding never reads the head: it does not train

    checkpoint = load_checkpoint(tmp_path / "live")
    assert checkpoint["train_config"]["unfreeze_vlm"] and checkpoint["train_config"]["vlm_lr"] == 3e-3
    lda_group, vlm_group = checkpoint["optimizer"]["param_groups"][0], checkpoint["optimizer"]["param_groups"][-1]
    assert vlm_group["initial_lr"] == 3e-3 and lda_group["initial_lr"] == checkpoint["train_config"]["lr"]
    assert vlm_group["lr"] / lda_group["lr"] == pytest.approx(3e-3 / lda_group["initial_lr"])  # one schedule
    assert len(vlm_group["params"]) == len(live) - 1  # every VLM weight but the head's
    assert "the VLM trains too, at lr 0.003" in capsys.readouterr().out

    # the policy acts with the finetuned VLM: frozen, in eval mode, and not the one finetuning started from
    policy = make_policy("lda", checkpoint=str(tmp_path / "live/checkpoint.pt"))
    assert all(torch.equal(v, live[k]) for k, v in policy.vlm.state_dict().items())
    assert not policy.vlm.training and not any(p.requires_grad for p in policy.vlm.parameters())
    checkpoint["encoder_state"]["vlm"] = start
    save_checkpoint(tmp_path / "unfinetuned.pt", checkpoint)
    obs = make_observation(size=48)
    actions = []
    for path in (tmp_path / "live/checkpoint.pt", tmp_path / "live/checkpoint.pt", tmp_path / "unfinetuned.pt"):
        policy = make_policy("lda", checkpoint=str(path))
        policy.reset("task", INSTRUCTION)
        actions.append(validate_chunk(policy.get_action(obs)))
    assert all(np.array_equal(actions[0][k], actions[1][k]) for k in actions[0])  # reproduced
    assert any(not np.array_equal(actions[0][k], actions[2][k]) for k in actions[0])  # the VLM's finetuning counts

    assert main(["finetune", *common, "--out", str(tmp_path / "bad"), "--vlm-lr", "1e-4"]) == 2
    assert "give --unfreeze-vlm too" in capsys.readouterr().err


def test_a_run_that_trains_the_vlm_evaluates_resumes_and_saves_it_as_trained(dataset, pretrained, tmp_path):
    options = dict(steps=6, batch_size=8, warmup=2, log_every=1, ckpt_every=3, eval_every=3, holdout=0.25,
                   eval_samples=8, unfreeze_vlm=True, vlm_lr=1e-3)
    straight = finetune_config(pretrained, [str(dataset)], str(tmp_path / "straight"), **options)
    result = train(straight, echo=None)

    class Killed(Exception):
        pass

    def kill_at_step_5(text):
        if text.startswith("step 5/"):
            raise Killed
    interrupted = finetune_config(pretrained, [str(dataset)], str(tmp_path / "interrupted"), **options)
    with pytest.raises(Killed):
        train(interrupted, echo=kill_at_step_5)
    with pytest.raises(ValueError, match="unfreeze_vlm=True: resume it with the same setting"):
        train(dataclasses.replace(interrupted, unfreeze_vlm=False), echo=None)
    train(interrupted, echo=None)  # resumes from step 3 with the VLM as trained so far, and its optimizer state
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "interrupted")
    assert all(torch.equal(a["encoder_state"]["vlm"][k], b["encoder_state"]["vlm"][k]) for k in a["encoder_state"]["vlm"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])

    # the final evaluation used the VLM as trained, which is the one saved: a model loaded from the checkpoint
    # reproduces it exactly, and the VLM finetuning started from does not
    model, normalizer, dino, vlm = load_model(tmp_path / "straight")
    _, held_out = split_episodes(load_episodes([dataset]), straight.holdout, straight.seed)
    samples = LDASamples(held_out, model.config, FeatureCache(tmp_path / "straight/features"), dino.encoder_id, None,
                         normalizer)
    assert evaluate(model, samples, straight.eval_samples, vlm=vlm) == result["eval"]
    vlm.load_state_dict(_vlm_weights(pretrained))
    assert evaluate(model, samples, straight.eval_samples, vlm=vlm) != result["eval"]


def test_a_finetuned_vlm_never_reads_tokens_cached_for_the_weights_it_started_from(dataset, tmp_path):
    """Published weights name their cached tokens by their source; once finetuned, the same source names
    other weights, so their tokens are cached anew under an id with a hash of the weights."""
    published = tmp_path / "qwen3-vl-tiny"
    vlm = VLMEncoder.tiny()
    for part in (vlm.model, vlm.tokenizer, vlm.image_processor):
        part.save_pretrained(published)
    cache = tmp_path / "features"  # one cache for every run
    train(_config(dataset, tmp_path / "pre", steps=2, vlm=str(published), cache=str(cache)), echo=None)
    assert "vlm" not in load_checkpoint(tmp_path / "pre")["encoder_state"]  # reloaded from its source
    options = dict(steps=2, cache=str(cache), unfreeze_vlm=True, vlm_lr=1e-2)
    train(finetune_config(tmp_path / "pre/checkpoint.pt", [str(dataset)], str(tmp_path / "ft"), **options), echo=None)
    train(finetune_config(tmp_path / "ft/checkpoint.pt", [str(dataset)], str(tmp_path / "again"), steps=2,
                          cache=str(cache), unfreeze_vlm=False), echo=None)

    source_id = f"qwen3-vl:{published}"
    finetuned = load_model(tmp_path / "ft")[3]
    assert finetuned.encoder_id.startswith(f"{source_id}+finetuned-")
    episode = load_episodes([dataset])[0]
    store = FeatureCache(cache)
    stale = store.read(episode.dataset, vlm_cache_id(source_id, 8), episode.index, "features")
    fresh = store.read(episode.dataset, vlm_cache_id(finetuned.encoder_id, 8), episode.index, "features")
    frames = episode.dataset.episode_frames(episode.index)[::8]
    with torch.no_grad():
        tokens, mask = finetuned.encode(frames, [episode.instruction] * len(frames))
    np.testing.assert_allclose(fresh[mask.numpy()].astype(np.float32), tokens[mask].numpy(), rtol=2e-3, atol=2e-3)
    assert not np.allclose(stale[mask.numpy()].astype(np.float32), tokens[mask].numpy(), atol=1e-2)
