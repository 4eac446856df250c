"""Episode videos: H.264 mp4 through PyAV, with the instruction written under the picture.

The caption goes in a band below the frame rather than over it, so nothing the policy saw is hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_SIZE = 12
LINE_HEIGHT = 16
MARGIN = 4


def write_video(path: Path | str, frames: Sequence[np.ndarray], fps: int = 20, caption: str | None = None) -> None:
    """Encode uint8 (H, W, 3) frames as an mp4; `caption` is drawn on every frame, wrapped to its width."""
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    height, width = frames[0].shape[:2]
    band = _caption_band(caption, width) if caption else None
    # yuv420p needs even sides: pad the canvas by a black row or column where the picture is odd.
    canvas_h = height + (0 if band is None else band.shape[0])
    canvas = np.zeros((canvas_h + canvas_h % 2, width + width % 2, 3), dtype=np.uint8)
    if band is not None:
        canvas[height:canvas_h, :width] = band
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = canvas.shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            canvas[:height, :width] = frame
            container.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        container.mux(stream.encode())  # flush the encoder's delayed frames


def _caption_band(caption: str, width: int) -> np.ndarray:
    """White text on black, wrapped to the frame's width, as an (h, width, 3) array."""
    font = ImageFont.load_default(size=FONT_SIZE)
    lines = [""]
    for word in caption.split():
        longer = f"{lines[-1]} {word}".lstrip()
        if lines[-1] and font.getlength(longer) > width - 2 * MARGIN:
            lines.append(word)
        else:
            lines[-1] = longer
    image = Image.new("RGB", (width, len(lines) * LINE_HEIGHT + 2 * MARGIN))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((MARGIN, MARGIN + i * LINE_HEIGHT), line, fill=(255, 255, 255), font=font)
    return np.asarray(image)
