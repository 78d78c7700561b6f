"""Turn every input form a pipeline hands over into ``(filename, bytes)``."""

from __future__ import annotations

import ast
import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_provider_cometapi.api.images import MAX_IMAGE_BYTES
from airflow_provider_cometapi.api.text import excerpt
from airflow_provider_cometapi.exceptions import CometAPISourceError, CometAPIValidationError
from airflow_provider_cometapi.storage.paths import URI, storage_path

_DATA_URI = re.compile(r"^data:(image/[\w.+-]+)?(;[\w=.+-]+)*;base64,", re.IGNORECASE)
_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]+|[A-Za-z0-9_-]+)={0,2}$")  # standard or URL-safe
_MIN_BASE64_CHARS = 32
_URL_SAFE = str.maketrans("-_", "+/")
_IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")
"""How image files start: base64 text that could be a path must decode to one of them."""


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
GLOB = re.compile(r"[*?\[]")


def as_source_list(value: Any, field: str) -> list[Any]:
    """One input or a list of inputs (also a list rendered to text by a template), as a list."""
    value = _parse_rendered_literal(value)
    if isinstance(value, (list, tuple)) and not _is_named_pair(value):
        if not value:
            raise CometAPIValidationError(
                f"{field} is an empty list: give at least one image.", param=field
            )
        return list(value)
    return [value]


def read_sources(value: Any, field: str, conn_id: str | None) -> list[tuple[str, bytes]]:
    """Read one input or a list of inputs."""
    items = as_source_list(value, field)
    if len(items) == 1:
        return [read_source(items[0], field, conn_id)]
    return [read_source(item, f"{field}[{i}]", conn_id) for i, item in enumerate(items)]


def stored_location(value: Any) -> str | None:
    """The path or URI an input is stored at, or ``None`` for in-memory forms (bytes, base64…)."""
    value = _parse_rendered_literal(value)
    if _is_object_storage_path(value):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping) and "b64_json" not in value:
        for key in ("path", "uri", "url"):
            if key in value:
                return str(value[key])
    if isinstance(value, str):
        text = value.strip()
        if URI.match(text) or not (_DATA_URI.match(text) or _is_inline_base64(text)):
            return text
    return None


def expand_prefix(location: str, conn_id: str | None) -> list[str]:
    """The image URIs under a folder (``…/``) or matching a glob (``…/*.png``), sorted."""
    if GLOB.search(location):
        folder, _, pattern = location.rpartition("/")
        matches = storage_path(folder + "/", conn_id).glob(pattern)
    elif location.endswith("/"):
        matches = storage_path(location, conn_id).iterdir()
    else:
        return [location]
    try:
        found = sorted(
            str(path)
            for path in matches
            if path.name.lower().endswith(IMAGE_SUFFIXES) and not path.name.startswith(".")
        )
    except FileNotFoundError:
        found = []
    if not found:
        raise CometAPISourceError(
            f"sources: no images found under {excerpt(location)}; check the prefix and its "
            "connection.",
            param="sources",
        )
    return found


def read_source(value: Any, field: str, conn_id: str | None) -> tuple[str, bytes]:
    """Read one input: bytes, base64 text, a data URI, a ``b64_json`` dict, a path or a URI."""
    value = _parse_rendered_literal(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "", bytes(value)
    if _is_named_pair(value):
        return str(value[0]), bytes(value[1])
    if isinstance(value, Mapping):
        return _from_mapping(value, field, conn_id)
    if isinstance(value, str):
        return _from_text(value.strip(), field, conn_id)
    if _is_object_storage_path(value):
        return _read_storage(value, field)
    if isinstance(value, os.PathLike):
        return _read_storage(storage_path(os.fspath(value), None), field)
    raise CometAPIValidationError(
        f"{field} is a {type(value).__name__}; pass a path, an object-storage URI, base64 text, "
        "a data URI, a dict with 'b64_json', or bytes.",
        param=field,
    )


def source_stem(filename: str) -> str:
    """The stem of a source's file name (``image`` when it has none)."""
    return Path(filename).stem or "image" if filename else "image"


def _from_mapping(value: Mapping[str, Any], field: str, conn_id: str | None) -> tuple[str, bytes]:
    if "b64_json" in value:
        name = str(value.get("filename") or value.get("name") or "")
        return name, _decode_base64(str(value["b64_json"]), field)
    for key in ("path", "uri", "url"):
        if key in value:
            return read_source(str(value[key]), field, value.get("conn_id") or conn_id)
    keys = excerpt(str(sorted(map(str, value))[:5]))
    raise CometAPIValidationError(
        f"{field} is a dict without 'b64_json' or 'path': {keys}.", param=field
    )


def _from_text(text: str, field: str, conn_id: str | None) -> tuple[str, bytes]:
    if not text:
        raise CometAPIValidationError(f"{field} is an empty string.", param=field)
    match = _DATA_URI.match(text)
    if match:
        return "", _decode_base64(text[match.end() :], field)
    if text.lower().startswith("data:"):
        raise CometAPIValidationError(
            f"{field} is a data URI without base64 image data; use 'data:image/png;base64,...'.",
            param=field,
        )
    if URI.match(text):
        return _read_storage(storage_path(text, conn_id), field)
    if _is_inline_base64(text):
        return "", _decode_base64(text, field)
    return _read_storage(storage_path(text, None), field)


def _is_inline_base64(text: str) -> bool:
    """Whether text is base64 (standard or URL-safe, padded or not) rather than a local path.

    Text with a ``/`` could be either: it is base64 only if it starts like an image file.
    """
    compact = "".join(text.split())
    if not (
        len(compact) >= _MIN_BASE64_CHARS
        and len(compact.rstrip("=")) % 4 != 1  # no base64 has that length
        and _BASE64.match(compact)
        and not os.path.exists(text)
    ):
        return False
    head = base64.b64decode(compact[:16].translate(_URL_SAFE))
    return "/" not in compact or head.startswith(_IMAGE_SIGNATURES)


def _decode_base64(text: str, field: str) -> bytes:
    if len(text) > (MAX_IMAGE_BYTES * 4) // 3 + 8:
        raise CometAPIValidationError(
            f"{field} is base64 text of more than 50 MiB: store the image and pass its path.",
            param=field,
        )
    compact = "".join(text.split()).translate(_URL_SAFE).rstrip("=")
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CometAPIValidationError(
            f"{field} is not valid base64 image data: check what the upstream task returned.",
            param=field,
        ) from None


def _read_storage(path: Any, field: str) -> tuple[str, bytes]:
    where = excerpt(str(path))
    try:
        info = path.stat()
        if info.get("type") == "directory":
            raise IsADirectoryError(where)
        size = info.get("size") or 0
        if size > MAX_IMAGE_BYTES:
            raise CometAPIValidationError(
                f"{field}: {where} is {size / 1048576:.1f} MiB, over the 50 MiB limit: "
                "downscale or recompress it.",
                param=field,
            )
        return path.name, path.read_bytes()
    except CometAPIValidationError:
        raise
    except FileNotFoundError:
        raise CometAPISourceError(
            f"{field}: nothing found at {where}; check the path and the source connection.",
            param=field,
        ) from None
    except IsADirectoryError:
        raise CometAPISourceError(
            f"{field}: {where} is a folder; name a file (or use the batch operator for a prefix).",
            param=field,
        ) from None
    except Exception as exc:  # storage back ends raise their own types
        raise CometAPISourceError(
            f"{field}: cannot read {where} ({type(exc).__name__}: {excerpt(str(exc))}).",
            param=field,
        ) from None


def _is_object_storage_path(value: Any) -> bool:
    from airflow.sdk import ObjectStoragePath

    return isinstance(value, ObjectStoragePath)


def _is_named_pair(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], (bytes, bytearray))
    )


def _parse_rendered_literal(value: Any) -> Any:
    """A list or dict that a template rendered to text (``"['s3://a.png', ...]"``) becomes data."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if (text[:1], text[-1:]) not in (("[", "]"), ("{", "}")):
        return value
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return value  # TypeError: an unhashable key or set member, such as "{[]: 1}"
