"""Where decoded output images go while the response streams in."""

from __future__ import annotations

import base64
import io
import tempfile
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_cometapi.api.response import decode_image_bytes
from airflow_provider_cometapi.exceptions import CometAPIBadResponseError

SPOOL_IN_MEMORY = 1 << 20
"""Bytes of an output a spool keeps in memory before it moves to disk."""

if TYPE_CHECKING:
    from airflow_provider_cometapi.api.streaming import ImageWriter


class ImageSink(Protocol):
    """Opens one writer per output image; the slot is the output's order of arrival."""

    def open_writer(self, slot: int, mime_type: str) -> ImageWriter:
        """A writer for output ``slot`` of type ``mime_type``."""
        ...


class MemorySink:
    """Keeps each output in memory, for callers that want the bytes."""

    def __init__(self) -> None:
        self._buffers: dict[int, io.BytesIO] = {}

    def open_writer(self, slot: int, mime_type: str) -> ImageWriter:
        """A fresh in-memory buffer for ``slot``."""
        buffer = self._buffers[slot] = _KeptBuffer()
        return buffer

    def data(self, slot: int) -> bytes:
        """The bytes written for ``slot``."""
        return self._buffers[slot].getvalue()


class _KeptBuffer(io.BytesIO):
    """A ``BytesIO`` whose contents survive ``close()``."""

    def close(self) -> None:
        """Keep the buffer readable; the sink owns it."""


class DownloadCopy:
    """Copies a downloaded image into a sink as it arrives, sniffing its type, capping its size."""

    def __init__(
        self, sink: ImageSink, slot: int, label: str, request_id: str | None, max_bytes: int
    ) -> None:
        self._sink, self._slot, self._label = sink, slot, label
        self._request_id, self._max_bytes = request_id, max_bytes
        self._head = b""
        self._writer: ImageWriter | None = None
        self.size = 0
        self.mime_type = ""

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the download."""
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise CometAPIBadResponseError(
                f"{self._label} is larger than {self._max_bytes >> 20} MiB; refusing it.",
                request_id=self._request_id,
            )
        if self._writer is None:
            self._head += chunk
            if len(self._head) >= 16:
                self._open()
            return
        self._writer.write(chunk)

    def finish(self) -> None:
        """Flush what is buffered and close the writer."""
        if self._writer is None:
            self._open()
        assert self._writer is not None
        self._writer.close()

    def _open(self) -> None:
        self.mime_type = decode_image_bytes(self._head, self._label, self._request_id)
        self._writer = self._sink.open_writer(self._slot, self.mime_type)
        self._writer.write(self._head)
        self._head = b""


class SpooledSink:
    """Keeps each output whole in a local spool (in memory up to 1 MiB, then on disk), to be
    read back once the answer is complete: a masked edit's outputs, checked before writing."""

    def __init__(self) -> None:
        self._spools: dict[int, tuple[str, Any]] = {}

    def open_writer(self, slot: int, mime_type: str) -> ImageWriter:
        """A fresh spool for ``slot``."""
        if slot in self._spools:  # an output delivered again replaces its earlier copy
            self._spools.pop(slot)[1].drop()
        spool = _KeptSpool(max_size=SPOOL_IN_MEMORY)
        self._spools[slot] = (mime_type, spool)
        return spool

    def read(self, slot: int) -> bytes:
        """The bytes written for ``slot``."""
        spool = self._spools[slot][1]
        spool.seek(0)
        return bytes(spool.read())

    def kept_images(self) -> list[dict[str, str]]:
        """Each output (``mime_type`` and base64 ``b64``), in slot order."""
        return [
            {"mime_type": self._spools[slot][0], "b64": base64.b64encode(self.read(slot)).decode()}
            for slot in sorted(self._spools)
        ]

    def close(self) -> None:
        """Free the spools."""
        for _, spool in self._spools.values():
            spool.drop()
        self._spools.clear()


class _KeptSpool(tempfile.SpooledTemporaryFile):
    """A spool whose contents survive ``close()`` (the sink owns it) until ``drop()``."""

    def close(self) -> None:
        """Keep the spool readable; the sink drops it."""

    def drop(self) -> None:
        """Free the spool."""
        super().close()
