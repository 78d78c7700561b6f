"""The emulated edit: a deterministic Pillow tint, and the usage it reports."""

from __future__ import annotations

import io
import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.emulator.errors import invalid_request

if TYPE_CHECKING:
    from PIL.Image import Image

    from airflow_provider_cometapi.emulator.validation import EditRequest

TILE_SIDE = 512
TOKENS_PER_TILE = 192
PIXELS_PER_OUTPUT_TOKEN = 4096
TINT_STRENGTH = 0.5
TINTS = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (128, 128, 0),
    (0, 0, 128),
    (170, 110, 40),
    (128, 0, 0),
)
"""Distinct tint colours; output ``i`` of ``n`` uses the next one, so outputs differ."""

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "png": {"format": "PNG", "compress_level": 1},
    "jpeg": {"format": "JPEG", "quality": 90},
    "webp": {"format": "WEBP", "quality": 80, "method": 0},
}
_EDITABLE = [255] + [0] * 255
"""Lookup table: mask alpha 0 (transparent) becomes 255 (edit here), all else 0."""


@dataclass(frozen=True)
class EditResult:
    """The encoded output images."""

    images: list[bytes]
    size: tuple[int, int]
    extension: str
    media_type: str


def _decode(data: bytes, param: str, code: str) -> Image:
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception:  # Pillow raises many types for corrupt data
        raise invalid_request(
            f"Invalid {param}: the file is corrupt or truncated.", param, code
        ) from None
    return image


def _editable_region(mask_data: bytes) -> Image:
    mask = _decode(mask_data, "mask", "invalid_mask")
    return mask.convert("RGBA").getchannel("A").point(_EDITABLE)


def _tint(source: Image, region: Image | None, colour: tuple[int, int, int]) -> Image:
    from PIL import Image

    overlay = Image.new(source.mode, source.size, colour)
    tinted = Image.blend(source, overlay, TINT_STRENGTH)
    if source.mode == "RGBA":
        tinted.putalpha(source.getchannel("A"))
    if region is not None:
        tinted = Image.composite(tinted, source, region)
    return tinted


def _encode(image: Image, output_format: str) -> bytes:
    if output_format == "jpeg" and image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, **_SAVE_OPTIONS[output_format])
    return buffer.getvalue()


def edit_images(request: EditRequest) -> EditResult:
    """Tint the first image (only where the mask is transparent, if there is a mask).

    Deterministic: the same request gives the same bytes. Blocking; run it in a thread.

    :param request: the checked edit request.
    :raises EmulatorError: 400 when an image turns out corrupt while decoding.
    """
    from PIL import Image

    source = _decode(request.images[0], "image", "invalid_image_format")
    mode = "RGBA" if source.has_transparency_data else "RGB"
    if source.mode != mode:
        source = source.convert(mode)
    region = _editable_region(request.mask) if request.mask is not None else None
    size = request.size or source.size
    if size != source.size:
        source = source.resize(size, Image.Resampling.BILINEAR)
        if region is not None:
            region = region.resize(size, Image.Resampling.NEAREST)
    first = zlib.crc32(request.prompt.encode())
    outputs = [
        _encode(_tint(source, region, TINTS[(first + i) % len(TINTS)]), request.output_format)
        for i in range(request.n)
    ]
    return EditResult(
        images=outputs,
        size=size,
        extension=request.output_format,
        media_type=MEDIA_TYPES[request.output_format],
    )


def image_tokens(width: int, height: int) -> int:
    """Return the input tokens of one image: :data:`TOKENS_PER_TILE` per started 512x512 tile.

    :param width: image width in pixels.
    :param height: image height in pixels.
    """
    return TOKENS_PER_TILE * math.ceil(width / TILE_SIDE) * math.ceil(height / TILE_SIDE)


def compute_usage(request: EditRequest, output_size: tuple[int, int]) -> dict[str, Any]:
    """Return the ``usage`` object in CometAPI's documented shape.

    Image tokens come from the input sizes, text tokens are the prompt's words, output
    tokens are one per started 4096 output pixels of each image.

    :param request: the checked edit request.
    :param output_size: width and height of each output image.
    """
    image_total = sum(image_tokens(w, h) for w, h in request.image_sizes)
    text_total = len(request.prompt.split())
    per_output = math.ceil(output_size[0] * output_size[1] / PIXELS_PER_OUTPUT_TOKEN)
    output_total = per_output * request.n
    input_total = image_total + text_total
    return {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": input_total + output_total,
        "prompt_tokens_details": {"cached_tokens_details": {}},
        "completion_tokens_details": {},
        "input_tokens": input_total,
        "output_tokens": output_total,
        "input_tokens_details": {
            "image_tokens": image_total,
            "text_tokens": text_total,
            "cached_tokens_details": {},
        },
        "claude_cache_creation_5_m_tokens": 0,
        "claude_cache_creation_1_h_tokens": 0,
    }
