"""What differs between the model families behind ``/v1/images/edits`` (``models.md``).

- GPT image models, and every model not listed as another family (``qwen-image-edit``, made-up
  names): the emulator's default. ``data[].b64_json`` (``data[].url`` when asked with
  ``response_format=url``) and the long usage object of CometAPI's page.
- ByteDance SeedEdit/Seedream (:data:`SEEDEDIT_MODELS`): always ``data[].url``, with ``model``,
  ``created`` and usage ``{generated_images, output_tokens, total_tokens}``. Images are JPEG or
  PNG, at most 10 MB (10,000,000 bytes), aspect ratio (width/height) 1/3 to 3, each side over
  14 px. Extra fields: ``size=adaptive`` (the input's size; other sizes are read as for GPT
  models), ``seed``
  (-1 to 2147483647; a seed over 0 shifts the tint, while -1, random for the real service, leaves
  outputs deterministic), ``guidance_scale`` (1.0 to 10.0, checked only) and ``watermark``
  (``true``/``false``, default true: a fixed patch, see ``editing.WATERMARK_COLOUR``).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.emulator.errors import invalid_request

if TYPE_CHECKING:
    from collections.abc import Mapping

GPT_MODELS = ("gpt-image-2", "gpt-image-1.5", "gpt-image-1")
SEEDEDIT_MODELS = (
    "bytedance-seedEdit-3.0-i2i",
    "doubao-seededit-3-0-i2i-250628",
    "seedream-4-0-250828",
)
LISTED_MODELS = (*GPT_MODELS, *SEEDEDIT_MODELS, "qwen-image-edit")
"""What ``GET /v1/models`` lists."""

SEEDEDIT_IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
SEEDEDIT_MAX_BYTES = 10_000_000
"""The page's "at most 10 MB", in decimal megabytes."""
SEEDEDIT_MAX_RATIO = 3
"""Width/height from 1/3 to 3."""
SEEDEDIT_MIN_SIDE = 15
"""Each side must be more than 14 px."""
SEED_RANGE = (-1, 2147483647)
GUIDANCE_RANGE = (1.0, 10.0)
_BOOLEANS = {"true": True, "false": False}


class Family(enum.Enum):
    """A model family: how the emulator checks a request and shapes the answer."""

    GPT = "gpt"
    SEEDEDIT = "seededit"

    def answers_urls(self, response_format: str) -> bool:
        """Whether the images go as ``data[].url`` (else ``data[].b64_json``).

        :param response_format: the checked ``response_format`` field.
        """
        return self is Family.SEEDEDIT or response_format == "url"


def family_of(model: str) -> Family:
    """Return the family of a model name; unknown names are GPT-like.

    :param model: the ``model`` field.
    """
    return Family.SEEDEDIT if model in SEEDEDIT_MODELS else Family.GPT


@dataclass(frozen=True)
class SeedEditOptions:
    """The checked SeedEdit/Seedream fields."""

    adaptive: bool
    seed: int
    guidance_scale: float | None
    watermark: bool


def seededit_options(fields: Mapping[str, str]) -> SeedEditOptions:
    """Check and return the SeedEdit/Seedream fields.

    :param fields: the text form fields.
    :raises EmulatorError: 400 naming the field at fault.
    """
    return SeedEditOptions(
        adaptive=fields.get("size", "").strip() == "adaptive",
        seed=_seed(fields.get("seed")),
        guidance_scale=_guidance(fields.get("guidance_scale")),
        watermark=_watermark(fields.get("watermark")),
    )


def _seed(raw: str | None) -> int:
    low, high = SEED_RANGE
    if raw is None:
        return low
    try:
        value = int(raw.strip())
    except ValueError:
        value = low - 1
    if low <= value <= high:
        return value
    raise invalid_request(
        f"Invalid value {raw!r} for 'seed': it must be an integer from {low} to {high}.",
        "seed",
        "invalid_value",
    )


def _guidance(raw: str | None) -> float | None:
    low, high = GUIDANCE_RANGE
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if low <= value <= high:
        return value
    raise invalid_request(
        f"Invalid value {raw!r} for 'guidance_scale': it must be a number from {low} to {high}.",
        "guidance_scale",
        "invalid_value",
    )


def _watermark(raw: str | None) -> bool:
    if raw is None:
        return True
    value = _BOOLEANS.get(raw.strip().lower())
    if value is None:
        raise invalid_request(
            f"Invalid value {raw!r} for 'watermark': it must be true or false.",
            "watermark",
            "invalid_value",
        )
    return value


def check_seededit_image(
    filename: str, content_type: str, data: bytes, image_format: str, size: tuple[int, int]
) -> None:
    """Refuse an image SeedEdit/Seedream does not take.

    :param filename: the part's file name, for the message.
    :param content_type: the part's content type.
    :param data: the encoded image.
    :param image_format: the format Pillow read (``PNG``, ``JPEG``, ``WEBP``).
    :param size: width and height in pixels.
    :raises EmulatorError: 400 naming ``image``.
    """
    if SEEDEDIT_IMAGE_TYPES.get(content_type) != image_format:
        raise invalid_request(
            f"Invalid image file {filename!r}: this model takes JPEG or PNG images only.",
            "image",
            "invalid_image_format",
        )
    if len(data) > SEEDEDIT_MAX_BYTES:
        raise invalid_request(
            f"Invalid image file {filename!r}: {len(data)} bytes, over this model's 10 MB limit.",
            "image",
            "image_too_large",
        )
    width, height = size
    ratio_ok = width <= SEEDEDIT_MAX_RATIO * height and height <= SEEDEDIT_MAX_RATIO * width
    if min(width, height) < SEEDEDIT_MIN_SIDE or not ratio_ok:
        raise invalid_request(
            f"Invalid image file {filename!r}: {width}x{height}; this model needs each side over "
            "14 px and an aspect ratio (width/height) from 1/3 to 3.",
            "image",
            "invalid_image_size",
        )


def seededit_usage(images: int, output_tokens: int) -> dict[str, Any]:
    """Return a SeedEdit/Seedream ``usage``: no input tokens.

    :param images: how many images were generated.
    :param output_tokens: the tokens of every output together.
    """
    return {
        "generated_images": images,
        "output_tokens": output_tokens,
        "total_tokens": output_tokens,
    }
