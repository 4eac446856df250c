"""`lda-bench eval`, `policies list` and `serve`: bad input, a killed run resumed, a remote policy end to end."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lda_bench.cli import main
from lda_bench.records import EvalProtocol, RecordStore
from lda_bench.remote import RemotePolicy

REPO = Path(__file__).parents[1]
TASK = "PnP Can To Drawer Close"


def lda_bench(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lda_bench.cli", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def error_of(capsys, *argv: str) -> str:
    """Run the CLI in this process; expect exit status 2 and one error line, and return that line."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lda-bench: error: ") and "\n" not in err, err
    return err


def test_policies_list_names_each_policy_with_its_description(capsys):
    assert main(["policies", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert {"hold", "random", "remote", "replay"} <= set(names)
    hold = lines[names.index("hold")]
    assert "keeps every joint where it is" in hold


def test_an_unknown_policy_or_task_names_the_known_ones(capsys, tmp_path):
    err = error_of(capsys, "eval", "--policy", "radnom", "--task", TASK, "--out", str(tmp_path))
    assert "unknown policy 'radnom' (did you mean 'random'?)" in err and "hold" in err
    err = error_of(capsys, "eval", "--policy", "hold", "--task", "PnP Can To Drawr Close", "--out", str(tmp_path))
    assert "PnP Can To Drawer Close" in err and "lda-bench tasks list" in err


def test_a_bad_policy_argument_names_the_accepted_ones_and_leaves_no_protocol_behind(capsys, tmp_path):
    out = tmp_path / "run"
    err = error_of(capsys, "eval", "--policy", "random", "--policy-arg", "sed=3", "--task", TASK, "--out", str(out),
                   "--trials", "1", "--max-steps", "5")
    assert "does not take 'sed' (did you mean 'seed'?)" in err and "it accepts: seed, scale, chunk" in err
    assert not (out / "protocol.json").exists()
    err = error_of(capsys, "eval", "--policy", "random", "--policy-arg", "seed", "--task", TASK, "--out", str(out))
    assert "--policy-arg expects key=value, got 'seed'" in err


def test_an_output_folder_of_another_protocol_is_refused(capsys, tmp_path):
    RecordStore(tmp_path).claim(EvalProtocol(max_steps=720, action_steps=8, image_size=224), "hold", {})
    err = error_of(capsys, "eval", "--policy", "hold", "--task", TASK, "--out", str(tmp_path), "--max-steps", "20")
    assert "max_steps 720 there, 20 here" in err


def test_bad_numbers_and_an_unknown_policy_to_serve_are_refused(capsys, tmp_path):
    err = error_of(capsys, "eval", "--policy", "hold", "--task", TASK, "--out", str(tmp_path), "--trials", "0")
    assert "trials must be a positive integer, got 0" in err
    err = error_of(capsys, "serve", "--policy", "nothing", "--port", "0")
    assert "unknown policy 'nothing'" in err


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_run_resumes_and_records_every_trial_exactly_once(tmp_path):
    out = tmp_path / "run"
    args = ("eval", "--policy", "hold", "--task", TASK, "--trials", "4", "--max-steps", "30", "--out", str(out),
            "--no-progress")
    process = lda_bench(*args, "--workers", "2")
    try:
        deadline = time.monotonic() + 90
        while not (out / "records").is_dir() or not RecordStore(out).read():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no record within 90 s"
            time.sleep(0.05)
        workers = _children(process.pid)
        assert len(workers) >= 2, "the evaluation has no worker processes"
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert len(RecordStore(out).read()) < 4, "the run finished before it was killed"
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers)), "worker processes outlived the killed run"

    resumed = lda_bench(*args, "--workers", "1")  # the worker count is no part of the protocol
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    assert sorted(r.trial for r in RecordStore(out).read()) == [0, 1, 2, 3]
    lines = sum(len(path.read_text().splitlines()) for path in (out / "records").glob("*.jsonl"))
    assert lines == 4, "a recorded trial was run again"
    assert re.search(rf"^{TASK} +4/4 ", stdout, re.MULTILINE), stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_served_policy_is_evaluated_over_the_network(tmp_path, capsys):
    port = _free_port()
    server = lda_bench("serve", "--policy", "hold", "--port", str(port), "--host", "127.0.0.1")
    try:
        ready, _, _ = select.select([server.stdout], [], [], 60)
        assert ready, "the server printed no ready line within 60 s"
        assert server.stdout.readline().startswith(f"serving policy 'hold' on tcp://127.0.0.1:{port}")
        assert main(["eval", "--policy", "remote", "--policy-arg", f"port={port}", "--policy-arg", "timeout_s=10",
                     "--task", TASK, "--trials", "2", "--max-steps", "10", "--out", str(tmp_path),
                     "--no-progress"]) == 0
        records = RecordStore(tmp_path).read()
        assert [(r.policy, r.policy_args, r.trial, r.steps, r.error) for r in records] == [
            ("remote", {"port": str(port), "timeout_s": "10"}, trial, 10, None) for trial in range(2)]
        with RemotePolicy(port=port, timeout_s=10, retries=0) as client:
            client.kill()
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGKILL)
            server.communicate(timeout=10)
        else:
            server.communicate(timeout=10)


@pytest.mark.parametrize("argv", [["eval", "--policy", "hold", "--out", "x"], ["serve"]])
def test_required_options_are_asked_for(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "required" in capsys.readouterr().err
