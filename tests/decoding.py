"""Decode a whole edit body into memory, as the hooks do, for tests of the decoder alone."""

from __future__ import annotations

from airflow_provider_cometapi.api.sinks import MemorySink
from airflow_provider_cometapi.api.streaming import StreamedEdit, StreamedEditDecoder


def decode_in_memory(body: bytes, request_id: str | None = None) -> tuple[StreamedEdit, MemorySink]:
    """Feed ``body`` to a ``StreamedEditDecoder`` in one chunk, writing into a ``MemorySink``.

    :param request_id: the request id the decoder's errors carry.
    """
    sink = MemorySink()
    decoder = StreamedEditDecoder(sink.open_writer, request_id)
    decoder.feed(body)
    return decoder.finish(), sink
