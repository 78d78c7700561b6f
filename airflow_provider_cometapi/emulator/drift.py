"""Drift: real models repaint pixels outside the mask; the emulator can too, on request.

With a mask, a drift of ``d`` (0 to 1) changes ``round(d * K)`` (Python's ``round``) of the ``K``
kept pixels (mask alpha 255) of each output: it adds 128 to every colour channel, mod 256 (alpha
is kept), so a changed pixel differs in every channel. Which pixels is drawn from a seed made of
the request, so the same request gives the same bytes. Drift 0, the default, keeps every kept
pixel exactly the source's. Without a mask nothing is kept, so drift changes nothing.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

DRIFT_HEADER = "x-emulator-drift"
DRIFT_SHIFT = 128
"""What a drifted pixel adds to each colour channel, mod 256."""
_SHIFTED = [(value + DRIFT_SHIFT) % 256 for value in range(256)]
_UNCHANGED = list(range(256))
_KEPT_FLAGS = bytes(255) + b"\x01"
"""Translation table: mask alpha 255 becomes 1 (kept), all else 0."""


def parse_drift(value: str | float) -> float:
    """Return a drift share from ``0.3`` or ``"0.3"``.

    :param value: the share of kept pixels to change, 0 to 1.
    :raises ValueError: not a number from 0 to 1.
    """
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = math.nan
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"drift must be a number from 0 to 1, got {value!r}")
    return share


def kept_pixels(alpha: Image) -> list[int]:
    """Return the flat indices (``y * width + x``) of the pixels whose mask alpha is 255.

    :param alpha: the mask's alpha channel (mode ``L``), at the output's size.
    """
    flags = alpha.tobytes().translate(_KEPT_FLAGS)
    return list(itertools.compress(range(len(flags)), flags))


def drift(image: Image, kept: list[int], share: float, seed: int) -> Image:
    """Return ``image`` with ``round(share * len(kept))`` of the ``kept`` pixels shifted.

    :param image: an output (mode ``RGB`` or ``RGBA``).
    :param kept: from :func:`kept_pixels`.
    :param share: the drift, 0 to 1.
    :param seed: picks which kept pixels change; the same seed picks the same ones.
    """
    from PIL import Image

    count = round(share * len(kept))
    if count == 0:
        return image
    picked = bytearray(image.width * image.height)
    for index in random.Random(seed).sample(kept, count):
        picked[index] = 255
    table = _SHIFTED * 3 + (_UNCHANGED if image.mode == "RGBA" else [])
    shifted = image.point(table)
    return Image.composite(shifted, image, Image.frombytes("L", image.size, bytes(picked)))
