"""The 24 RoboCasa-GR1 tabletop tasks as one table of data.

A `TaskSpec` names everything a scene needs (family, object pool, source, target, fixture, instruction
template, the hand that does the work); `tasks/scene.py` turns a spec into a robosuite environment and
`tasks/success.py` checks it. Names follow the LDA-1B paper's Table VI; `upstream_class` is the class in
robocasa-gr1-tabletop-tasks, so the optional upstream backend can build the same task.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

FIXTURE_FAMILIES = ("drawer", "cabinet", "microwave")
NOVEL_OBJECTS = ("sweet_potato", "bell_pepper", "lemon", "croissant", "pear",
                 "squash", "cupcake", "can", "tomato", "eggplant")
GYM_NAMESPACE = "lda_bench"
# What upstream's GR1ArmsAndWaistFourierHands environments put before every instruction they deliver.
LANGUAGE_PREFIX = "unlocked_waist: "


@dataclass(frozen=True)
class TaskSpec:
    name: str                    # paper name, e.g. "PnP Can To Drawer Close"
    family: str                  # drawer | cabinet | microwave | novel
    objects: tuple[str, ...]     # the object is drawn per episode from this pool
    fixture: str | None          # drawer | cabinet | microwave (fixture families)
    source: str | None           # novel family: where the object starts
    target: str | None           # novel family: where it must go
    hand: str                    # "left" or "right": the hand upstream's demonstrations use
    object_scale: float
    instruction_template: str
    upstream_class: str

    @property
    def gym_id(self) -> str:
        return f"{GYM_NAMESPACE}/{self.slug}-v0"

    @property
    def upstream_gym_id(self) -> str:
        return f"gr1_unified/{self.upstream_class}_GR1ArmsAndWaistFourierHands_Env"

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "")

    def instruction(self, obj: str) -> str:
        return self.instruction_template.format(obj=obj.replace("_", " "), src=_words(self.source),
                                                dst=_words(self.target))

    def language(self, obj: str) -> str:
        """The instruction as the environment delivers it (`annotation.human.coarse_action`)."""
        return LANGUAGE_PREFIX + self.instruction(obj)


def _words(asset: str | None) -> str:
    return {"cutting_board": "cutting board", "cardboard_box": "cardboard box", "tiered_basket": "tiered basket",
            "tiered_shelf": "tiered shelf"}.get(asset, asset or "")


_FIXTURE_TEMPLATE = "pick up the {{obj}}, place it into the {where} and close the {where}"
_FIXTURE_ROWS = [  # name, family, object, scale, upstream class
    ("PnP Bottle To Cabinet Close", "cabinet", "bottled_water", 1.1, "PnPBottleToCabinetClose"),
    ("PnP Can To Drawer Close", "drawer", "can", 1.2, "PnPCanToDrawerClose"),
    ("PnP Cup To Drawer Close", "drawer", "cup", 1.1, "PnPCupToDrawerClose"),
    ("PnP Milk To Microwave Close", "microwave", "milk", 1.0, "PnPMilkToMicrowaveClose"),
    ("PnP Potato To Microwave Close", "microwave", "potato", 1.3, "PnPPotatoToMicrowaveClose"),
    ("PnP Wine To Cabinet Close", "cabinet", "wine", 1.0, "PnPWineToCabinetClose"),
]
_FIXTURE_HAND = {"drawer": "left", "cabinet": "left", "microwave": "right"}

_NOVEL_PAIRS = [  # source, target, in Table VI's order
    ("cutting_board", "basket"), ("cutting_board", "cardboard_box"), ("cutting_board", "pan"),
    ("cutting_board", "pot"), ("cutting_board", "tiered_basket"), ("placemat", "basket"),
    ("placemat", "bowl"), ("placemat", "plate"), ("placemat", "tiered_shelf"), ("plate", "bowl"),
    ("plate", "cardboard_box"), ("plate", "pan"), ("plate", "plate"), ("tray", "cardboard_box"),
    ("tray", "plate"), ("tray", "pot"), ("tray", "tiered_basket"), ("tray", "tiered_shelf"),
]


def _paper_word(asset: str) -> str:
    return asset.replace("_", "").capitalize()


def _build_table() -> tuple[TaskSpec, ...]:
    specs = [
        TaskSpec(name=name, family=family, objects=(obj,), fixture=family, source=None, target=None,
                 hand=_FIXTURE_HAND[family], object_scale=scale,
                 instruction_template=_FIXTURE_TEMPLATE.format(where=family), upstream_class=cls)
        for name, family, obj, scale, cls in _FIXTURE_ROWS
    ]
    specs += [
        TaskSpec(name=f"PnP Novel From {_paper_word(src)} To {_paper_word(dst)}", family="novel",
                 objects=NOVEL_OBJECTS, fixture=None, source=src, target=dst, hand="right", object_scale=1.0,
                 instruction_template="pick the {obj} from the {src} and place it in the {dst}",
                 upstream_class=f"PosttrainPnPNovelFrom{_paper_word(src)}To{_paper_word(dst)}SplitA")
        for src, dst in _NOVEL_PAIRS
    ]
    return tuple(specs)


TASKS: tuple[TaskSpec, ...] = _build_table()


class UnknownTaskError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower().removeprefix(f"{GYM_NAMESPACE}/").removesuffix("-v0"))


_BY_KEY = {_key(k): t for t in TASKS for k in (t.name, t.gym_id, t.upstream_class, t.upstream_gym_id)}


def get_task(name: str) -> TaskSpec:
    """Look a task up by paper name, slug, gym ID or upstream class (case and spacing do not matter)."""
    spec = _BY_KEY.get(_key(name))
    if spec is None:
        names = [t.name for t in TASKS]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
        hint = f" Closest: {', '.join(close)}." if close else ""
        raise UnknownTaskError(f"unknown task {name!r}.{hint} Run `lda-bench tasks list` for all 24 task names.")
    return spec


def resolve_tasks(names: str | list[str]) -> list[TaskSpec]:
    """`all`, a family name, or a list of task names -> specs, in table order."""
    if isinstance(names, str):
        names = [names]
    if names == ["all"]:
        return list(TASKS)
    families = {t.family for t in TASKS}
    picked: list[TaskSpec] = []
    for name in names:
        batch = [t for t in TASKS if t.family == name] if name in families else [get_task(name)]
        picked += [t for t in batch if t not in picked]
    return picked
