"""Request checks for ``POST /v1/images/edits``; failures become OpenAI-style 400 errors."""

from __future__ import annotations

import hmac
import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.emulator.errors import invalid_api_key, invalid_request
from airflow_provider_cometapi.emulator.families import (
    Family,
    SeedEditOptions,
    check_seededit_image,
    family_of,
    seededit_options,
)

if TYPE_CHECKING:
    from PIL.Image import Image
    from starlette.datastructures import FormData

IMAGE_FIELDS = ("image", "image[]")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
MAX_IMAGES = 16
DEFAULT_MODEL = "gpt-image-2"
QUALITIES = ("high", "medium", "low", "auto", "standard")
RESPONSE_FORMATS = ("url", "b64_json")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
MIN_SIDE, MAX_SIDE = 16, 4096
_SIZE = re.compile(r"(\d+)x(\d+)")
_PILLOW_FORMATS = {"PNG", "JPEG", "WEBP"}


@dataclass(frozen=True)
class FilePart:
    """One uploaded file part of the multipart body."""

    field: str
    filename: str
    content_type: str
    data: bytes

    def describe(self) -> dict[str, Any]:
        """Return the part as recorded: field, filename, content type and size."""
        return {
            "field": self.field,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": len(self.data),
        }


@dataclass(frozen=True)
class EditRequest:
    """A checked edit request; images stay encoded until the edit decodes them."""

    images: list[bytes]
    image_sizes: list[tuple[int, int]]
    mask: bytes | None
    prompt: str
    model: str
    n: int
    quality: str | None
    response_format: str
    output_format: str
    size: tuple[int, int] | None
    family: Family = Family.GPT
    seededit: SeedEditOptions | None = None
    """The SeedEdit/Seedream fields, for that family only."""


async def read_form(form: FormData) -> tuple[dict[str, str], list[FilePart]]:
    """Split a parsed multipart body into text fields and file parts.

    :param form: the body as parsed by Starlette.
    """
    fields: dict[str, str] = {}
    files: list[FilePart] = []
    for name, value in form.multi_items():
        if isinstance(value, str):
            fields[name] = value
        else:
            data = await value.read()
            content_type = (value.content_type or "").split(";")[0].strip().lower()
            files.append(FilePart(name, value.filename or "", content_type, data))
    return fields, files


def check_api_key(authorization: str | None, expected: str | None) -> None:
    """Accept ``Bearer <key>``: any non-empty key when ``expected`` is ``None``, else only it.

    :param authorization: the ``Authorization`` header, if any.
    :param expected: the one key accepted, or ``None`` for any.
    :raises EmulatorError: 401 ``invalid_api_key``.
    """
    scheme, _, key = (authorization or "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise invalid_api_key()
    if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
        raise invalid_api_key()


def _open_image(part: FilePart, param: str, code: str) -> Image:
    from PIL import Image

    if part.content_type not in IMAGE_TYPES:
        shown = part.content_type or "none"
        raise invalid_request(
            f"Invalid file {part.filename!r}: unsupported mimetype ({shown!r}). "
            "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.",
            param,
            code,
        )
    try:
        image = Image.open(io.BytesIO(part.data))
    except Exception:  # Pillow raises many types for unreadable data
        image = None
    if image is None or image.format not in _PILLOW_FORMATS:
        raise invalid_request(
            f"Invalid image file {part.filename!r}: it is not a readable PNG, JPEG or WEBP image.",
            param,
            code,
        )
    return image


def _choice(fields: dict[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = fields.get(name)
    if value is not None and value not in allowed:
        raise invalid_request(
            f"Invalid value {value!r} for '{name}'. Supported values are: "
            + ", ".join(repr(a) for a in allowed)
            + ".",
            name,
            "invalid_value",
        )
    return value


def _count(fields: dict[str, str]) -> int:
    raw = fields.get("n", "1").strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 10:
        raise invalid_request(
            f"Invalid value {raw!r} for 'n': it must be an integer from 1 to 10.",
            "n",
            "invalid_value",
        )
    return int(raw)


def _size(fields: dict[str, str]) -> tuple[int, int] | None:
    raw = fields.get("size")
    if raw is None or raw == "auto":
        return None
    match = _SIZE.fullmatch(raw.strip())
    if match:
        width, height = int(match[1]), int(match[2])
        if MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE:
            return width, height
    raise invalid_request(
        f"Invalid value {raw!r} for 'size': use 'auto' or WIDTHxHEIGHT with each side "
        f"from {MIN_SIDE} to {MAX_SIDE}, e.g. '1024x1024'.",
        "size",
        "invalid_value",
    )


def _images(fields: dict[str, str], files: list[FilePart]) -> list[FilePart]:
    images = [part for part in files if part.field in IMAGE_FIELDS]
    if not images:
        sent_as_text = any(name in fields for name in IMAGE_FIELDS)
        raise invalid_request(
            "'image' must be a file upload with a filename."
            if sent_as_text
            else "Missing required parameter: 'image'.",
            "image",
            "invalid_image_format" if sent_as_text else "missing_required_parameter",
        )
    if len(images) > MAX_IMAGES:
        raise invalid_request(
            f"Too many images: got {len(images)}, at most {MAX_IMAGES} are allowed.",
            "image",
            "too_many_images",
        )
    return images


def _prompt(fields: dict[str, str]) -> str:
    prompt = fields.get("prompt")
    if prompt is None:
        raise invalid_request(
            "Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter"
        )
    if not prompt.strip():
        raise invalid_request("'prompt' must not be blank.", "prompt", "invalid_value")
    return prompt


def _model(fields: dict[str, str]) -> str:
    model = fields.get("model", DEFAULT_MODEL)
    if not model.strip():
        raise invalid_request("'model' must not be blank.", "model", "invalid_value")
    return model


def _check_mask(mask: Image, first_size: tuple[int, int]) -> None:
    if mask.format != "PNG" or not mask.has_transparency_data:
        raise invalid_request(
            "Invalid mask: it must be a PNG with an alpha channel (transparent where to edit).",
            "mask",
            "invalid_mask",
        )
    if mask.size != first_size:
        raise invalid_request(
            f"Invalid mask: its size {mask.size[0]}x{mask.size[1]} differs from the image's "
            f"{first_size[0]}x{first_size[1]}.",
            "mask",
            "mask_size_mismatch",
        )


def validate_edit(fields: dict[str, str], files: list[FilePart]) -> EditRequest:
    """Check an edit request as the real service does and return it parsed.

    Images are opened (header only) to check their type and read their size. Every model gets
    the same checks; the SeedEdit/Seedream family's images and fields are checked further, by
    ``families.py``. Fields no check knows are accepted as they are.

    :param fields: the text form fields.
    :param files: the file parts.
    :raises EmulatorError: 400 ``invalid_request_error`` naming the field at fault.
    """
    images = _images(fields, files)
    opened = [_open_image(part, "image", "invalid_image_format") for part in images]
    sizes = [image.size for image in opened]
    prompt = _prompt(fields)
    model = _model(fields)
    family = family_of(model)
    options: SeedEditOptions | None = None
    if family is Family.SEEDEDIT:
        for part, image in zip(images, opened, strict=True):
            check_seededit_image(
                part.filename, part.content_type, part.data, image.format or "", image.size
            )
        options = seededit_options(fields)
    n = _count(fields)
    quality = _choice(fields, "quality", QUALITIES)
    response_format = _choice(fields, "response_format", RESPONSE_FORMATS) or "b64_json"
    output_format = _choice(fields, "output_format", OUTPUT_FORMATS) or "png"
    size = None if options is not None and options.adaptive else _size(fields)
    mask = next((part for part in files if part.field == "mask"), None)
    if mask is not None:
        _check_mask(_open_image(mask, "mask", "invalid_mask"), sizes[0])
    return EditRequest(
        images=[part.data for part in images],
        image_sizes=sizes,
        mask=mask.data if mask is not None else None,
        prompt=prompt,
        model=model,
        n=n,
        quality=quality,
        response_format=response_format,
        output_format=output_format,
        size=size,
        family=family,
        seededit=options,
    )
