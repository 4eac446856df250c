"""The held-out proof of learning of every model family (model/prove_learning.py) and `lda-bench bench
model`'s listing (model/bench.py). Figures are printed by the commands, not asserted here."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from model.bench import TINY_PRESETS, billion_presets, bench_model, print_model_table  # noqa: E402
from model.config import PRESETS, build_model, get_config  # noqa: E402
from model.prove_learning import PRESETS as FAMILIES, format_table, main, prove  # noqa: E402


def test_the_proof_table_holds_each_objective_of_each_family_beside_its_trivial_prediction(tmp_path, capsys):
    """Two steps cannot beat holding the last action: the command prints the table and exits 1."""
    assert {get_config(name).family for name in FAMILIES} == {"lda", "gr00t", "uwm"}
    assert main(["--out", str(tmp_path), "--steps", "2", "--batch-size", "8", "--episodes", "5",
                 "--eval-samples", "12"]) == 1
    out = capsys.readouterr().out
    assert "does not beat holding the last action" in out
    rows = prove(tmp_path, steps=2, batch_size=8, episodes=5, eval_samples=12, echo=None)  # evaluated again
    assert format_table(rows) in out
    for name in FAMILIES:
        objectives = build_model(get_config(name)).objectives
        mine = [r for r in rows if r.preset == name]
        assert tuple(r.objective for r in mine) == objectives
        for r in mine:
            assert all(math.isfinite(v) and v > 0 for v in (r.initial, r.trained, r.trivial))
            assert r.trivial_name == ("hold last action" if r.objective in ("policy", "inverse_dynamics")
                                      else "unchanged frame")


@pytest.mark.slow  # about 5 minutes on 2 busy cores
def test_every_family_trained_briefly_beats_holding_the_last_action(tmp_path):
    rows = prove(tmp_path, echo=None)
    policy = {r.preset: r for r in rows if r.objective == "policy"}
    assert set(policy) == set(FAMILIES)
    for row in policy.values():
        assert row.trained < row.trivial < row.initial, row


def test_bench_model_lists_every_preset_and_measures_the_tiny_ones_side_by_side(capsys):
    measured = ("gr00t-n1.6-tiny", "uwm-tiny", "tiny-vision")
    result = bench_model(repeats=1, tiny=measured, batch=4)
    assert set(result["params"]) == set(PRESETS) and set(result["cpu"]["presets"]) == set(measured)
    assert set(TINY_PRESETS) == {name for name in PRESETS if result["params"][name] < 5e6}
    assert billion_presets(result["params"]) == ["lda-1b", "lda-dit", "gr00t-n1.6", "starvla", "uwm-xl", "uwm-mmdit"]
    for name, figures in result["cpu"]["presets"].items():
        assert figures["train_samples_per_s"] > 0 and 0 < figures["chunk_ms"]["best"] <= figures["chunk_ms"]["median"]
        assert (figures["policy_ms"] is None) == (name == "tiny-vision")  # it reads the encoder pretrained here
    print_model_table(result)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(PRESETS)
    assert all(row.count("|") == 8 for row in rows)
    assert [row.split("`")[1] for row in rows if not row.endswith("| | | |")] == [n for n in PRESETS if n in measured]
