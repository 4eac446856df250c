"""A real single-node Slurm cluster for tests, started once per test session with `slurm/start_cluster.sh`.

Test modules import the `slurm_cluster` fixture. Pytest makes one fixture instance per importing module, so
the cluster itself is shared through a reference count: the first user starts it, the last one stops it.
Without the Slurm binaries (see `slurm/install.sh`) or root, every test that uses it is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SLURM_DIR = Path(__file__).resolve().parent.parent / "slurm"
PARTITION = "debug"
DAEMONS = ("munged", "mariadb", "slurmdbd", "slurmctld", "slurmd")
START_TIMEOUT_S = 90


@dataclass
class SlurmCluster:
    dir: Path
    conf: str
    partition: str = PARTITION

    def pids(self) -> dict[str, int]:
        """Daemon name -> PID, from the pid files."""
        run = self.dir / "run"
        return {name: int((run / f"{name}.pid").read_text()) for name in DAEMONS if (run / f"{name}.pid").exists()}


def missing_requirement() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "the test cluster runs its daemons as root"
    path = f"{os.environ.get('PATH', '')}:/usr/sbin"
    missing = [b for b in ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
               if shutil.which(b, path=path) is None]
    return f"Slurm binaries missing ({', '.join(missing)}); run slurm/install.sh" if missing else None


def start_cluster(directory: Path) -> SlurmCluster:
    out = subprocess.run([str(SLURM_DIR / "start_cluster.sh"), str(directory), str(START_TIMEOUT_S)],
                         capture_output=True, text=True, timeout=START_TIMEOUT_S + 30)
    if out.returncode != 0:
        raise RuntimeError(f"start_cluster.sh failed ({out.returncode}):\n{out.stderr}")
    conf = out.stdout.strip().splitlines()[-1].removeprefix("export SLURM_CONF=")
    return SlurmCluster(dir=directory, conf=conf)


def stop_cluster(directory: Path) -> None:
    subprocess.run([str(SLURM_DIR / "stop_cluster.sh"), str(directory)], check=True, timeout=60)


def is_running(pid: int) -> bool:
    """A live process; a zombie (exited, not yet reaped by its parent) does not count."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.25):
    """Poll `condition()` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_done(jobs, timeout_s: float = 60) -> None:
    """Wait for submitit jobs to finish (any outcome): `job.result()` alone can wait forever."""
    wait_until(lambda: all(job.done(force_check=True) for job in jobs), timeout_s, "the Slurm jobs", interval_s=0.5)


_shared: dict = {"users": 0, "cluster": None, "saved_conf": None}


@pytest.fixture(scope="session")
def slurm_cluster():
    reason = missing_requirement()
    if reason:
        pytest.skip(reason)
    if _shared["users"] == 0:
        directory = Path(tempfile.mkdtemp(prefix="lda-bench-slurm-"))
        _shared["cluster"] = start_cluster(directory)
        _shared["saved_conf"] = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = _shared["cluster"].conf
    _shared["users"] += 1
    try:
        yield _shared["cluster"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            stop_cluster(_shared["cluster"].dir)
            shutil.rmtree(_shared["cluster"].dir, ignore_errors=True)
            if _shared["saved_conf"] is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = _shared["saved_conf"]
