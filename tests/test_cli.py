import subprocess
import sys

from PIL import Image


def run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "lda_bench.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_tasks_list_shows_all_24_with_family_and_instruction():
    out = run("tasks", "list")
    assert out.returncode == 0
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 24
    assert "PnP Milk To Microwave Close" in lines[3] and "microwave" in lines[3] and "close the microwave" in lines[3]


def test_tasks_show_writes_the_egoview(tmp_path):
    image = tmp_path / "scene.png"
    out = run("tasks", "show", "PnP Novel From Tray To Pot", "--seed", "4", "--image", str(image), "--image-size", "128")
    assert out.returncode == 0, out.stderr
    assert Image.open(image).size == (128, 128)
    assert "seed 4" in out.stdout


def test_unknown_task_exits_2_with_the_closest_names():
    out = run("tasks", "show", "PnP Can To Drawr Close")
    assert out.returncode == 2
    assert "PnP Can To Drawer Close" in out.stderr and "Traceback" not in out.stderr
