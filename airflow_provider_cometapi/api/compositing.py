"""What a model did outside the mask: measure it, and undo it by compositing over the source.

Pure functions on encoded images (no I/O). A mask's alpha 255 marks pixels to keep, alpha 0
pixels to edit; partial alpha blends the two. Images are compared and composited at 8 bits a
channel in RGB, or RGBA when the source or the output has transparency (a 16-bit source is
scaled to 8 bits).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from functools import reduce
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

    from airflow_provider_cometapi.api.results import EditedImage

STRIP_ROWS = 256
"""Rows compared at a time, so the difference images stay small whatever the output's size."""
KEPT = [0] * 255 + [255]
"""Lookup table: alpha 255 (keep) becomes 255, anything else 0."""
LOSSY_TOLERANCE = 24
"""How far (0-255) a channel of a JPEG or WEBP output may differ from the source before its
pixel counts as changed: their compression alone moves an untouched pixel by up to about 20
at quality 90, and by more than 24 in under 1 % of pixels even at quality 75. PNG: 0."""
LOSSY_TYPES = frozenset({"image/jpeg", "image/webp"})
LOSSLESS_FORMATS = {"image/png": "PNG", "image/webp": "WEBP"}
"""Composites are written lossless (else kept pixels would not stay exact): PNG or lossless
WEBP; a JPEG output's composite is written as PNG."""


@dataclass(frozen=True)
class Drift:
    """What the model changed where the mask says keep.

    :param kept_pixels: pixels the mask keeps (alpha 255).
    :param changed_pixels: kept pixels the model's output changed: a channel differs by more
        than ``tolerance``.
    :param mean_abs_diff: the mean absolute difference of the changed pixels, per channel
        (0-255); 0 when none changed.
    :param tolerance: the difference a channel may have and still count as unchanged.
    """

    kept_pixels: int
    changed_pixels: int
    mean_abs_diff: float
    tolerance: int = 0

    @property
    def changed_fraction(self) -> float:
        """The share of kept pixels the model changed (0 when the mask keeps nothing)."""
        return self.changed_pixels / self.kept_pixels if self.kept_pixels else 0.0

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON, the fraction and difference rounded to 6 and 3 places."""
        return {
            "kept_pixels": self.kept_pixels,
            "changed_pixels": self.changed_pixels,
            "changed_fraction": round(self.changed_fraction, 6),
            "mean_abs_diff": round(self.mean_abs_diff, 3),
            "tolerance": self.tolerance,
        }


@dataclass(frozen=True)
class MaskedOutput:
    """One output after the mask check: the bytes to write, their type, and what was measured.

    :param composited: ``data`` is the output composited over the source (else the output as
        the model sent it).
    :param resized_from: the output's own size when it differed from the source's.
    """

    data: bytes = field(repr=False)
    mime_type: str
    drift: Drift
    composited: bool
    resized_from: tuple[int, int] | None = None

    def entry(self, output: str, *, rejected: bool = False) -> dict[str, Any]:
        """This output's line in a ``checks`` list: where it went, its drift, whether it was
        composited, resized or rejected."""
        return {
            "output": output,
            **self.drift.to_json(),
            "composited": self.composited,
            "resized_from": list(self.resized_from) if self.resized_from else None,
            "rejected": rejected,
        }


def check_output(
    output: bytes,
    source: bytes,
    mask: bytes,
    *,
    mime_type: str,
    composite: bool,
    feather: int = 0,
) -> MaskedOutput:
    """Measure ``output``'s drift from ``source`` where ``mask`` keeps pixels and, when
    ``composite``, paste the source back over it through the mask.

    The drift is measured on the model's output as sent (resized to the source's size if it
    differs), with ``LOSSY_TOLERANCE`` for a JPEG or WEBP output. The composite keeps every
    pixel of alpha 255 exactly as the source has it, takes the model's pixels where alpha is 0,
    and blends in between; ``feather`` (the radius of a Gaussian blur of the mask, in pixels)
    softens the seam into the edited area only, so kept pixels stay exact.

    :param mime_type: the output's type (``image/png``, ``image/jpeg`` or ``image/webp``).
    """
    from PIL import Image

    first: Image.Image = Image.open(io.BytesIO(source))
    raw: Image.Image = Image.open(io.BytesIO(output))
    mode = "RGBA" if first.has_transparency_data or raw.has_transparency_data else "RGB"
    kept = _alpha(mask)
    if kept.size != first.size:
        raise ValueError(f"the mask is {kept.size} but the source image is {first.size}")
    first = _in_mode(first, mode)
    resized_from = raw.size if raw.size != first.size else None
    raw = _in_mode(raw, mode)
    if resized_from is not None:
        raw = raw.resize(first.size, Image.Resampling.LANCZOS)
    tolerance = LOSSY_TOLERANCE if mime_type in LOSSY_TYPES else 0
    drift = measure_drift(raw, first, kept, tolerance)
    if not composite:
        return MaskedOutput(output, mime_type, drift, composited=False, resized_from=resized_from)
    raw.paste(first, (0, 0), feathered(kept, feather))  # in place: no third full-size image
    del first
    written_type = mime_type if mime_type in LOSSLESS_FORMATS else "image/png"
    return MaskedOutput(
        _encode(raw, written_type), written_type, drift, composited=True, resized_from=resized_from
    )


def checked_image(
    image: EditedImage, source: bytes, mask: bytes, *, composite: bool, feather: int = 0
) -> EditedImage:
    """An output held in memory, with its drift measured (``check_output``) and, when
    ``composite``, its pixels composited over ``source``."""
    checked = check_output(
        image.data, source, mask, mime_type=image.mime_type, composite=composite, feather=feather
    )
    return replace(
        image,
        data=checked.data,
        mime_type=checked.mime_type,
        check=replace(checked, data=b""),
    )


def measure_drift(output: Image, source: Image, alpha: Image, tolerance: int = 0) -> Drift:
    """Compare ``output`` with ``source`` (same size and mode) where ``alpha`` is 255, a strip
    of rows at a time; a pixel changed when a channel differs by more than ``tolerance``."""
    from PIL import ImageChops

    width, height = source.size
    kept_pixels = changed = 0
    total_diff = 0
    for top in range(0, height, STRIP_ROWS):
        box = (0, top, width, min(height, top + STRIP_ROWS))
        kept = alpha.crop(box).point(KEPT)
        kept_here = kept.histogram()[255]
        if not kept_here:
            continue
        kept_pixels += kept_here
        bands = ImageChops.difference(output.crop(box), source.crop(box)).split()
        largest = reduce(ImageChops.lighter, bands)
        changed_here = largest.point([0] * (tolerance + 1) + [255] * (255 - tolerance))
        moved = ImageChops.multiply(changed_here, kept)
        changed += moved.histogram()[255]
        for band in bands:
            total_diff += sum(value * count for value, count in enumerate(band.histogram(moved)))
    channels = len(source.getbands())
    mean = total_diff / (changed * channels) if changed else 0.0
    return Drift(kept_pixels, changed, mean, tolerance)


def feathered(alpha: Image, feather: int) -> Image:
    """``alpha`` with its edge blurred over ``feather`` pixels into the edited area only: no
    pixel the mask keeps (255) loses any of its weight."""
    if feather <= 0:
        return alpha
    from PIL import ImageChops, ImageFilter

    return ImageChops.lighter(alpha, alpha.filter(ImageFilter.GaussianBlur(feather)))


def _alpha(mask: bytes) -> Image:
    """The mask's alpha channel (a palette mask's transparency too), decoded."""
    from PIL import Image

    image: Image.Image = Image.open(io.BytesIO(mask))
    if image.mode not in ("RGBA", "LA"):
        image = image.convert("RGBA")
    return image.getchannel("A")


def _in_mode(image: Image, mode: str) -> Image:
    """``image`` decoded in ``mode``: a palette or 8-bit grey image converted exactly, a 16-bit
    one scaled to 8 bits (Pillow's own conversion would clip it)."""
    if image.mode == mode:
        image.load()
        return image
    if image.mode.startswith("I;16") or image.mode == "I":
        image = image.convert("I").point(lambda value: value / 257).convert("L")
    elif image.mode == "P":
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    return image.convert(mode)


def _encode(image: Image, mime_type: str) -> bytes:
    """Lossless bytes of ``image`` in ``mime_type``."""
    buffer = io.BytesIO()
    if mime_type == "image/webp":
        image.save(buffer, format="WEBP", lossless=True, quality=100, method=0, exact=True)
    else:
        image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
