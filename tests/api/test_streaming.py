"""StreamedEditDecoder: edit bodies decoded chunk by chunk into writers, whatever the chunking."""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from airflow_provider_cometapi.api.results import WrittenImage
from airflow_provider_cometapi.api.streaming import (
    MAX_SKELETON_BYTES,
    ImageUrl,
    StreamedEdit,
    StreamedEditDecoder,
)
from airflow_provider_cometapi.exceptions import CometAPIBadResponseError
from tests.decoding import decode_in_memory

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Writer:
    """Keeps what was written and whether it was closed."""

    def __init__(self, mime_type: str) -> None:
        self.mime_type = mime_type
        self.buffer = bytearray()
        self.closed = False

    def write(self, data: bytes, /) -> int:
        assert not self.closed
        self.buffer += data
        return len(data)

    def close(self) -> None:
        self.closed = True


class Recorder:
    """An ``open_writer`` that remembers every writer it opened, by slot."""

    def __init__(self) -> None:
        self.writers: dict[int, Writer] = {}

    def __call__(self, slot: int, mime_type: str) -> Writer:
        assert slot not in self.writers
        self.writers[slot] = Writer(mime_type)
        return self.writers[slot]

    def data(self) -> dict[int, bytes]:
        return {slot: bytes(writer.buffer) for slot, writer in self.writers.items()}


def noise_image(fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    rng = random.Random(fmt)
    pixels = bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buffer, format=fmt)
    return buffer.getvalue()


IMAGES = {fmt: noise_image(fmt) for fmt in ("PNG", "JPEG", "WEBP")}
USAGE = {
    "total_tokens": 310,
    "input_tokens": 60,
    "output_tokens": 250,
    "input_tokens_details": {"text_tokens": 10, "image_tokens": 50},
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def edit_body(items: list[dict], **extra) -> bytes:
    return json.dumps({"created": 1713833628, "usage": USAGE, "data": items, **extra}).encode()


REALISTIC_BODY = edit_body(
    [
        {"b64_json": b64(IMAGES["PNG"]), "revised_prompt": 'a "red" fox, b64_json: no'},
        {"b64_json": b64(IMAGES["JPEG"])},
        {"revised_prompt": "ünïcode ✓", "b64_json": b64(IMAGES["WEBP"])},
    ]
)


def chunks_of(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)] or [b""]


def feed_all(decoder: StreamedEditDecoder, body: bytes, chunk_size: int | None) -> StreamedEdit:
    for chunk in chunks_of(body, chunk_size or max(1, len(body))):
        decoder.feed(chunk)
    return decoder.finish()


def decode(body: bytes, chunk_size: int | None = None) -> tuple[StreamedEdit, Recorder]:
    recorder = Recorder()
    return feed_all(StreamedEditDecoder(recorder, "req-1"), body, chunk_size), recorder


def decode_error(body: bytes, chunk_size: int | None = None) -> tuple[str, Recorder]:
    recorder = Recorder()
    decoder = StreamedEditDecoder(recorder, "req-9")
    with pytest.raises(CometAPIBadResponseError) as info:
        feed_all(decoder, body, chunk_size)
    assert info.value.request_id == "req-9"
    assert sorted(decoder.opened_slots) == sorted(recorder.writers)
    return str(info.value), recorder


# --- decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 64 * 1024])
def test_realistic_body_decodes_identically_at_any_chunk_size(chunk_size):
    edit, recorder = decode(REALISTIC_BODY, chunk_size)

    assert edit == StreamedEdit(
        created=1713833628,
        usage=USAGE,
        outputs=[
            WrittenImage(0, "image/png", len(IMAGES["PNG"]), 'a "red" fox, b64_json: no'),
            WrittenImage(1, "image/jpeg", len(IMAGES["JPEG"])),
            WrittenImage(2, "image/webp", len(IMAGES["WEBP"]), "ünïcode ✓"),
        ],
    )
    assert recorder.data() == {0: IMAGES["PNG"], 1: IMAGES["JPEG"], 2: IMAGES["WEBP"]}
    assert [w.mime_type for w in recorder.writers.values()] == [
        "image/png",
        "image/jpeg",
        "image/webp",
    ]
    assert all(writer.closed for writer in recorder.writers.values())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(REALISTIC_BODY)), max_size=30))
def test_splitting_the_body_anywhere_gives_the_same_edit(cuts):
    bounds = [0, *sorted(cuts), len(REALISTIC_BODY)]
    recorder = Recorder()
    decoder = StreamedEditDecoder(recorder)
    for start, end in itertools.pairwise(bounds):
        decoder.feed(REALISTIC_BODY[start:end])
    whole, whole_recorder = decode(REALISTIC_BODY)

    assert decoder.finish() == whole
    assert recorder.data() == whole_recorder.data()


PIECES = [
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b" ",
    b'"',
    b"\\",
    b"\\/",
    b'"b64_json"',
    b'"b64_json":"',
    b'"data"',
    b'"url"',
    b'"x"',
    b"1",
    b"null",
    b"iVBORw0KGgoAAAANSUhEUgAA",
    b"/9j/4AAQSkZJRgABAQ",
    b"AAAA",
    b"==",
    b"=",
    b"<html>",
    b"\xff",
]


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join),
    ),
    st.lists(st.integers(0, 400), max_size=10),
)
def test_any_garbage_only_ever_raises_bad_response(body, cuts):
    bounds = [0, *sorted(c for c in cuts if c <= len(body)), len(body)]
    decoder = StreamedEditDecoder(Recorder())
    try:
        for start, end in itertools.pairwise(bounds):
            decoder.feed(body[start:end])
        edit = decoder.finish()
    except CometAPIBadResponseError:
        return
    assert edit.outputs


def test_escaped_slashes_in_base64_are_decoded():
    image = PNG_SIGNATURE + bytes(range(256)) * 4
    encoded = b64(image)
    assert "/" in encoded
    body = edit_body([{"b64_json": encoded}]).replace(b"/", b"\\/")
    assert b"\\/" in body

    for chunk_size in (None, 1, 3):
        edit, recorder = decode(body, chunk_size)
        assert recorder.data() == {0: image}
        assert edit.outputs == [WrittenImage(0, "image/png", len(image))]


def test_whitespace_around_the_colon_is_allowed():
    body = b'{"data": [{"b64_json" \n\t:\r\n  "' + b64(IMAGES["PNG"]).encode() + b'"}]}'

    for chunk_size in (None, 1):
        _, recorder = decode(body, chunk_size)
        assert recorder.data() == {0: IMAGES["PNG"]}


def test_b64_json_as_a_string_value_is_not_a_key():
    body = (
        b'{"format": "b64_json", "also": ["b64_json" , "b64_json"], '
        b'"x \\"b64_json": "QUFBQQ==", "data": [{"kind": "b64_json", "b64_json": "'
        + b64(IMAGES["JPEG"]).encode()
        + b'"}]}'
    )

    for chunk_size in (None, 1, 5):
        edit, recorder = decode(body, chunk_size)
        assert edit.outputs == [WrittenImage(0, "image/jpeg", len(IMAGES["JPEG"]))]
        assert recorder.data() == {0: IMAGES["JPEG"]}


def test_url_outputs_come_back_as_image_urls():
    body = edit_body([{"url": "https://cdn.example/a.png", "revised_prompt": "fox"}])

    edit, recorder = decode(body)

    assert edit.outputs == [ImageUrl("https://cdn.example/a.png", "fox")]
    assert recorder.writers == {}


def test_mixed_url_and_b64_outputs_keep_data_order():
    body = edit_body(
        [
            {"url": "https://cdn.example/0.png"},
            {"b64_json": b64(IMAGES["WEBP"])},
            {"b64_json": "", "url": "https://cdn.example/2.png"},
            {"b64_json": b64(IMAGES["PNG"])},
        ]
    )

    edit, recorder = decode(body, 11)

    assert edit.outputs == [
        ImageUrl("https://cdn.example/0.png"),
        WrittenImage(0, "image/webp", len(IMAGES["WEBP"])),
        ImageUrl("https://cdn.example/2.png"),
        WrittenImage(1, "image/png", len(IMAGES["PNG"])),
    ]
    assert recorder.data() == {0: IMAGES["WEBP"], 1: IMAGES["PNG"]}


def test_missing_created_and_usage_default_to_zero_and_empty():
    body = json.dumps({"created": True, "usage": [1], "data": [{"url": "https://x/y"}]})

    edit, _ = decode(body.encode())

    assert (edit.created, edit.usage) == (0, {})


def test_a_body_decodes_into_a_memory_sink():
    edit, sink = decode_in_memory(REALISTIC_BODY, "req-1")

    assert all(isinstance(image, WrittenImage) for image in edit.outputs)
    assert [(sink.data(image.slot), image.mime_type) for image in edit.outputs] == [
        (IMAGES["PNG"], "image/png"),
        (IMAGES["JPEG"], "image/jpeg"),
        (IMAGES["WEBP"], "image/webp"),
    ]
    assert edit.usage == USAGE
    assert edit.created == 1713833628


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 1])
def test_an_invalid_base64_character_is_named(chunk_size):
    encoded = b64(IMAGES["PNG"])
    body = edit_body([{"url": "https://x/y"}, {"b64_json": encoded[:100] + "!" + encoded[101:]}])

    message, _ = decode_error(body, chunk_size)

    assert "data[1].b64_json is not valid base64" in message
    assert "req-9" in message


@pytest.mark.parametrize(
    "value",
    [
        "QUFB\\nQUFB",  # an escape other than \/
        "QQ==QUFB",  # padding before the end
        "QUFBQ",  # not a whole number of blocks
    ],
)
def test_malformed_base64_is_refused(value):
    body = b'{"data": [{"b64_json": "' + value.encode() + b'"}]}'

    for chunk_size in (None, 1, 4):
        message, _ = decode_error(body, chunk_size)
        assert "data[0].b64_json is not valid base64" in message


def test_non_image_bytes_are_refused_without_opening_a_writer():
    body = edit_body([{"b64_json": b64(b"<svg>" + b"x" * 100)}])

    for chunk_size in (None, 1):
        message, recorder = decode_error(body, chunk_size)
        assert "data[0].b64_json is not a PNG, JPEG or WEBP image" in message
        assert recorder.writers == {}


def test_a_short_non_image_value_is_refused():
    message, recorder = decode_error(edit_body([{"b64_json": b64(b"tiny")}]))

    assert "is not a PNG, JPEG or WEBP image" in message
    assert recorder.writers == {}


def test_finished_values_are_closed_when_a_later_one_fails():
    body = edit_body([{"b64_json": b64(IMAGES["PNG"])}, {"b64_json": b64(b"GIF89a" * 10)}])

    message, recorder = decode_error(body, 64)

    assert "data[1].b64_json is not a PNG" in message
    assert list(recorder.writers) == [0]
    assert recorder.writers[0].closed
    assert bytes(recorder.writers[0].buffer) == IMAGES["PNG"]


def test_body_cut_off_inside_a_value_is_reported_and_the_writer_left_open():
    body = REALISTIC_BODY[: REALISTIC_BODY.index(b64(IMAGES["JPEG"])[500:510].encode())]

    message, recorder = decode_error(body, 1000)

    assert "data[1].b64_json was cut off" in message
    assert list(recorder.writers) == [0, 1]
    assert recorder.writers[0].closed
    assert not recorder.writers[1].closed


def test_body_cut_off_before_the_closing_brace_is_not_valid_json():
    body = REALISTIC_BODY.rstrip(b"}")

    message, recorder = decode_error(body)

    assert "not valid JSON, or was cut off" in message
    assert all(writer.closed for writer in recorder.writers.values())


def test_the_decoder_stops_after_an_error():
    recorder = Recorder()
    decoder = StreamedEditDecoder(recorder)
    encoded = b64(IMAGES["PNG"]).encode()
    decoder.feed(b'{"data": [{"b64_json": "' + encoded[:200])
    with pytest.raises(CometAPIBadResponseError, match="not valid base64"):
        decoder.feed(b"!!!!")
    written = bytes(recorder.writers[0].buffer)

    with pytest.raises(CometAPIBadResponseError, match="not valid base64"):
        decoder.feed(encoded[204:])
    with pytest.raises(CometAPIBadResponseError, match="not valid base64"):
        decoder.finish()
    assert bytes(recorder.writers[0].buffer) == written
    assert decoder.opened_slots == (0,)


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head></html>",
        b"\n  <html><body>" + b"<p>sorry</p>" * 200_000 + b"</body></html>",
    ],
)
def test_an_html_page_is_named(body):
    message, _ = decode_error(body, 256 * 1024)

    assert "the server sent an HTML page instead of JSON" in message
    assert "<html" not in message


@pytest.mark.parametrize("body", [b"", b"OK", b'{"data": [}', b"\xff\xfe{}"])
def test_a_body_that_is_not_json_is_refused(body):
    message, _ = decode_error(body)

    assert "the response is not valid JSON" in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[1, 2]", "the response is a JSON list, not an object"),
        (b'{"created": 1, "object": "list"}', "has no 'data' list of images (keys: created"),
        (b'{"data": []}', "has no 'data' list"),
        (b'{"data": [{"b64_json": ""}]}', "data[0] has neither 'b64_json' nor 'url'"),
        (b'{"data": [{"revised_prompt": "x"}]}', "data[0] has neither 'b64_json' nor 'url'"),
        (b'{"data": [3]}', "data[0] is not an object"),
    ],
)
def test_a_body_without_usable_data_is_refused(body, expected):
    message, _ = decode_error(body)

    assert expected in message


def test_a_skeleton_over_one_mib_is_refused_while_streaming():
    body = edit_body([{"url": "https://x/y", "revised_prompt": "p" * MAX_SKELETON_BYTES}])
    decoder = StreamedEditDecoder(Recorder())
    accepted = 0
    for chunk in chunks_of(body, 64 * 1024):
        if accepted + len(chunk) > MAX_SKELETON_BYTES:
            break
        decoder.feed(chunk)
        accepted += len(chunk)

    with pytest.raises(CometAPIBadResponseError, match="over 1 MiB of JSON besides its b64_json"):
        decoder.feed(chunk)
    assert decoder.opened_slots == ()


# --- memory ------------------------------------------------------------------------------------


class CountingWriter:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes, /) -> None:
        self.size += len(data)

    def close(self) -> None:
        pass


def test_a_big_body_streams_in_flat_memory():
    images = [PNG_SIGNATURE + os.urandom(8 * 1024 * 1024) for _ in range(4)]
    body = edit_body([{"b64_json": b64(image)} for image in images])
    sizes = [len(image) for image in images]
    del images
    assert len(body) > 40_000_000
    writers: list[CountingWriter] = []

    def open_writer(slot: int, mime_type: str) -> CountingWriter:
        writers.append(CountingWriter())
        return writers[-1]

    chunk = 256 * 1024
    tracemalloc.start()
    try:
        decoder = StreamedEditDecoder(open_writer)
        for start in range(0, len(body), chunk):
            decoder.feed(body[start : start + chunk])
        edit = decoder.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert [writer.size for writer in writers] == sizes
    assert [image.size for image in edit.outputs if isinstance(image, WrittenImage)] == sizes
    assert peak < 10 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
