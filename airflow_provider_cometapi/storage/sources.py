"""Every input form a pipeline hands over, classified once into a typed source, then read.

``classify`` is the one place that tells a path from base64, a URI from a data URI: reading,
labels, lineage and staging all use the ``Source`` it returns.
"""

from __future__ import annotations

import ast
import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_cometapi.api.images import MAX_IMAGE_BYTES
from airflow_provider_cometapi.api.text import excerpt
from airflow_provider_cometapi.exceptions import (
    CometAPIError,
    CometAPISourceError,
    CometAPIValidationError,
)
from airflow_provider_cometapi.storage.paths import URI, storage_path

_DATA_URI = re.compile(r"^data:(image/[\w.+-]+)?(;[\w=.+-]+)*;base64,", re.IGNORECASE)
_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]+|[A-Za-z0-9_-]+)={0,2}$")  # standard or URL-safe
_MIN_BASE64_CHARS = 32
_URL_SAFE = str.maketrans("-_", "+/")
_IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")
"""How image files start: base64 text that could be a path must decode to one of them."""


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class StoredSource:
    """An input stored at a path or URI, read with ``conn_id`` when its item is prepared."""

    location: str
    conn_id: str | None = None
    path: Any = field(default=None, compare=False, repr=False)
    """The ``ObjectStoragePath`` given, read as it is (with its storage options) on the worker."""

    @property
    def label(self) -> str:
        """The location, as an excerpt."""
        return excerpt(self.location)

    @property
    def identity(self) -> str:
        """What the input is: its location."""
        return self.location

    def read(self, field: str) -> tuple[str, bytes]:
        """``(file name, bytes)``, within the size limit."""
        path = self.path if self.path is not None else storage_path(self.location, self.conn_id)
        return _read_storage(path, field)

    def to_json(self) -> dict[str, Any]:
        """Location and connection, for the triggerer."""
        return {"location": self.location, "conn_id": self.conn_id}


@dataclass(frozen=True)
class InlineSource:
    """An input handed over in memory (bytes, base64, a data URI, a ``b64_json`` dict), decoded."""

    name: str
    data: bytes = field(repr=False)
    form: str
    """The type of the value given: what its label shows instead of its bytes."""

    @property
    def label(self) -> str:
        """``<bytes input>``, ``<str input>``…: never the bytes."""
        return f"<{self.form} input>"

    @property
    def identity(self) -> str:
        """What the input is: a short hash of its bytes."""
        return "sha256:" + hashlib.sha256(self.data).hexdigest()[:16]

    def read(self, field: str) -> tuple[str, bytes]:
        """``(file name, bytes)``."""
        return self.name, self.data


@dataclass(frozen=True)
class BadSource:
    """An input that cannot be read at all: reading it raises its error, in its item's turn."""

    label: str
    error: CometAPIError

    @property
    def identity(self) -> str:
        """Its label: it has nothing else."""
        return self.label

    def read(self, field: str) -> tuple[str, bytes]:
        """Raise the error found when the input was classified."""
        raise self.error


Source = StoredSource | InlineSource | BadSource


def as_source_list(value: Any, field: str) -> list[Any]:
    """One input or a list of inputs (also a list rendered to text by a template), as a list."""
    value = _parse_rendered_literal(value)
    if value is None or (isinstance(value, str) and value.strip() == "None"):
        raise CometAPIValidationError(
            f"{field} is None: its template or the upstream task's XCom gave nothing; check what "
            "was pushed (a path, a URI, base64 or a list of them).",
            param=field,
        )
    if isinstance(value, (list, tuple)) and not _is_named_pair(value):
        if not value:
            raise CometAPIValidationError(
                f"{field} is an empty list: give at least one image.", param=field
            )
        return list(value)
    return [value]


def classify(value: Any, field: str, conn_id: str | None) -> Source:
    """The typed source of one input; an input that cannot be used becomes a ``BadSource``.

    :param conn_id: the connection for object-storage URIs (a dict may name its own).
    """
    value = _parse_rendered_literal(value)
    try:
        return _classify(value, field, conn_id)
    except CometAPIError as exc:  # never a path (a path is a StoredSource): show no text
        return BadSource(f"<{type(value).__name__} input>", exc)


def classify_all(value: Any, field: str, conn_id: str | None) -> list[Source]:
    """The typed sources of one input or a list of inputs, each named as its errors name it."""
    items = as_source_list(value, field)
    if len(items) == 1:
        return [classify(items[0], field, conn_id)]
    return [classify(item, f"{field}[{i}]", conn_id) for i, item in enumerate(items)]


def read_all(sources: list[Source], field: str) -> list[tuple[str, bytes]]:
    """Read each source as ``(file name, bytes)``, naming it ``field`` or ``field[i]`` in errors."""
    if len(sources) == 1:
        return [sources[0].read(field)]
    return [source.read(f"{field}[{i}]") for i, source in enumerate(sources)]


def label_of(sources: list[Source]) -> str:
    """A short name for some inputs in logs and XCom: never their bytes, at most an excerpt."""
    return excerpt(", ".join(source.label for source in sources))


def stored_locations(sources: list[Source]) -> list[str]:
    """The locations of the stored sources among ``sources``, each once."""
    found = (source.location for source in sources if isinstance(source, StoredSource))
    return list(dict.fromkeys(found))


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
    except Exception as exc:  # not a folder, no permission, no bucket: storage raises its own
        raise CometAPISourceError(
            f"sources: cannot list {excerpt(location)} ({type(exc).__name__}: "
            f"{excerpt(str(exc))}); check the prefix, its connection and its permissions.",
            param="sources",
        ) from None
    if not found:
        raise CometAPISourceError(
            f"sources: no images found under {excerpt(location)}; check the prefix and its "
            "connection.",
            param="sources",
        )
    return found


def source_stem(filename: str) -> str:
    """The stem of a source's file name (``image`` when it has none)."""
    return Path(filename).stem or "image" if filename else "image"


def _classify(value: Any, field: str, conn_id: str | None) -> Source:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return InlineSource("", bytes(value), type(value).__name__)
    if _is_named_pair(value):
        return InlineSource(str(value[0]), bytes(value[1]), type(value).__name__)
    if isinstance(value, Mapping):
        return _from_mapping(value, field, conn_id)
    if isinstance(value, str):
        return _from_text(value.strip(), field, conn_id)
    if _is_object_storage_path(value):
        return StoredSource(str(value), value.conn_id, path=value)
    if isinstance(value, os.PathLike):
        return StoredSource(os.fspath(value))
    raise CometAPIValidationError(
        f"{field} is a {type(value).__name__}; pass a path, an object-storage URI, base64 text, "
        "a data URI, a dict with 'b64_json', or bytes.",
        param=field,
    )


def _from_mapping(value: Mapping[str, Any], field: str, conn_id: str | None) -> Source:
    if "b64_json" in value:
        name = str(value.get("filename") or value.get("name") or "")
        return InlineSource(name, _decode_base64(str(value["b64_json"]), field), "dict")
    for key in ("path", "uri", "url"):
        if key in value:
            return _from_text(str(value[key]).strip(), field, value.get("conn_id") or conn_id)
    keys = excerpt(str(sorted(map(str, value))[:5]))
    raise CometAPIValidationError(
        f"{field} is a dict without 'b64_json' or 'path': {keys}.", param=field
    )


def _from_text(text: str, field: str, conn_id: str | None) -> Source:
    if not text:
        raise CometAPIValidationError(f"{field} is an empty string.", param=field)
    match = _DATA_URI.match(text)
    if match:
        return InlineSource("", _decode_base64(text[match.end() :], field), "str")
    if text.lower().startswith("data:"):
        raise CometAPIValidationError(
            f"{field} is a data URI without base64 image data; use 'data:image/png;base64,...'.",
            param=field,
        )
    if URI.match(text):
        return StoredSource(text, conn_id)
    if _is_inline_base64(text):
        return InlineSource("", _decode_base64(text, field), "str")
    return StoredSource(text)  # a local path: no connection


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
