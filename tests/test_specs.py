import csv
from pathlib import Path

import gymnasium as gym
import pytest

import tasks
from tasks.specs import TASKS, UnknownTaskError, get_task, resolve_tasks

PAPER_TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "paper_table_vi.csv"


def test_the_24_tasks_carry_the_paper_names():
    if not PAPER_TABLE.exists():
        pytest.skip(f"paper table not found at {PAPER_TABLE}")
    with open(PAPER_TABLE) as f:
        paper = [row["task"] for row in csv.DictReader(f) if row["task"] != "Average"]
    assert sorted(t.name for t in TASKS) == sorted(paper)
    assert len(TASKS) == 24


def test_every_task_is_a_registered_gym_id():
    for t in TASKS:
        assert t.gym_id in gym.registry
        assert gym.registry[t.gym_id].max_episode_steps == 720


def test_families_and_hands():
    families = {f: [t for t in TASKS if t.family == f] for f in ("drawer", "cabinet", "microwave", "novel")}
    assert [len(v) for v in families.values()] == [2, 2, 2, 18]
    assert {t.hand for t in families["microwave"] + families["novel"]} == {"right"}
    assert {t.hand for t in families["drawer"] + families["cabinet"]} == {"left"}
    assert all(len(t.objects) == 10 for t in families["novel"])


def test_lookup_by_any_name_form():
    spec = get_task("PnP Novel From Tray To Pot")
    assert get_task("pnp novel from tray to pot") is spec
    assert get_task(spec.gym_id) is spec
    assert get_task("PosttrainPnPNovelFromTrayToPotSplitA") is spec
    assert get_task("gr1_unified/PosttrainPnPNovelFromTrayToPotSplitA_GR1ArmsAndWaistFourierHands_Env") is spec


def test_unknown_task_lists_the_closest_names():
    with pytest.raises(UnknownTaskError) as e:
        get_task("PnP Can To Drawr Close")
    assert "PnP Can To Drawer Close" in str(e.value)
    assert "tasks list" in str(e.value)
    with pytest.raises(UnknownTaskError):
        tasks.make("no such task")


def test_instructions_follow_upstream_templates():
    assert get_task("PnP Milk To Microwave Close").instruction("milk") == (
        "pick up the milk, place it into the microwave and close the microwave")
    assert get_task("PnP Novel From Cuttingboard To Tieredbasket").instruction("sweet_potato") == (
        "pick the sweet potato from the cutting board and place it in the tiered basket")


def test_resolve_all_family_and_names():
    assert len(resolve_tasks("all")) == 24
    assert [t.family for t in resolve_tasks("cabinet")] == ["cabinet", "cabinet"]
    picked = resolve_tasks(["PnP Can To Drawer Close", "drawer"])
    assert [t.name for t in picked] == ["PnP Can To Drawer Close", "PnP Cup To Drawer Close"]
