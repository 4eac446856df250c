"""The egoview as GR00T consumes it: one 16:10 render, delivered as upstream's 256 x 256 variants.

Upstream renders the head camera at 1280 x 800 and its GR00T wrapper delivers two pictures of it:
`pad` (the frame padded to a square with black rows above and below, resized to 256 x 256) and
`bg_crop_pad` (rows 310:770 and columns 110:1130 of the frame, the table and what stands on it, resized
to 720 x 480, padded to a square and resized to 256 x 256). Both pictures need far fewer pixels than
1280 x 800: we render the 16:10 frame just large enough that the crop keeps its 256 columns, and cut both
variants from that one render. `square` is this suite's earlier picture (a square render of the same
camera at any size), kept as an option.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from tasks.layout import VIDEO_KEY

UPSTREAM_FRAME = (800, 1280)                     # height, width of upstream's render
CROP_ROWS, CROP_COLS = (310, 770), (110, 1130)   # bg_crop_pad's window in that frame
CROP_RESIZE = (480, 720)                         # height, width the window is stretched to before padding
DELIVERED = 256
VARIANT_KEYS = {"pad": "video.ego_view_pad_res256_freq20", "bg_crop_pad": "video.ego_view_bg_crop_pad_res256_freq20"}
IMAGE_VARIANTS = ("bg_crop_pad", "pad", "square")
# GR00T's GR1 training data (gr1_unified.*) holds the cropped variant under `video.ego_view` (tasks/FIDELITY.md).
DEFAULT_VARIANT = "bg_crop_pad"


def validate_variant(variant: str) -> str:
    if variant not in IMAGE_VARIANTS:
        raise ValueError(f"image variant must be one of {IMAGE_VARIANTS}, got {variant!r}")
    return variant


def default_size(variant: str) -> int:
    """`video.ego_view`'s side when none is given: upstream's 256, or 224 for the square render."""
    return 224 if validate_variant(variant) == "square" else DELIVERED


def render_hw(variant: str, size: int) -> tuple[int, int]:
    """The render (height, width) a variant delivered at `size` pixels needs."""
    if validate_variant(variant) == "square":
        return size, size
    # The crop's 1020 columns must cover `size` delivered columns; the rest of the frame scales with them.
    width = math.ceil(max(size, DELIVERED) * UPSTREAM_FRAME[1] / (CROP_COLS[1] - CROP_COLS[0]))
    return math.ceil(width * UPSTREAM_FRAME[0] / UPSTREAM_FRAME[1]), width


def _pad_square(picture: Image.Image) -> Image.Image:
    """Centre a picture on a black square as wide as its longer side."""
    side = max(picture.size)
    square = Image.new("RGB", (side, side))
    square.paste(picture, ((side - picture.width) // 2, (side - picture.height) // 2))
    return square


def pad(frame: np.ndarray, size: int = DELIVERED) -> np.ndarray:
    """The whole frame, padded to a square and resized to `size` x `size`."""
    return np.asarray(_pad_square(Image.fromarray(frame)).resize((size, size), Image.BILINEAR))


def bg_crop_pad(frame: np.ndarray, size: int = DELIVERED) -> np.ndarray:
    """Upstream's window on the table, stretched to 3:2, padded to a square and resized to `size` x `size`."""
    h, w = frame.shape[:2]
    rows = [round(r * h / UPSTREAM_FRAME[0]) for r in CROP_ROWS]
    cols = [round(c * w / UPSTREAM_FRAME[1]) for c in CROP_COLS]
    window = Image.fromarray(np.ascontiguousarray(frame[rows[0]:rows[1], cols[0]:cols[1]]))
    # Straight to the final scale: 720 x 480 padded to 720 x 720 is the same picture as size x (size * 2/3).
    stretched = window.resize((size, round(size * CROP_RESIZE[0] / CROP_RESIZE[1])), Image.BILINEAR)
    return np.asarray(_pad_square(stretched))


_CUT = {"pad": pad, "bg_crop_pad": bg_crop_pad}


def deliver(frame: np.ndarray, variant: str, size: int) -> dict[str, np.ndarray]:
    """The observation's pictures from one render: `video.ego_view` in `variant` at `size`, and (for the
    upstream variants) both of upstream's 256-pixel keys."""
    if variant == "square":
        return {VIDEO_KEY: frame}
    pictures = {key: _CUT[name](frame) for name, key in VARIANT_KEYS.items()}
    main = pictures[VARIANT_KEYS[variant]] if size == DELIVERED else _CUT[variant](frame, size)
    return {VIDEO_KEY: main, **pictures}
