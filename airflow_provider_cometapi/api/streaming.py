"""Decode an edit response as it streams in: each ``b64_json`` value goes, in chunks, to a writer.

The body is split in two as it arrives. Every ``b64_json`` string value is base64-decoded block by
block straight into a writer opened for it; everything else (the "skeleton": ``created``,
``usage``, ``revised_prompt``, ``url``...) is kept, with a placeholder where each value was, and
parsed as JSON at the end. Memory stays at one chunk plus the skeleton, whatever the image sizes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_cometapi.api.images import sniff_mime_type
from airflow_provider_cometapi.api.results import WrittenImage
from airflow_provider_cometapi.exceptions import CometAPIBadResponseError

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_SKELETON_BYTES = 1024 * 1024
"""The most JSON the body may hold outside its ``b64_json`` values."""
SNIFF_BYTES = 16
"""Decoded bytes gathered before a value's image type is sniffed and its writer opened."""

# Where the scanner is: outside any string, inside a string of the skeleton, after a
# ``"b64_json"`` string (a key if a colon follows), after its colon, inside its base64 value.
_OUTSIDE, _STRING, _AFTER_KEY, _AFTER_COLON, _VALUE = range(5)
_STRING_STOP = re.compile(rb'["\\]')
_SPACE = re.compile(rb"[ \t\r\n]*")
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\],]', re.DOTALL)


class ImageWriter(Protocol):
    """Where one output's decoded bytes go."""

    def write(self, data: bytes, /) -> object:
        """Take the next decoded bytes."""
        ...

    def close(self) -> None:
        """The output is complete."""
        ...


@dataclass(frozen=True)
class ImageUrl:
    """An output the server returned as a URL, still to be downloaded."""

    url: str
    revised_prompt: str | None = None


@dataclass(frozen=True)
class StreamedEdit:
    """A 200 body, decoded: images already written, URLs still to download, in ``data`` order."""

    created: int
    usage: dict[str, Any]
    outputs: list[WrittenImage | ImageUrl]


class StreamedEditDecoder:
    """
    Decode an edit response body fed in chunks of any size, writing each image as it arrives.

    Each non-empty ``b64_json`` value gets a slot (0, 1, 2... in order of appearance) and one
    writer from ``open_writer(slot, mime_type)``, opened once its first bytes show a PNG, JPEG or
    WEBP image and closed when the value ends. On any error the decoder stops writing and raises
    again if used; the writers in ``opened_slots`` are then the caller's to clean up.

    :param open_writer: opens the writer for one output.
    :param request_id: the server's request id, carried by errors.
    """

    def __init__(
        self, open_writer: Callable[[int, str], ImageWriter], request_id: str | None = None
    ) -> None:
        self._open_writer = open_writer
        self.request_id = request_id
        self._skeleton = bytearray()
        self._state = _OUTSIDE
        self._string_start = 0
        self._escape = False
        self._value: _Base64Value | None = None
        self._next_slot = 0
        self._opened: list[int] = []
        self._images: dict[int, WrittenImage] = {}
        self._placeholders: dict[str, int] = {}
        self._nonce = secrets.token_hex(8)
        self._received = 0
        self._error: Exception | None = None

    @property
    def opened_slots(self) -> tuple[int, ...]:
        """The slots whose writer was opened, in order."""
        return tuple(self._opened)

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the body; raise ``CometAPIBadResponseError`` if unusable."""
        if self._error is not None:
            raise self._error
        try:
            self._feed(chunk)
        except Exception as exc:
            self._error = exc
            raise

    def finish(self) -> StreamedEdit:
        """Check the whole body and return what it held; raise if it is cut off or invalid."""
        if self._error is not None:
            raise self._error
        try:
            return self._finish()
        except Exception as exc:
            self._error = exc
            raise

    # --- scanning ------------------------------------------------------------------------------

    def _feed(self, chunk: bytes) -> None:
        self._received += len(chunk)
        pos, end = 0, len(chunk)
        while pos < end:
            state = self._state
            if state == _VALUE:
                pos = self._value_bytes(chunk, pos)
            elif state == _OUTSIDE:
                quote = chunk.find(b'"', pos)
                stop = end if quote < 0 else quote + 1
                self._keep(chunk[pos:stop])
                if quote >= 0:
                    self._state, self._string_start = _STRING, len(self._skeleton)
                pos = stop
            elif state == _STRING:
                pos = self._string_bytes(chunk, pos)
            else:
                pos = self._after_key(chunk, pos)

    def _string_bytes(self, chunk: bytes, pos: int) -> int:
        """Copy a skeleton string up to its end; note when it is exactly ``"b64_json"``."""
        if self._escape:
            self._keep(chunk[pos : pos + 1])
            self._escape = False
            return pos + 1
        match = _STRING_STOP.search(chunk, pos)
        if match is None:
            self._keep(chunk[pos:])
            return len(chunk)
        stop = match.start()
        self._keep(chunk[pos : stop + 1])
        if chunk[stop] == 0x5C:  # a backslash: the next byte is escaped
            self._escape = True
        elif self._skeleton[self._string_start : -1] == b"b64_json":
            self._state = _AFTER_KEY
        else:
            self._state = _OUTSIDE
        return stop + 1

    def _after_key(self, chunk: bytes, pos: int) -> int:
        """After ``"b64_json"``: a colon then a quote start a value; anything else does not."""
        match = _SPACE.match(chunk, pos)
        stop = match.end() if match else pos
        self._keep(chunk[pos:stop])
        if stop == len(chunk):
            return stop
        byte = chunk[stop]
        if self._state == _AFTER_KEY and byte == 0x3A:  # ':'
            self._keep(b":")
            self._state = _AFTER_COLON
            return stop + 1
        if self._state == _AFTER_COLON and byte == 0x22:  # '"'
            self._state, self._value = _VALUE, _Base64Value()
            return stop + 1
        self._state = _OUTSIDE
        return stop

    def _value_bytes(self, chunk: bytes, pos: int) -> int:
        """Decode base64 up to the value's closing quote or the end of the chunk."""
        value = self._value
        assert value is not None
        quote = chunk.find(b'"', pos)
        stop = len(chunk) if quote < 0 else quote
        if stop > pos and value.slot is None:
            value.slot, self._next_slot = self._next_slot, self._next_slot + 1
        self._decode(value, chunk[pos:stop], closing=quote >= 0)
        if quote < 0:
            return stop
        if value.slot is None:  # an empty string: no image, as if there were no b64_json
            self._keep(b'""')
        else:
            if value.writer is not None:
                value.writer.close()
            self._images[value.slot] = WrittenImage(value.slot, value.mime_type, value.size)
            text = f"\x00b64_json:{self._nonce}:{value.slot}"
            self._placeholders[text] = value.slot
            self._keep(json.dumps(text).encode())
        self._state, self._value = _OUTSIDE, None
        return quote + 1

    def _decode(self, value: _Base64Value, text: bytes, *, closing: bool) -> None:
        """Decode whole 4-character blocks of ``text``; keep the rest for the next chunk."""
        if value.pending:
            text = value.pending + text
        hold = b""
        if b"\\" in text:
            if not closing and text.endswith(b"\\"):
                text, hold = text[:-1], b"\\"  # its escaped byte is in the next chunk
            text = text.replace(b"\\/", b"/")
            if b"\\" in text:
                raise self._bad_value("is not valid base64")
        if value.padded and text:
            raise self._bad_value("is not valid base64")
        cut = len(text) if closing else len(text) - len(text) % 4
        block = text[:cut]
        value.pending = text[cut:] + hold
        if block:
            value.padded = block.endswith(b"=")
            try:
                decoded = base64.b64decode(block, validate=True)
            except (binascii.Error, ValueError):
                raise self._bad_value("is not valid base64") from None
            self._write(value, decoded)
        if closing and value.writer is None and value.head:
            self._open(value, bytes(value.head))

    def _write(self, value: _Base64Value, decoded: bytes) -> None:
        if value.writer is not None:
            value.writer.write(decoded)
            value.size += len(decoded)
        elif not value.head and len(decoded) >= SNIFF_BYTES:
            self._open(value, decoded)
        else:
            value.head += decoded
            if len(value.head) >= SNIFF_BYTES:
                self._open(value, bytes(value.head))

    def _open(self, value: _Base64Value, head: bytes) -> None:
        """Sniff the first decoded bytes, open the writer and write them."""
        assert value.slot is not None
        mime_type = sniff_mime_type(head)
        if mime_type is None:
            raise self._bad_value("is not a PNG, JPEG or WEBP image")
        writer = self._open_writer(value.slot, mime_type)
        self._opened.append(value.slot)
        value.writer, value.mime_type, value.head = writer, mime_type, bytearray()
        writer.write(head)
        value.size += len(head)

    def _keep(self, data: bytes) -> None:
        """Add to the skeleton, which may not grow past ``MAX_SKELETON_BYTES``."""
        self._skeleton += data
        if len(self._skeleton) > MAX_SKELETON_BYTES:
            if _looks_like_html(self._skeleton):
                raise self._bad("the server sent an HTML page instead of JSON")
            raise self._bad(
                f"the response holds over {MAX_SKELETON_BYTES >> 20} MiB of JSON besides "
                "its b64_json images"
            )

    # --- the end -------------------------------------------------------------------------------

    def _finish(self) -> StreamedEdit:
        if self._state == _VALUE:
            raise self._bad_value(f"was cut off ({self._received} bytes received)")
        try:
            payload = json.loads(self._skeleton)
        except (ValueError, RecursionError):
            if _looks_like_html(self._skeleton):
                raise self._bad("the server sent an HTML page instead of JSON") from None
            raise self._bad(
                f"the response is not valid JSON, or was cut off ({self._received} bytes)"
            ) from None
        if not isinstance(payload, dict):
            raise self._bad(f"the response is a JSON {type(payload).__name__}, not an object")
        data = payload.get("data")
        if not isinstance(data, list) or not data:
            raise self._bad(f"the response has no 'data' list of images ({_keys(payload)})")
        outputs = [self._output(item, index) for index, item in enumerate(data)]
        created, usage = payload.get("created"), payload.get("usage")
        return StreamedEdit(
            created=created if isinstance(created, int) and not isinstance(created, bool) else 0,
            usage=usage if isinstance(usage, dict) else {},
            outputs=outputs,
        )

    def _output(self, item: Any, index: int) -> WrittenImage | ImageUrl:
        if not isinstance(item, dict):
            raise self._bad(f"data[{index}] is not an object")
        revised = item.get("revised_prompt")
        revised_prompt = revised if isinstance(revised, str) else None
        encoded = item.get("b64_json")
        if isinstance(encoded, str) and encoded:
            slot = self._placeholders.get(encoded)
            image = self._images[slot] if slot is not None else self._inline(encoded, index)
            return replace(image, revised_prompt=revised_prompt)
        url = item.get("url")
        if isinstance(url, str) and url:
            return ImageUrl(url=url, revised_prompt=revised_prompt)
        raise self._bad(f"data[{index}] has neither 'b64_json' nor 'url'")

    def _inline(self, encoded: str, index: int) -> WrittenImage:
        """A value the scanner did not see (its key spelled with ``\\u`` escapes): decode it now."""
        what = f"data[{index}].b64_json"
        try:
            data = base64.b64decode(encoded.encode("ascii"), validate=True)
        except (binascii.Error, ValueError):
            raise self._bad(f"{what} is not valid base64") from None
        mime_type = sniff_mime_type(data)
        if mime_type is None:
            raise self._bad(f"{what} is not a PNG, JPEG or WEBP image")
        slot, self._next_slot = self._next_slot, self._next_slot + 1
        writer = self._open_writer(slot, mime_type)
        self._opened.append(slot)
        writer.write(data)
        writer.close()
        return WrittenImage(slot, mime_type, len(data))

    # --- errors --------------------------------------------------------------------------------

    def _bad(self, what: str) -> CometAPIBadResponseError:
        return bad_response(what, self.request_id)

    def _bad_value(self, problem: str) -> CometAPIBadResponseError:
        """An error naming the value being decoded, e.g. ``data[1].b64_json``."""
        return self._bad(f"{_json_path(bytes(self._skeleton))} {problem}")


class _Base64Value:
    """The state of one ``b64_json`` value being decoded."""

    def __init__(self) -> None:
        self.slot: int | None = None
        self.pending = b""  # under 4 base64 characters, maybe a trailing backslash
        self.padded = False
        self.head = bytearray()  # decoded bytes held until the type is sniffed
        self.writer: ImageWriter | None = None
        self.mime_type = ""
        self.size = 0


def bad_response(what: str, request_id: str | None) -> CometAPIBadResponseError:
    """The error for a 200 answer that is not a usable edit result."""
    return CometAPIBadResponseError(
        f"CometAPI sent an unusable answer: {what}. Retry the task; if it persists, "
        "report the request id to CometAPI.",
        status=200,
        request_id=request_id,
    )


def _looks_like_html(body: bytes | bytearray) -> bool:
    head = bytes(body[:512]).lstrip().lower()
    return head.startswith(b"<") or b"<html" in head or b"<!doctype" in head


def _keys(payload: dict[str, Any]) -> str:
    keys = ", ".join(sorted(str(k) for k in payload)[:8])
    return f"keys: {keys}" if keys else "empty object"


def _json_path(prefix: bytes) -> str:
    """Where the end of a JSON prefix is, as ``data[1].b64_json``; used for messages only."""
    path: list[str | int] = []
    in_list: list[bool] = []
    expect_key = False
    for match in _TOKEN.finditer(prefix):
        token = match.group()
        if token in (b"{", b"["):
            in_list.append(token == b"[")
            path.append(0 if token == b"[" else "")
            expect_key = token == b"{"
        elif token in (b"}", b"]"):
            if path:
                path.pop()
                in_list.pop()
            expect_key = False
        elif token == b",":
            last = path[-1] if path else None
            if isinstance(last, int) and in_list[-1]:
                path[-1] = last + 1
            else:
                expect_key = True
        elif expect_key and path:
            path[-1] = token[1:-1].decode("utf-8", "replace")[:40]
            expect_key = False
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text or "b64_json"
