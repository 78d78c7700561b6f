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

from airflow_provider_cometapi.api.images import MAX_IMAGE_BYTES, sniff_mime_type
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
_OBJECT_TEXT = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")
"""What ``str()`` of a Python object looks like: a value a template rendered to text."""


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
        if self.path is not None:
            return _read_storage(self.path, field)
        return _read_storage(_open_storage(self.location, self.conn_id, field), field)

    def to_json(self) -> dict[str, Any]:
        """Location and connection, for the triggerer."""
        return {"location": self.location, "conn_id": self.conn_id}


@dataclass(frozen=True)
class InlineSource:
    """An input handed over in memory (bytes, base64, a data URI, a ``b64_json`` dict), decoded."""

    name: str
    data: bytes = field(repr=False)
    place: str = field(compare=False)
    """Where the value was given (``image``, ``sources[3]``): its label shows this, never bytes."""

    @property
    def label(self) -> str:
        """Its place and the hash of its bytes: ``sources[3] (sha256:1a2b3c4d5e6f7a8b)``."""
        return f"{self.place} ({self.identity})"

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
    """Where the value was given (``image``, ``sources[3]``), never the value itself."""
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
    value = parse_rendered_literal(value)
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


def classify(value: Any, field: str, conn_id: str | None, *, place: str | None = None) -> Source:
    """The typed source of one input; an input that cannot be used becomes a ``BadSource``.

    :param field: the field its errors name (``image``, ``sources[3]``).
    :param conn_id: the connection for object-storage URIs (a dict may name its own).
    :param place: where the value was given, for the label of an in-memory or unusable input
        (``sources[3]``); ``field`` when not given.
    """
    value = parse_rendered_literal(value)
    place = place or field
    try:
        return _classify(value, field, place, conn_id)
    except CometAPIError as exc:  # never a path (a path is a StoredSource): show no text
        return BadSource(place, exc)


def classify_all(value: Any, field: str, conn_id: str | None) -> list[Source]:
    """The typed sources of one input or a list of inputs, each named as its errors name it:
    ``field`` alone, or ``field[i]`` in a list of several."""
    items = as_source_list(value, field)
    if len(items) == 1:
        return [classify(items[0], field, conn_id)]
    return [classify(item, f"{field}[{i}]", conn_id) for i, item in enumerate(items)]


def shown(value: Any) -> Any:
    """``value`` as the UI may show it: each in-memory image in it (bytes, base64 text, a data
    URI, a ``b64_json`` dict; alone, in a list or in a row) replaced by a short label such as
    ``<base64 PNG image, 12,345 bytes>``; paths, URIs and anything else as they are."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _image_label("", bytes(value[:16]), len(value))
    if _is_named_pair(value):
        return [value[0], shown(value[1])]
    if isinstance(value, Mapping):
        if "b64_json" in value:
            return {**value, "b64_json": _text_label("base64", str(value["b64_json"]))}
        return {
            key: shown(item) if key in ("image", "mask") else item for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(shown(item) for item in value)
    if isinstance(value, str):
        text = value.strip()
        match = _DATA_URI.match(text)
        if match:
            return _text_label("data URI", text[match.end() :])
        if not URI.match(text) and _is_inline_base64(text):
            return _text_label("base64", text)
    return value


def _text_label(form: str, text: str) -> str:
    """The label of base64 text, from its length and first bytes, without decoding it all."""
    compact = "".join(text.split())
    try:
        head = base64.b64decode(compact[:16].translate(_URL_SAFE))
    except (binascii.Error, ValueError):
        head = b""
    return _image_label(form, head, len(compact.rstrip("=")) * 3 // 4)


def _image_label(form: str, head: bytes, size: int) -> str:
    mime_type = sniff_mime_type(head)
    kind = mime_type.partition("/")[2].upper() if mime_type else ""
    return f"<{' '.join(filter(None, (form, kind, 'image')))}, {size:,} bytes>"


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
    """The image URIs under a folder (``…/``) or matching a glob (``…/*.png``), sorted; any
    other one source as it is, unless it names a folder without its ``/``."""
    if GLOB.search(location):
        folder, _, pattern = location.rpartition("/")
        path = _open_storage(folder + "/", conn_id, "sources")
        matches = path.glob(pattern)
    elif location.endswith("/"):
        path = _open_storage(location, conn_id, "sources")
        matches = path.iterdir()
    else:
        _refuse_folder_without_slash(location, conn_id)
        return [location]
    try:
        found = sorted(
            str(match)
            for match in matches
            if match.name.lower().endswith(IMAGE_SUFFIXES) and not match.name.startswith(".")
        )
    except Exception as exc:  # not a folder, no permission, no bucket: storage raises its own
        raise _listing_error(location, path, exc) from None
    if not found:
        raise _listing_error(location, path)
    return found


def source_stem(filename: str) -> str:
    """The stem of a source's file name (``image`` when it has none)."""
    return Path(filename).stem or "image" if filename else "image"


def _refuse_folder_without_slash(location: str, conn_id: str | None) -> None:
    """A lone batch source that is a folder named without its ``/`` is refused, never guessed:
    local, a directory; object storage, no object at the key but objects under ``key/``."""
    if not isinstance(classify(location, "sources", conn_id), StoredSource):
        return
    try:
        path = storage_path(location, conn_id)
    except Exception:  # reading the source reports it, in its item's turn
        return
    if _kind_of(path) == "directory":
        raise CometAPISourceError(
            f"sources: {excerpt(location)} is a folder; end it with '/' to edit every image in it.",
            param="sources",
        )


def _listing_error(location: str, path: Any, exc: Exception | None = None) -> CometAPISourceError:
    """The typed error for a prefix or glob that gave no images (``exc``: listing it failed),
    saying what to fix; ``path`` is the folder listed."""
    where = excerpt(location)
    kind = "unreadable" if isinstance(exc, PermissionError) else _kind_of(path)
    if kind == "unreadable":
        advice = (
            f"cannot list {where}: no permission; let the source connection (or the worker's "
            "user) list and read it."
        )
    elif kind == "missing":
        advice = (
            f"cannot list {where}: no such folder or bucket; check the prefix, the bucket name "
            "and the source connection."
        )
    elif kind == "file":
        advice = f"cannot list {where}: it is a file, not a folder; name a folder, ending in '/'."
    elif exc is None:
        advice = (
            f"no images found under {where}; check the prefix, its connection and its "
            "permission to list it."
        )
    else:
        advice = (
            f"cannot list {where} ({type(exc).__name__}: {excerpt(str(exc))}); check the "
            "prefix, its connection and its permissions."
        )
    return CometAPISourceError(f"sources: {advice}", param="sources")


def _kind_of(path: Any) -> str | None:
    """What is at an ``ObjectStoragePath``: ``file``, ``directory``, ``missing`` or
    ``unreadable``; ``None`` when storage cannot tell."""
    try:
        kind = path.stat().get("type")
    except FileNotFoundError:
        return "missing"
    except PermissionError:
        return "unreadable"
    except Exception:
        return None
    return kind if kind in ("file", "directory") else None


def _open_storage(location: str, conn_id: str | None, field: str) -> Any:
    """The ``ObjectStoragePath`` of a location, or a typed error (an unknown scheme, say)."""
    try:
        return storage_path(location, conn_id)
    except Exception as exc:
        raise CometAPISourceError(
            f"{field}: cannot open {excerpt(location)} ({type(exc).__name__}: "
            f"{excerpt(str(exc))}); check its scheme, its connection and that the provider for "
            "that storage is installed.",
            param=field,
        ) from None


def _classify(value: Any, field: str, place: str, conn_id: str | None) -> Source:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return InlineSource("", bytes(value), place)
    if _is_named_pair(value):
        return InlineSource(str(value[0]), bytes(value[1]), place)
    if isinstance(value, Mapping):
        return _from_mapping(value, field, place, conn_id)
    if isinstance(value, str):
        return _from_text(value.strip(), field, place, conn_id)
    if _is_object_storage_path(value):
        return StoredSource(str(value), value.conn_id, path=value)
    if isinstance(value, os.PathLike):
        return StoredSource(os.fspath(value))
    if callable(getattr(value, "read", None)):
        raise CometAPIValidationError(
            f"{field} is an open file object; pass its bytes (.read() or .getvalue()), its "
            "path or an object-storage URI.",
            param=field,
        )
    raise CometAPIValidationError(
        f"{field} is a {type(value).__name__}; pass a path, an object-storage URI, base64 text, "
        "a data URI, a dict with 'b64_json', or bytes.",
        param=field,
    )


def _from_mapping(value: Mapping[str, Any], field: str, place: str, conn_id: str | None) -> Source:
    if "b64_json" in value:
        name = str(value.get("filename") or value.get("name") or "")
        return InlineSource(name, _decode_base64(str(value["b64_json"]), field), place)
    for key in ("path", "uri", "url"):
        if key in value:
            text = str(value[key]).strip()
            return _from_text(text, field, place, value.get("conn_id") or conn_id)
    keys = excerpt(str(sorted(map(str, value))[:5]))
    raise CometAPIValidationError(
        f"{field} is a dict without 'b64_json' or 'path': {keys}.", param=field
    )


def _from_text(text: str, field: str, place: str, conn_id: str | None) -> Source:
    if not text:
        raise CometAPIValidationError(f"{field} is an empty string.", param=field)
    if _OBJECT_TEXT.search(text):
        raise CometAPIValidationError(
            f"{field} is a Python object rendered to text (by a template, say); pass the "
            "image itself: bytes, a path, an object-storage URI or base64 text.",
            param=field,
        )
    match = _DATA_URI.match(text)
    if match:
        return InlineSource("", _decode_base64(text[match.end() :], field), place)
    if text.lower().startswith("data:"):
        raise CometAPIValidationError(
            f"{field} is a data URI without base64 image data; use 'data:image/png;base64,...'.",
            param=field,
        )
    if URI.match(text):
        return StoredSource(text, conn_id)
    if _is_inline_base64(text):
        return InlineSource("", _decode_base64(text, field), place)
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
    except PermissionError:
        raise CometAPISourceError(
            f"{field}: no permission to read {where}; let the source connection (or the "
            "worker's user) read it.",
            param=field,
        ) from None
    except Exception as exc:  # storage back ends raise their own types
        raise CometAPISourceError(
            f"{field}: cannot read {where} ({type(exc).__name__}: {excerpt(str(exc))}); check "
            "the path, the source connection and its permissions.",
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


def parse_rendered_literal(value: Any) -> Any:
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
