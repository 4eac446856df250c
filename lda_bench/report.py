"""Per-task success tables and plots from episode records, in the layout of the LDA-1B paper's Table VI.

Rows are the 24 tasks in the paper's order, then the average; a column is one policy run under one
protocol. Records are never pooled across policy arguments, protocols (max steps, action steps, image size,
suite) or run folders: each combination is its own column, named by the policy plus whatever tells it apart
from same-named columns. Each cell gives the success rate, its Wilson 95% interval, the trials recorded and
the episodes that ended in an error (they count as failures); a task with fewer trials than its column's
others, or none, is flagged. The published figures can be shown beside the measured ones.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from lda_bench.records import EpisodeRecord, RecordStore, canonical_args
from tasks.specs import TASKS

PAPER_TABLE = Path(__file__).resolve().parent.parent / "results" / "paper_table_vi.csv"
AVERAGE = "Average"
FORMATS = ("md", "csv", "tex", "html")
PROTOCOL_FIELDS = ("max_steps", "action_steps", "image_size", "image_variant", "scene_split", "instances", "suite")
# What makes two records incomparable; the column of a record is its value of these.
COLUMN_FIELDS = ("policy", "args", *PROTOCOL_FIELDS, "source")
Z_95 = 1.959963984540054


def wilson_interval(successes, trials, z: float = Z_95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion, as fractions; (nan, nan) where there are no trials.

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 or 51 successes out of 51.
    """
    s = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = s / n
        denominator = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denominator
        half = z / denominator * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def records_frame(records: Iterable[EpisodeRecord], source: str = "") -> pd.DataFrame:
    """One row per episode with the fields a report groups by; `source` names the run folder."""
    # Records of a run share a few argument and protocol dicts: convert each distinct one once (by its repr).
    args_of: dict[str, str] = {}
    protocol_of: dict[str, tuple[str, ...]] = {}
    rows = []
    for r in records:
        args_key, protocol_key = repr(r.policy_args), repr(r.protocol)
        if args_key not in args_of:
            args_of[args_key] = canonical_args(r.policy_args)
        if protocol_key not in protocol_of:
            protocol_of[protocol_key] = tuple(str(r.protocol.get(name)) for name in PROTOCOL_FIELDS)
        rows.append((r.policy, args_of[args_key], *protocol_of[protocol_key], source, r.task, r.trial,
                     bool(r.success), r.error is not None))
    return pd.DataFrame.from_records(rows, columns=[*COLUMN_FIELDS, "task", "trial", "success", "error"])


def run_folders(path: Path | str) -> list[Path]:
    """The run folders under `path`: itself if it holds records, else its subfolders that do (a sweep)."""
    path = Path(path)
    if (path / "records").is_dir():
        return [path]
    found = sorted(p.parent for p in path.glob("*/records") if p.is_dir())
    if not found:
        raise FileNotFoundError(f"{path} holds no episode records (no records/ folder in it or its subfolders)")
    return found


def load_records(paths: Iterable[Path | str]) -> pd.DataFrame:
    """Every record of the run folders (or sweep folders) given, each tagged with its run folder."""
    frames = [records_frame(RecordStore(folder).read(), source=str(folder))
              for path in paths for folder in run_folders(path)]
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class Column:
    """One policy under one protocol from one run folder: its records are comparable with each other."""

    name: str
    policy: str
    args: str
    protocol: dict[str, str]
    source: str
    trials: int  # trials per task: one more than the highest trial index recorded for any task

    def describe(self) -> str:
        args = f" {self.args}" if self.args != "{}" else ""
        protocol = ", ".join(f"{k} {v}" for k, v in self.protocol.items())
        return f"{self.name}: policy {self.policy}{args}; {protocol}; {self.trials} trials per task; from {self.source}"


@dataclass(frozen=True)
class SuccessTable:
    """Per (task, column) counts and rates; `cells` has one row per task, the average last, per column."""

    columns: list[Column]
    # index (task, column name) -> successes, trials, errors, expected (trials), tasks (with records), missing
    # (fewer trials than expected), rate, low, high (percent)
    cells: pd.DataFrame
    tasks: list[str]

    def cell(self, task: str, column: str) -> pd.Series:
        return self.cells.loc[(task, column)]

    @property
    def flagged(self) -> list[str]:
        """Lines naming the tasks with fewer trials than their column's others, and the tasks without any."""
        lines = []
        for column in self.columns:
            cells = self.cells.xs(column.name, level="column").loc[self.tasks]
            lines += [f"{column.name}: {task} has {int(row.trials)} of {int(row.expected)} trials"
                      for task, row in cells[cells["missing"]].iterrows()]
            absent = len(self.tasks) - int(cells["tasks"].sum())
            if absent:
                lines.append(f"{column.name}: no records for {absent} of {len(self.tasks)} tasks")
        return lines


def success_rate_table(frame: pd.DataFrame) -> SuccessTable:
    """Aggregate episode rows (from `records_frame`) into the tasks x columns success table."""
    if frame.empty:
        raise ValueError("no episode records to report on")
    frame = frame.drop_duplicates(subset=[*COLUMN_FIELDS, "task", "trial"])
    groups = frame.groupby(list(COLUMN_FIELDS), sort=True)
    trials = groups["trial"].max() + 1
    names = _column_names(trials)
    columns = [Column(name=names[key], policy=key[0], args=key[1], source=key[-1], trials=int(trials[key]),
                      protocol=dict(zip(PROTOCOL_FIELDS, key[2:-1]))) for key in trials.index]

    per_task = frame.groupby([*COLUMN_FIELDS, "task"], sort=False).agg(
        successes=("success", "sum"), trials=("trial", "size"), errors=("error", "sum")).reset_index()
    per_task["column"] = [names[key] for key in zip(*(per_task[f] for f in COLUMN_FIELDS))]
    known = [t.name for t in TASKS]
    tasks = known + sorted(set(per_task["task"]) - set(known))
    full = pd.MultiIndex.from_product([tasks, [c.name for c in columns]], names=["task", "column"])
    cells = per_task.set_index(["task", "column"])[["successes", "trials", "errors"]].reindex(full, fill_value=0)
    cells["expected"] = cells.index.get_level_values("column").map({c.name: c.trials for c in columns})
    cells["tasks"] = (cells["trials"] > 0).astype(int)
    cells["missing"] = (cells["trials"] > 0) & (cells["trials"] < cells["expected"])
    average = cells.groupby(level="column", sort=False).agg(
        successes=("successes", "sum"), trials=("trials", "sum"), errors=("errors", "sum"),
        expected=("expected", "first"), tasks=("tasks", "sum"), missing=("missing", "any"))
    average["expected"] *= average["tasks"]
    average.index = pd.MultiIndex.from_product([[AVERAGE], average.index], names=["task", "column"])
    cells = pd.concat([cells, average])
    trials_or_nan = cells["trials"].where(cells["trials"] > 0)
    rate = cells["successes"] / trials_or_nan
    low, high = wilson_interval(cells["successes"], trials_or_nan)
    cells["rate"], cells["low"], cells["high"] = 100.0 * rate, 100.0 * low, 100.0 * high
    return SuccessTable(columns=columns, cells=cells, tasks=tasks)


def _column_names(keys: pd.Series) -> dict[tuple, str]:
    """Name each column by its policy, qualified by what differs between columns of the same policy."""
    names = {}
    table = keys.rename("trials").reset_index()
    for policy, same in table.groupby("policy", sort=False):
        differing = [f for f in ("args", *PROTOCOL_FIELDS, "trials", "source") if same[f].nunique() > 1]
        for _, row in same.iterrows():
            key = tuple(row[f] for f in COLUMN_FIELDS)
            qualifiers = [_qualifier(f, row[f]) for f in differing]
            names[key] = f"{policy} ({', '.join(qualifiers)})" if qualifiers else policy
    return names


def _qualifier(field: str, value: Any) -> str:
    if field == "args":
        return ",".join(f"{k}={v}" for k, v in json.loads(value).items()) or "no args"
    if field == "trials":
        return f"{value} trials"
    if field == "source":
        return Path(value).name
    return f"{field}={value}"


def load_paper_table(path: Path | str = PAPER_TABLE) -> pd.DataFrame:
    """The paper's Table VI (percent), indexed by task name with the average last; checked against the suite."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"paper table {path} not found (it ships in the repository's results/ folder)")
    table = pd.read_csv(path).set_index("task")
    expected = [t.name for t in TASKS] + [AVERAGE]
    if list(table.index) != expected:
        raise ValueError(f"{path}: rows must be the 24 task names in the paper's order, then {AVERAGE!r}")
    return table


@dataclass(frozen=True)
class PaperComparison:
    """Published columns to show: each beside the measured column it maps to, or (unmapped) at the end."""

    table: pd.DataFrame     # the paper's figures; its average is over the tasks the report covers
    beside: dict[str, str]  # measured column name -> paper column
    appended: list[str]
    note: str

    def value(self, column: str, task: str) -> float:
        return float(self.table.at[task, column]) if task in self.table.index else math.nan


def paper_comparison(table: SuccessTable, mapping: dict[str, str] | None = None,
                     paper: pd.DataFrame | None = None) -> PaperComparison:
    """Map measured columns (by column name or policy name) to paper columns; no mapping shows them all.

    When the records cover only some tasks, the paper's average is recomputed over those tasks, so that the
    averages compared are over the same tasks.
    """
    paper = load_paper_table() if paper is None else paper.copy()
    mapping = mapping or {}
    unknown = sorted(set(mapping.values()) - set(paper.columns))
    if unknown:
        raise ValueError(f"unknown paper column(s) {unknown}; the paper has {list(paper.columns)}")
    beside = {}
    for measured, published in mapping.items():
        matches = [c.name for c in table.columns if measured in (c.name, c.policy)]
        if not matches:
            raise ValueError(f"--paper-column {measured}={published}: no measured column or policy {measured!r}; "
                             f"columns are {[c.name for c in table.columns]}")
        beside.update({name: published for name in matches})
    covered = [task for task in table.tasks if task in paper.index and table.cells.loc[task, "trials"].sum() > 0]
    note = "paper: the LDA-1B paper's Table VI (results/paper_table_vi.csv)"
    if len(covered) < len(paper.index) - 1:
        paper.loc[AVERAGE] = paper.loc[covered].mean()
        note += f"; its average here is the mean over the {len(covered)} task(s) reported, not the published one"
    return PaperComparison(paper, beside, [] if mapping else list(paper.columns), note)


# ---- rendering ------------------------------------------------------------------------------------------------

def _cell_text(cell: pd.Series, n_tasks: int) -> str:
    """`45.1 [32.3, 58.6] n=51`, with the errors, a missing-trials flag and (average) the tasks covered."""
    if cell.trials == 0:
        return "-"
    text = f"{cell.rate:.1f} [{cell.low:.1f}, {cell.high:.1f}] n={int(cell.trials)}"
    if cell.missing:
        text += f"/{int(cell.expected)}!"
    if cell.errors:
        text += f" err={int(cell.errors)}"
    if cell.tasks > 1 and cell.tasks < n_tasks:
        text += f" ({int(cell.tasks)} tasks)"
    return text


def _grid(table: SuccessTable, comparison: PaperComparison | None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of text cells, shared by the markdown, LaTeX and HTML renderers."""
    header = ["task"]
    for column in table.columns:
        header.append(column.name)
        if comparison and column.name in comparison.beside:
            header += [f"paper {comparison.beside[column.name]}", "diff"]
    header += [f"paper {p}" for p in (comparison.appended if comparison else [])]
    rows = []
    for task in [*table.tasks, AVERAGE]:
        row = [task]
        for column in table.columns:
            cell = table.cell(task, column.name)
            row.append(_cell_text(cell, len(table.tasks)))
            if comparison and column.name in comparison.beside:
                published = comparison.value(comparison.beside[column.name], task)
                row += [_number(published), _number(cell.rate - published, signed=True)]
        row += [_number(comparison.value(p, task)) for p in (comparison.appended if comparison else [])]
        rows.append(row)
    return header, rows


def _number(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _notes(table: SuccessTable, comparison: PaperComparison | None) -> list[str]:
    notes = ["Cells: success rate % [Wilson 95% interval] n=trials recorded; err = episodes that ended in an "
             "error (counted as failures); n=a/b! flags a task with fewer trials than its column's others.",
             f"{AVERAGE}: all trials of the column pooled (the mean of the per-task rates when every task has the "
             "same number of trials, as in the paper)."]
    notes += [column.describe() for column in table.columns]
    if comparison:
        notes.append(comparison.note + ("; diff = measured - paper, in points" if comparison.beside else ""))
    flagged = table.flagged
    if flagged:
        notes.append("Incomplete: " + "; ".join(flagged))
    return notes


def to_markdown(table: SuccessTable, comparison: PaperComparison | None = None,
                images: dict[str, str] | None = None) -> str:
    header, rows = _grid(table, comparison)
    lines = ["# Success rates per task", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [""] + [f"- {note}" for note in _notes(table, comparison)]
    lines += [f"\n![{title}]({src})" for title, src in (images or {}).items()]
    return "\n".join(lines) + "\n"


def to_csv(table: SuccessTable, comparison: PaperComparison | None = None) -> str:
    """Wide numeric table: per column its rate, interval, trials, expected trials, errors (and paper, diff)."""
    out = pd.DataFrame(index=pd.Index([*table.tasks, AVERAGE], name="task"))
    for column in table.columns:
        cells = table.cells.xs(column.name, level="column")
        for field in ("rate", "low", "high", "trials", "expected", "errors"):
            out[f"{column.name} {field}"] = cells[field]
        if comparison and column.name in comparison.beside:
            published = comparison.beside[column.name]
            out[f"paper {published}"] = comparison.table[published].reindex(out.index)
            out[f"{column.name} - paper {published}"] = out[f"{column.name} rate"] - out[f"paper {published}"]
    for published in comparison.appended if comparison else []:
        out[f"paper {published}"] = comparison.table[published].reindex(out.index)
    return out.to_csv(float_format="%.2f")


def to_latex(table: SuccessTable, comparison: PaperComparison | None = None) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); the average row below a rule."""
    header, rows = _grid(table, comparison)
    lines = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
    for row in rows:
        if row[0] == AVERAGE:
            lines.append(r"\midrule")
        lines.append(" & ".join(_tex(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines + [f"% {note}" for note in _notes(table, comparison)]) + "\n"


def _tex(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                          ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, escaped)
    return text


def to_html(table: SuccessTable, comparison: PaperComparison | None = None) -> str:
    """A self-contained page: the table, the notes and both plots embedded as base64 PNG."""
    header, rows = _grid(table, comparison)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join(("<tr class='average'>" if row[0] == AVERAGE else "<tr>")
                     + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in _notes(table, comparison))
    images = "".join(f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,"
                     f"{base64.b64encode(png).decode()}'></figure>" for title, png in plots(table, comparison).items())
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child{text-align:left}"
             "tr.average{font-weight:bold;border-top:2px solid #333}img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Success rates per task</title>"
            f"<style>{style}</style></head><body><h1>Success rates per task</h1>\n"
            f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>\n"
            f"<ul>{notes}</ul>\n{images}\n</body></html>\n")


# ---- plots ------------------------------------------------------------------------------------------------------

def plots(table: SuccessTable, comparison: PaperComparison | None = None) -> dict[str, bytes]:
    """Title -> PNG: per-task grouped bars with Wilson intervals, and the per-column averages."""
    import matplotlib

    matplotlib.use("Agg")
    series = _bar_series(table, comparison)
    return {"success per task": _task_bars(table.tasks, series), "average success": _average_bars(series)}


def _bar_series(table: SuccessTable, comparison: PaperComparison | None) -> list[dict[str, Any]]:
    """The bars to draw, each with its rates over the tasks and the average: every measured column (with its
    Wilson intervals), followed by the paper column it is compared with, hatched in the same colour; the
    paper columns shown without a measured one come last, hatched in pastel colours."""
    import matplotlib

    rows = [*table.tasks, AVERAGE]

    def published(name: str, color: Any) -> dict[str, Any]:
        values = np.array([comparison.value(name, task) for task in rows])
        return {"label": f"paper {name}", "values": values, "color": color, "error": None, "hatch": "//"}

    series = []
    for i, column in enumerate(table.columns):
        cells = table.cells.xs(column.name, level="column").loc[rows]
        error = np.vstack([cells["rate"] - cells["low"], cells["high"] - cells["rate"]])
        series.append({"label": column.name, "values": cells["rate"].to_numpy(), "color": f"C{i % 10}",
                       "error": np.clip(np.nan_to_num(error), 0, None), "hatch": None})
        if comparison and column.name in comparison.beside:
            series.append(published(comparison.beside[column.name], f"C{i % 10}"))
    pastel = matplotlib.colormaps["Set2"].colors
    appended = comparison.appended if comparison else []
    series += [published(name, pastel[i % len(pastel)]) for i, name in enumerate(appended)]
    return series


def _task_bars(tasks: list[str], series: list[dict[str, Any]]) -> bytes:
    import matplotlib.pyplot as plt

    labels = [*tasks, AVERAGE]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.12 * len(labels) * max(2, len(series))))
    y = np.arange(len(labels))
    for i, s in enumerate(series):
        ax.barh(y - 0.4 + (i + 0.5) * width, np.nan_to_num(s["values"]), height=width, xerr=s["error"],
                label=s["label"], color=s["color"], hatch=s["hatch"], edgecolor="white" if s["hatch"] else None,
                alpha=0.6 if s["hatch"] else 1.0, error_kw={"elinewidth": 0.8, "capsize": 1.5})
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # the paper's order, top to bottom
    ax.axhline(len(labels) - 1.5, color="0.2", linewidth=0.8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("success rate (%); whiskers: Wilson 95% interval")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(4, len(series)), frameon=False)
    return _png(fig)


def _average_bars(series: list[dict[str, Any]]) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 + 0.8 * len(series)), 4.2))
    for i, s in enumerate(series):
        value = float(np.nan_to_num(s["values"][-1]))
        error = None if s["error"] is None else s["error"][:, -1:].tolist()
        ax.bar([i], [value], yerr=error, capsize=4, color=s["color"], hatch=s["hatch"],
               edgecolor="white" if s["hatch"] else None, alpha=0.6 if s["hatch"] else 1.0)
        top = value + (0.0 if error is None else error[1][0])
        ax.text(i, top + 1.5, _number(s["values"][-1]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(series)), [s["label"] for s in series], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("average success rate (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Average over tasks; whiskers: Wilson 95% interval", fontsize=10)
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def write_report(paths: list[Path | str], fmt: str = "md", out: Path | str | None = None,
                 compare_paper: bool = False, paper_columns: dict[str, str] | None = None,
                 write_plots: bool = False) -> str:
    """Read the run folders, render the report, write it to `out` (when given) and return it.

    With `write_plots`, the PNGs also go next to `out` (the markdown links them); HTML always embeds them.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if write_plots and out is None:
        raise ValueError("plots are written next to the report: give --out")
    table = success_rate_table(load_records(paths))
    comparison = paper_comparison(table, paper_columns) if compare_paper or paper_columns else None
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    images = {}
    if write_plots and fmt != "html":
        for title, png in plots(table, comparison).items():
            path = Path(out).with_name(f"{Path(out).stem}-{title.replace(' ', '-')}.png")
            path.write_bytes(png)
            images[title] = path.name
    if fmt == "md":
        text = to_markdown(table, comparison, images)
    elif fmt == "csv":
        text = to_csv(table, comparison)
    elif fmt == "tex":
        text = to_latex(table, comparison)
    else:
        text = to_html(table, comparison)
    if out is not None:
        Path(out).write_text(text, encoding="utf-8")
    return text
