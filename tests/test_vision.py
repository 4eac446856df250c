"""The vision encoder pretrained here (`model/vision.py`): it learns where things are from demonstrations'
frames and recorded simulator state, loads through the DINOv3 interface, travels inside LDA checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lda_bench.cli import main
from lda_bench.demos import generate
from model.encoders import DinoEncoder
from model.vision import MARKER, PretrainConfig, is_pretrained_here, pretrain

TASK = "PnP Can To Drawer Close"
SMALL = dict(image_size=32, patch_size=16, hidden=16, layers=1, heads=2, frame_stride=4, batch_size=16)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    (root,) = generate(TASK, 4, tmp_path_factory.mktemp("demos"), workers=2, low_quality_fraction=0.0,
                       image_size=64, max_steps=80, progress=False)
    return root


@pytest.fixture(scope="module")
def encoder(demos, tmp_path_factory):
    out = tmp_path_factory.mktemp("encoder")
    pretrain([demos], out, PretrainConfig(steps=300, lr=3e-3, holdout=0.25, **SMALL), log=lambda *_: None)
    return out


def test_pretraining_learns_where_the_hands_are(encoder):
    summary = json.loads((encoder / MARKER).read_text())
    errors, yardstick = summary["held_out_error"], summary["mean_prediction_error"]
    assert summary["held_out_frames"] > 0 and summary["train_frames"] > summary["held_out_frames"]
    # the hands rise and reach in every episode: a held-out frame shows where they are better than the mean does
    assert errors["right_hand_z"] + errors["left_hand_z"] < 0.8 * (yardstick["right_hand_z"] + yardstick["left_hand_z"])


def test_the_encoder_loads_as_dino_and_is_named_by_its_weights(encoder):
    dino = DinoEncoder.from_pretrained(str(encoder))
    assert is_pretrained_here(encoder) and dino.source is None
    assert (dino.grid, dino.dim, dino.image_size) == (2, 16, 32)
    assert dino.encoder_id.startswith("dinov3:random-")  # no source to reload from: named by a weight hash
    features = dino.encode(np.zeros((2, 64, 64, 3), np.uint8))
    assert features.shape == (2, 4, 16)
    # rebuilt from its spec and weights, as a checkpoint does, it gives the same features
    again = DinoEncoder.from_spec(dino.spec())
    again.load_state_dict(dino.state_dict())
    assert torch.allclose(again.encode(np.full((1, 64, 64, 3), 90, np.uint8)),
                          dino.encode(np.full((1, 64, 64, 3), 90, np.uint8)))


def test_datasets_without_simulator_state_are_refused(tmp_path):
    from tests.model_helpers import FIXTURE

    with pytest.raises(ValueError, match="no observation.environment_state"):
        pretrain([FIXTURE], tmp_path / "enc", PretrainConfig(steps=1, **SMALL), log=lambda *_: None)


def test_an_lda_trains_on_it_and_its_checkpoint_carries_the_encoder(demos, encoder, tmp_path):
    import shutil

    from model.train import load_model

    copy = shutil.copytree(encoder, tmp_path / "encoder")
    run = tmp_path / "run"
    (tmp_path / "cfg.json").write_text(json.dumps({"model": "tiny", "model_overrides": {
        "image_size": 32, "patch_grid": 2, "dino_dim": 16}}))
    main(["train", "--config", str(tmp_path / "cfg.json"), "--data", str(demos), "--out", str(run),
          "--steps", "2", "--batch-size", "4", "--dino", str(copy)])
    reference = DinoEncoder.from_pretrained(str(copy))
    shutil.rmtree(copy)  # the checkpoint needs the encoder folder no more
    _, _, dino, _ = load_model(run)
    image = np.random.default_rng(0).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
    assert torch.allclose(dino.encode(image), reference.encode(image))


def test_cli_pretrains(demos, tmp_path, capsys):
    main(["encoder", "pretrain", "--data", str(demos), "--out", str(tmp_path / "enc"), "--image-size", "32",
          "--steps", "2", "--batch-size", "4", "--frame-stride", "8"])
    assert is_pretrained_here(tmp_path / "enc")
    assert "held-out mean absolute error" in capsys.readouterr().out
