"""A small synthetic GR1 dataset in LeRobot v2.1 form, cheap enough to make and learn from on a CPU.

Each episode reaches for a target square. Two left-arm joints place a cursor in the image; they approach
the joints that put the cursor on the target, then the left hand closes (a bar in the image grows).
Meanwhile two right-arm joints wave, circling a second marker around the image from a random phase, and
the other joints follow slow sinusoids whose phase depends on the target. So the robot never stands still
and the frames keep changing: holding the last action or predicting an unchanged frame is a poor guess
(model/prove_learning.py measures both). Images are drawn with numpy (64 px), so the future frame is a
deterministic function of the state the actions lead to, and the instruction names the target's quadrant:
every objective has something to learn, from vision, language and actions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lda_bench.lerobot import LeRobotWriter
from tasks.layout import ACTION_DIM, ACTION_DIMS

QUADRANTS = {(0, 0): "top left", (0, 1): "top right", (1, 0): "bottom left", (1, 1): "bottom right"}


WAVE = slice(ACTION_DIMS["left_arm"], ACTION_DIMS["left_arm"] + 2)  # right_arm joints 0 and 1
WAVE_AMPLITUDE, WAVE_OMEGA = 1.0, 3.0  # radians, radians per second: a circle every 2.1 s


def cursor(joints: np.ndarray, dims: slice = slice(0, 2)) -> np.ndarray:
    """Image position (row, col) in [0, 1] of the marker that two joints place: by default the cursor of
    left_arm joints 0 and 1; `WAVE` gives the waving marker."""
    return 0.5 + 0.4 * np.sin(joints[..., dims])


def render(joints: np.ndarray, target: np.ndarray, size: int = 64) -> np.ndarray:
    image = np.full((size, size, 3), 96, dtype=np.uint8)
    def square(pos, color, half):
        r, c = (np.asarray(pos) * (size - 1)).round().astype(int)
        image[max(r - half, 0):r + half + 1, max(c - half, 0):c + half + 1] = color
    square(target, (220, 40, 40), 5)
    square(cursor(joints, WAVE), (230, 200, 40), 5)
    square(cursor(joints), (40, 80, 230), 4)
    grip = int(np.clip(joints[14] / 1.5, 0, 1) * (size - 8))  # left hand, first finger
    image[size - 6:size - 2, 2:2 + max(grip, 1)] = (40, 200, 60)
    return image


def episode(rng: np.random.Generator, length: int, noise: float = 0.0, size: int = 64):
    target = rng.uniform(0.2, 0.8, size=2)
    goal = np.arcsin((target - 0.5) / 0.4)
    phase = 3.0 * target.sum()
    steps = np.arange(length + 1) / 20.0
    joints = np.zeros((length + 1, ACTION_DIM))
    omega = np.linspace(0.5, 1.5, ACTION_DIM)
    joints[:] = 0.3 * np.sin(omega * steps[:, None] + phase)
    joints[0, :2] = rng.uniform(-0.5, 0.5, size=2)
    wave = WAVE_OMEGA * steps + rng.uniform(0, 2 * np.pi)
    joints[:, WAVE] = WAVE_AMPLITUDE * np.stack([np.sin(wave), np.cos(wave)], axis=1)
    hand = slice(ACTION_DIMS["left_arm"] + ACTION_DIMS["right_arm"], 20)  # left hand's 6 values
    joints[:, hand] = 0.0
    for t in range(length):  # reach: a bounded step toward the goal, then close the hand
        step = np.clip(0.15 * (goal - joints[t, :2]), -0.06, 0.06)
        joints[t + 1, :2] = joints[t, :2] + step
        near = np.abs(goal - joints[t, :2]).max() < 0.05
        joints[t + 1, hand] = np.minimum(joints[t, hand] + (0.1 if near else 0.0), 1.5)
    actions = joints[1:] + noise * rng.standard_normal((length, ACTION_DIM))
    states = joints[:-1]
    if noise:  # a low-quality demonstration: the robot follows its noisy targets
        states = np.vstack([joints[:1], actions[:-1]])
    frames = np.stack([render(s, target, size) for s in states])
    quadrant = QUADRANTS[(int(target[0] > 0.5), int(target[1] > 0.5))]
    return states, actions, frames, f"reach the red square at the {quadrant} and close the left hand"


def make_dataset(root: Path | str, episodes: int = 40, length: int = 64, low: int = 0, video: int = 0,
                 seed: int = 0, size: int = 64) -> Path:
    """`episodes` high-quality episodes, then `low` noisy ones and `video` action-free ones."""
    rng = np.random.default_rng(seed)
    writer = LeRobotWriter(root, dict(ACTION_DIMS), fps=20)
    for i in range(episodes + low + video):
        quality = "high" if i < episodes else "low" if i < episodes + low else "video"
        states, actions, frames, text = episode(rng, length, noise=0.05 if quality == "low" else 0.0, size=size)
        writer.add_episode(states, actions, {"ego_view": frames}, text, quality=quality)
    return writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--low", type=int, default=0)
    parser.add_argument("--video", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_dataset(args.root, args.episodes, args.length, args.low, args.video, args.seed))


if __name__ == "__main__":
    main()
