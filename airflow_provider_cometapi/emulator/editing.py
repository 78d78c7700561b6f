"""The emulated edit: a deterministic Pillow tint, and the usage it reports."""

from __future__ import annotations

import hashlib
import io
import json
import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.emulator.drift import drift, kept_pixels
from airflow_provider_cometapi.emulator.errors import invalid_request
from airflow_provider_cometapi.emulator.families import Family, seededit_usage

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
WATERMARK_COLOUR = (255, 0, 255)
"""The watermark: a square of this colour in the bottom-right corner, its side an eighth of the
shorter side (at least 1 px), painted last. No tint of a pixel can give this colour."""


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


def _mask_alpha(mask_data: bytes) -> Image:
    mask = _decode(mask_data, "mask", "invalid_mask")
    return mask.convert("RGBA").getchannel("A")


def _watermark(image: Image) -> Image:
    side = max(1, min(image.size) // 8)
    width, height = image.size
    colour = (*WATERMARK_COLOUR, 255) if image.mode == "RGBA" else WATERMARK_COLOUR
    image.paste(colour, (width - side, height - side, width, height))
    return image


def _seed(request: EditRequest, drift_share: float, index: int) -> int:
    """A seed made of everything the request asked for, so the same request drifts the same."""
    digest = hashlib.sha256()
    for data in (*request.images, request.mask or b""):
        digest.update(hashlib.sha256(data).digest())
    seed = request.seededit.seed if request.seededit is not None else None
    asked = [request.prompt, request.model, request.n, request.size, request.quality, seed]
    asked.append(request.output_format)
    digest.update(json.dumps([*asked, drift_share, index]).encode())
    return int.from_bytes(digest.digest()[:8], "big")


def _first_tint(request: EditRequest) -> int:
    first = zlib.crc32(request.prompt.encode())
    if request.seededit is not None and request.seededit.seed > 0:
        first += request.seededit.seed
    return first


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


def edit_images(request: EditRequest, drift_share: float = 0.0) -> EditResult:
    """Tint the first image (only where the mask is transparent, if there is a mask).

    Where the mask's alpha is 255 the output keeps the source's pixels exactly, except the
    ``drift_share`` of them ``drift.py`` changes, and the SeedEdit watermark (on unless the
    request says ``watermark=false``) painted over the bottom-right corner last.
    Deterministic: the same request gives the same bytes. Blocking; run it in a thread.

    :param request: the checked edit request.
    :param drift_share: the share of kept pixels to change, 0 to 1.
    :raises EmulatorError: 400 when an image turns out corrupt while decoding.
    """
    from PIL import Image

    source = _decode(request.images[0], "image", "invalid_image_format")
    mode = "RGBA" if source.has_transparency_data else "RGB"
    if source.mode != mode:
        source = source.convert(mode)
    alpha = _mask_alpha(request.mask) if request.mask is not None else None
    size = request.size or source.size
    if size != source.size:
        source = source.resize(size, Image.Resampling.BILINEAR)
        if alpha is not None:
            alpha = alpha.resize(size, Image.Resampling.NEAREST)
    region = alpha.point(_EDITABLE) if alpha is not None else None
    kept = kept_pixels(alpha) if alpha is not None and drift_share > 0 else []
    watermark = request.seededit is not None and request.seededit.watermark
    first = _first_tint(request)
    outputs = []
    for i in range(request.n):
        image = _tint(source, region, TINTS[(first + i) % len(TINTS)])
        if kept:
            image = drift(image, kept, drift_share, _seed(request, drift_share, i))
        if watermark:
            image = _watermark(image)
        outputs.append(_encode(image, request.output_format))
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
    """Return the ``usage`` object in the shape of the request's model family.

    Image tokens come from the input sizes, text tokens are the prompt's words, output
    tokens are one per started 4096 output pixels of each image. GPT-like models answer
    CometAPI's documented shape; SeedEdit/Seedream only ``generated_images``,
    ``output_tokens`` and ``total_tokens``.

    :param request: the checked edit request.
    :param output_size: width and height of each output image.
    """
    per_output = math.ceil(output_size[0] * output_size[1] / PIXELS_PER_OUTPUT_TOKEN)
    output_total = per_output * request.n
    if request.family is Family.SEEDEDIT:
        return seededit_usage(request.n, output_total)
    image_total = sum(image_tokens(w, h) for w, h in request.image_sizes)
    text_total = len(request.prompt.split())
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
