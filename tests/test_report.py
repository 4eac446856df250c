"""The success report: Table VI layout, intervals, never mixing protocols, missing trials, paper columns, formats."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image

from lda_bench import report
from lda_bench.records import EpisodeRecord, RecordStore
from tasks.specs import TASKS

CAN, CUP = "PnP Can To Drawer Close", "PnP Cup To Drawer Close"


def record(policy="hold", task=CAN, trial=0, success=False, error=None, max_steps=20, action_steps=8,
           policy_args=None) -> EpisodeRecord:
    return EpisodeRecord(policy=policy, policy_args=policy_args or {}, task=task, trial=trial, seed=trial,
                         success=success, first_success_step=5 if success else None, steps=5 if success else max_steps,
                         wall_time_s=0.5, error=error, instruction="do it",
                         protocol={"max_steps": max_steps, "action_steps": action_steps, "image_size": 224,
                                   "suite": "test"})


def table_of(records) -> report.SuccessTable:
    return report.success_rate_table(report.records_frame(records, source="runs/a"))


def test_wilson_interval_matches_known_values():
    low, high = report.wilson_interval([0, 51, 5], [51, 51, 10])
    assert low[0] == 0 and high[0] == pytest.approx(3.8415 / (51 + 3.8415), abs=1e-4)  # z^2 / (n + z^2)
    assert low[1] == pytest.approx(51 / (51 + 3.8415), abs=1e-4) and high[1] == 1
    assert (low[2], high[2]) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_rows_are_the_24_tasks_in_the_papers_order_then_the_average():
    table = table_of([record(task=CUP, trial=t, success=t < 3) for t in range(4)])
    paper = report.load_paper_table()
    assert table.tasks == [t.name for t in TASKS] == list(paper.index[:-1])
    cell = table.cell(CUP, "hold")
    assert (cell.successes, cell.trials, cell.rate) == (3, 4, 75.0)
    assert table.cell(CAN, "hold").trials == 0
    assert table.cell(report.AVERAGE, "hold").rate == 75.0
    lines = report.to_markdown(table).splitlines()
    rows = [line for line in lines if line.startswith("| PnP") or line.startswith(f"| {report.AVERAGE}")]
    assert [row.split(" | ")[0][2:] for row in rows] == [t.name for t in TASKS] + [report.AVERAGE]


def test_different_protocols_and_policy_args_become_separate_columns():
    records = ([record(trial=t, success=True, max_steps=20) for t in range(2)]
               + [record(trial=t, success=False, max_steps=40) for t in range(2)]
               + [record(policy="random", trial=t, policy_args={"seed": 1}) for t in range(2)]
               + [record(policy="random", trial=t, success=True, policy_args={"seed": 2}) for t in range(2)])
    table = table_of(records)
    assert [c.name for c in table.columns] == ["hold (max_steps=20)", "hold (max_steps=40)",
                                               "random (seed=1)", "random (seed=2)"]
    assert table.cell(CAN, "hold (max_steps=20)").rate == 100.0
    assert table.cell(CAN, "hold (max_steps=40)").rate == 0.0
    assert table.cell(CAN, "random (seed=2)").trials == 2


def test_the_same_policy_from_two_run_folders_is_not_pooled():
    frame = pd.concat([report.records_frame([record(trial=0, success=True)], source="runs/a"),
                       report.records_frame([record(trial=0, success=False)], source="runs/b")])
    table = report.success_rate_table(frame)
    assert [c.name for c in table.columns] == ["hold (a)", "hold (b)"]


def test_missing_trials_and_errors_are_flagged():
    records = ([record(task=CAN, trial=t, success=t == 0) for t in range(4)]
               + [record(task=CUP, trial=t, error="RuntimeError: boom" if t == 1 else None) for t in range(2)])
    table = table_of(records)
    cup = table.cell(CUP, "hold")
    assert cup.missing and (cup.trials, cup.expected, cup.errors) == (2, 4, 1)
    assert not table.cell(CAN, "hold").missing
    assert table.flagged == [f"hold: {CUP} has 2 of 4 trials", "hold: no records for 22 of 24 tasks"]
    text = report.to_markdown(table)
    assert "n=2/4! err=1" in text and f"Incomplete: hold: {CUP} has 2 of 4 trials" in text


def test_paper_columns_beside_the_measured_ones_with_the_difference():
    records = [record(policy="lda", task=task.name, trial=t, success=t < 2) for task in TASKS for t in range(4)]
    table = table_of(records)
    comparison = report.paper_comparison(table, {"lda": "LDA"})
    header = report.to_markdown(table, comparison).splitlines()[2]
    assert header == "| task | lda | paper LDA | diff |"
    csv = pd.read_csv(io.StringIO(report.to_csv(table, comparison)), index_col="task")
    assert csv.at[CAN, "paper LDA"] == 71
    assert csv.at[CAN, "lda - paper LDA"] == pytest.approx(50 - 71)
    assert csv.at[report.AVERAGE, "paper LDA"] == 55.4  # every task measured: the published average
    everything = report.paper_comparison(table)
    assert everything.appended == ["UWM", "UWM-XL", "UWM+MMDiT", "GR00T", "StarVLA", "GR00T-EI10k", "LDA(DiT)", "LDA"]


def test_with_some_tasks_measured_the_paper_average_is_over_those_tasks():
    table = table_of([record(policy="lda", task=task, trial=0) for task in (CAN, CUP)])
    comparison = report.paper_comparison(table, {"lda": "LDA"})
    assert comparison.value("LDA", report.AVERAGE) == pytest.approx((71 + 41) / 2)
    assert "mean over the 2 task(s)" in comparison.note


def test_paper_column_errors_name_the_choices():
    table = table_of([record(policy="lda")])
    with pytest.raises(ValueError, match="unknown paper column.*'LDA-2B'.*the paper has"):
        report.paper_comparison(table, {"lda": "LDA-2B"})
    with pytest.raises(ValueError, match="no measured column or policy 'gr00t'"):
        report.paper_comparison(table, {"gr00t": "GR00T"})


def test_latex_escapes_and_keeps_the_layout():
    table = table_of([record(policy="my_policy", trial=t, success=True) for t in range(2)])
    tex = report.to_latex(table, report.paper_comparison(table, {"my_policy": "LDA(DiT)"}))
    assert r"task & my\_policy & paper LDA(DiT) & diff \\" in tex
    assert tex.count(r"\\") == 26 and r"\midrule" + "\n" + report.AVERAGE in tex


def test_html_embeds_readable_plots():
    records = [record(policy=p, task=task.name, trial=t, success=(t + i) % 3 == 0)
               for i, p in enumerate(["hold", "lda"]) for task in TASKS for t in range(3)]
    table = table_of(records)
    page = report.to_html(table, report.paper_comparison(table, {"lda": "LDA"}))
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 2
    sizes = [Image.open(io.BytesIO(base64.b64decode(data))).size for data in images]
    assert sizes[0][1] > 1000 and sizes[1][0] >= 400  # 24 task rows need height; the averages fit across


def write_run(run_dir, records) -> None:
    store = RecordStore(run_dir)
    for r in records:
        store.append(r)
    store.close()


def test_cli_reads_run_and_sweep_folders_and_writes_each_format(tmp_path):
    write_run(tmp_path / "sweep" / "hold", [record(trial=t, success=t == 0) for t in range(2)])
    write_run(tmp_path / "single", [record(policy="random", trial=t, success=True) for t in range(2)])
    for fmt in report.FORMATS:
        out = tmp_path / f"report.{fmt}"
        done = subprocess.run([sys.executable, "-m", "lda_bench.cli", "report", str(tmp_path / "sweep"),
                               str(tmp_path / "single"), "--format", fmt, "--out", str(out), "--compare-paper",
                               "--paper-column", "random=GR00T"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "50.0" in out.read_text() and "random" in out.read_text()
    md = tmp_path / "plots.md"
    done = subprocess.run([sys.executable, "-m", "lda_bench.cli", "report", str(tmp_path / "single"), "--out", str(md),
                           "--plots"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "![success per task](plots-success-per-task.png)" in md.read_text()
    assert (tmp_path / "plots-average-success.png").exists()


def test_cli_refuses_a_folder_without_records(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lda_bench.cli", "report", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "holds no episode records" in done.stderr and "Traceback" not in done.stderr

