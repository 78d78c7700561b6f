"""Image inputs: read, sniff and check each image and mask before anything is sent."""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

from airflow_provider_cometapi.api.text import excerpt
from airflow_provider_cometapi.exceptions import CometAPISourceError, CometAPIValidationError

if TYPE_CHECKING:
    from PIL import Image as PILImage

MIB = 1024 * 1024
MB = 1_000_000
"""The model pages' megabyte: "under 4 MB" and "at most 10 MB" are decimal, so a mask of
4,000,000 bytes and a SeedEdit image of 10,000,001 are refused (the general limit stays 50 MiB)."""
MAX_IMAGE_BYTES = 50 * MIB
MAX_IMAGES = 16
SENT_MIME_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
PNG_MODES = frozenset({"1", "L", "LA", "I;16", "I;16B", "P", "RGB", "RGBA"})
"""Pillow modes written to PNG as they are; others are converted first."""

ImageInput = Union[bytes, bytearray, memoryview, tuple[str, bytes], str, "os.PathLike[str]"]
"""Raw bytes, a ``(filename, bytes)`` pair, or a local path."""


@dataclass(frozen=True)
class ImageLimits:
    """What a model takes as images and mask; the defaults are the limits every model gets."""

    max_images: int = MAX_IMAGES
    max_bytes: int = MAX_IMAGE_BYTES
    mime_types: tuple[str, ...] = tuple(SENT_MIME_TYPES)
    """Sent as they are; other formats are converted to PNG (so PNG is always one of them)."""
    max_ratio: float | None = None
    """Longest side over shortest side."""
    min_side: int = 1
    takes_mask: bool = True
    mask_max_bytes: int = MAX_IMAGE_BYTES


GENERAL_LIMITS = ImageLimits()


@dataclass(frozen=True)
class ImagePart:
    """One checked image, ready to send as a multipart file part."""

    filename: str
    data: bytes = field(repr=False)
    mime_type: str
    width: int
    height: int


def sniff_mime_type(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG or WEBP bytes, from their leading bytes; else ``None``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def read_image_input(value: ImageInput, field_name: str) -> tuple[str, bytes]:
    """Turn any accepted input form into ``(filename, bytes)``, checking the size first."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        _check_byte_size(len(data), field_name, "the bytes given")
        return "", data
    if isinstance(value, tuple) and len(value) == 2:
        name, data = value
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CometAPIValidationError(
                f"{field_name}: a (filename, data) pair needs bytes as data, got "
                f"{type(data).__name__}.",
                param=field_name,
            )
        _check_byte_size(len(data), field_name, repr(name))
        return str(name), bytes(data)
    if isinstance(value, (str, os.PathLike)):
        return _read_local_file(Path(value), field_name)
    raise CometAPIValidationError(
        f"{field_name}: expected bytes, a (filename, bytes) pair or a local path, got "
        f"{type(value).__name__}.",
        param=field_name,
    )


def check_image(
    filename: str,
    data: bytes,
    field_name: str,
    limits: ImageLimits = GENERAL_LIMITS,
    model: str | None = None,
) -> ImagePart:
    """Check one source image against ``limits`` (``model``'s own, named in errors, when
    given); convert formats outside ``limits.mime_types`` to PNG."""
    label = _label(field_name, filename)
    _check_byte_size(len(data), field_name, label)
    if not data:
        raise CometAPIValidationError(
            f"{label} is empty (0 bytes): check that the file was written completely.",
            param=field_name,
        )
    mime_type = sniff_mime_type(data)
    image = _open_checked(data, label, field_name, fully=mime_type != "image/png")
    width, height = image.size
    _check_shape(width, height, label, field_name, limits, model)
    if mime_type not in limits.mime_types:
        data = _to_png(image, label, field_name)
        label = f"{label} (converted to PNG)"
        mime_type = "image/png"
    _check_byte_size(len(data), field_name, label, limits.max_bytes, model)
    return ImagePart(
        filename=_filename_for(filename, mime_type, field_name),
        data=data,
        mime_type=mime_type,
        width=width,
        height=height,
    )


def check_mask(
    filename: str,
    data: bytes,
    first_image: ImagePart,
    limits: ImageLimits = GENERAL_LIMITS,
    model: str | None = None,
) -> ImagePart:
    """Check the mask: a PNG with an alpha channel, the same size as the first image, within
    ``limits`` (``model``'s own, named in errors, when given)."""
    label = _label("mask", filename)
    if not limits.takes_mask:
        raise CometAPIValidationError(
            f"mask: {model} takes no mask; leave it out and describe the area in the prompt.",
            param="mask",
        )
    _check_byte_size(len(data), "mask", label, limits.mask_max_bytes, model)
    if not data:
        raise CometAPIValidationError(
            f"{label} is empty (0 bytes): check that the file was written completely.",
            param="mask",
        )
    if sniff_mime_type(data) != "image/png":
        raise CometAPIValidationError(
            f"{label} is not a PNG: save the mask as a PNG with an alpha channel "
            "(transparent where the image should change).",
            param="mask",
        )
    image = _open_checked(data, label, "mask", fully=False)
    if not _has_alpha(image):
        raise CometAPIValidationError(
            f"{label} has no alpha channel (mode {image.mode}): save it as RGBA, with "
            "alpha 0 where the image should change.",
            param="mask",
        )
    if image.size != (first_image.width, first_image.height):
        raise CometAPIValidationError(
            f"{label} is {image.size[0]}x{image.size[1]} but the image is "
            f"{first_image.width}x{first_image.height}: resize the mask to match.",
            param="mask",
        )
    return ImagePart(
        filename=_filename_for(filename, "image/png", "mask"),
        data=data,
        mime_type="image/png",
        width=image.size[0],
        height=image.size[1],
    )


def _label(field_name: str, filename: str) -> str:
    return f"{field_name} {excerpt(filename)!r}" if filename else field_name


def _check_byte_size(
    size: int, field_name: str, label: str, limit: int = MAX_IMAGE_BYTES, model: str | None = None
) -> None:
    """Refuse more than ``limit`` bytes: a whole number of MiB (the general limit) is worded in
    MiB; a model page's limit in decimal MB, exactly ("at most 10 MB" is 10,000,000 bytes; "under
    4 MB" is stored as 3,999,999, the most it takes)."""
    if size <= limit:
        return
    if limit % MIB == 0:
        over = f"{size / MIB:.1f} MiB, over the {limit // MIB} MiB limit{_for(model)}"
    elif (limit + 1) % MB == 0:
        over = (
            f"{size:,} bytes; it must be under {(limit + 1) // MB} MB "
            f"({limit + 1:,} bytes){_for(model)}"
        )
    else:
        over = f"{size:,} bytes, over the {limit / MB:g} MB limit ({limit:,} bytes){_for(model)}"
    raise CometAPIValidationError(
        f"{field_name}: {label} is {over}: downscale or recompress it.", param=field_name
    )


def _check_shape(
    width: int, height: int, label: str, field_name: str, limits: ImageLimits, model: str | None
) -> None:
    """Each side at least ``limits.min_side``, the longest at most ``limits.max_ratio`` times
    the shortest."""
    long, short = max(width, height), min(width, height)
    if short < limits.min_side:
        raise CometAPIValidationError(
            f"{label} is {width}x{height}: each side must be at least {limits.min_side} px"
            f"{_for(model)}; enlarge it.",
            param=field_name,
        )
    if limits.max_ratio is not None and long > limits.max_ratio * short:
        raise CometAPIValidationError(
            f"{label} is {width}x{height}, a ratio of {long / short:.2f}:1: the ratio must be "
            f"within {limits.max_ratio:g}:1 either way{_for(model)}; crop or pad it.",
            param=field_name,
        )


def _for(model: str | None) -> str:
    return f" for {model}" if model else ""


def _read_local_file(path: Path, field_name: str) -> tuple[str, bytes]:
    try:
        size = path.stat().st_size
        _check_byte_size(size, field_name, repr(str(path)))
        return path.name, path.read_bytes()
    except CometAPIValidationError:
        raise
    except FileNotFoundError:
        raise CometAPISourceError(
            f"{field_name}: no file at {str(path)!r}; check the path.", param=field_name
        ) from None
    except OSError as exc:
        raise CometAPISourceError(
            f"{field_name}: cannot read {str(path)!r} ({exc.strerror or type(exc).__name__}).",
            param=field_name,
        ) from None


def _open_checked(data: bytes, label: str, field_name: str, *, fully: bool) -> PILImage.Image:
    """Open with Pillow and check integrity and the pixel limit, without a full decode for PNG."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if limit and width * height > limit:
                raise Image.DecompressionBombError("over the pixel limit")
            if fully:  # decode a probe: a JPEG draft shrinks the image it is applied to
                probe = Image.open(io.BytesIO(data))
                probe.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                probe.load()
                if probe.size == image.size:
                    image = probe  # decoded at full size: reused for the PNG conversion
            else:
                Image.open(io.BytesIO(data)).verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CometAPIValidationError(
            f"{label} declares more pixels than Pillow's safety limit "
            f"({limit} pixels): downscale it.",
            param=field_name,
        ) from None
    except Exception as exc:  # Pillow raises many types for corrupt data
        if isinstance(exc, ValueError) and "MAX_TEXT_" in str(exc):
            raise CometAPIValidationError(
                f"{label} has compressed text metadata (zTXt/iTXt) that inflates past Pillow's "
                "safety limit: re-save it without metadata.",
                param=field_name,
            ) from None
        raise CometAPIValidationError(
            f"{label} is not a readable image ({type(exc).__name__}: {excerpt(str(exc))}): "
            "send a PNG, JPEG or WEBP file.",
            param=field_name,
        ) from None
    return image


def _has_alpha(image: PILImage.Image) -> bool:
    """Whether the image has an alpha channel or a transparent colour."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _png_mode(image: PILImage.Image) -> str:
    """A mode PNG can store: the image's own, 16-bit grey for 32-bit integer, else RGB(A)."""
    if image.mode in PNG_MODES:
        return image.mode
    if image.mode == "I":
        return "I;16"
    return "RGBA" if _has_alpha(image) else "RGB"


def _to_png(image: PILImage.Image, label: str, field_name: str) -> bytes:
    """Encode as PNG, converting modes PNG cannot store (CMYK, float, 32-bit integer…)."""
    buffer = io.BytesIO()
    try:
        mode = _png_mode(image)
        (image if image.mode == mode else image.convert(mode)).save(buffer, format="PNG")
    except Exception as exc:
        raise CometAPIValidationError(
            f"{label} could not be converted to PNG ({type(exc).__name__}): "
            "send a PNG, JPEG or WEBP file.",
            param=field_name,
        ) from None
    return buffer.getvalue()


def _filename_for(filename: str, mime_type: str, field_name: str) -> str:
    """Keep the caller's stem, with the extension of the real type."""
    stem = Path(os.path.basename(filename or "")).stem or field_name.strip("[]")
    return f"{stem}.{SENT_MIME_TYPES[mime_type]}"
