"""Parsers of untrusted input raise only the provider's typed errors, in bounded time and memory."""

from __future__ import annotations

import base64
import email.utils
import gc
import io
import json
import math
import os
import string
import tempfile
import time
import tracemalloc
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from airflow_provider_cometapi.api.images import ImagePart, check_image, check_mask
from airflow_provider_cometapi.api.response import error_from_response
from airflow_provider_cometapi.api.results import WrittenImage
from airflow_provider_cometapi.api.retry import (
    MAX_BACKOFF,
    RetryPolicy,
    retry_after_seconds,
)
from airflow_provider_cometapi.api.streaming import ImageUrl, StreamedEdit
from airflow_provider_cometapi.exceptions import (
    CometAPIBadResponseError,
    CometAPIError,
    CometAPIValidationError,
)
from airflow_provider_cometapi.storage.paths import URI
from airflow_provider_cometapi.storage.sources import classify
from tests.decoding import decode_in_memory
from tests.settings import PLANTED_KEY

FAST = settings(max_examples=150, deadline=1000, database=None)
SLOW = settings(
    max_examples=60,
    deadline=1000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MiB = 1024 * 1024
MISSING = Path(tempfile.gettempdir()) / f"cometapi-props-{uuid.uuid4().hex}" / "missing"
"""A folder that does not exist (and is never made): text under it can never name a real file."""


@pytest.fixture(scope="module", autouse=True)
def _imports_done():
    """Run each parser once, so first-use imports are not timed as part of an example."""
    with pytest.raises(CometAPIError):
        read_source(str(MISSING / "warm-up.png"))
    with pytest.raises(CometAPIError):
        check_image("", b"GIF89a", "image")
    error_from_response(500, b"{}", {})


def bounded(call, *args, seconds=1.0, peak_bytes=32 * MiB):
    """``call(*args)`` in bounded time and traced memory: ``(result, None)`` or ``(None, error)``.

    Only a ``CometAPIError`` is caught; anything else fails the property. The time is this
    thread's CPU time with the collector paused: the call's own work, not the machine's load or
    a collection of Airflow's heap (a hang is pytest-timeout's to catch).
    """
    tracemalloc.start()
    gc.disable()
    started = time.thread_time()
    try:
        try:
            outcome = call(*args), None
        except CometAPIError as exc:
            outcome = None, exc
        elapsed = time.thread_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        gc.enable()
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    assert peak < peak_bytes, f"peak {peak / MiB:.1f} MiB"
    return outcome


# --- retry: Retry-After headers and the retry decision --------------------------------------

NUMBERS = st.one_of(
    st.floats().map(repr),
    st.floats().map(str),
    st.integers().map(str),
    st.floats(-1e308, 1e308).map(lambda x: f"{x:.3e}"),
    st.sampled_from(
        ["1e308", "-1e308", "1e309", "inf", "-inf", "nan", "-0", "0x10", "1_000", " 5 ", "", " "]
    ),
)
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
ZONES = st.sampled_from(
    ["GMT", "UT", "UTC", "+0000", "-0000", "+1400", "-1200", "+9999", "EST", ""]
)


@st.composite
def date_like(draw):
    """RFC 5322-shaped dates whose fields run far outside their ranges."""
    day = draw(st.sampled_from(["Mon, ", "Fri, ", "Xyz, ", ""]))
    mday = draw(st.integers(-5, 99))
    month = draw(st.sampled_from([*MONTHS, "Foo"]))
    year = draw(st.sampled_from([0, 1, 69, 99, 1900, 1970, 2038, 9999, 10000, 99999]))
    hms = ":".join(str(draw(st.integers(0, 99))) for _ in range(draw(st.integers(1, 3))))
    return f"{day}{mday} {month} {year} {hms} {draw(ZONES)}".strip()


HTTP_DATES = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=14))]),
    ).map(email.utils.format_datetime),
    st.datetimes().map(email.utils.format_datetime),  # naive: rendered with -0000
    st.sampled_from(
        [
            "Mon, 01 Jan 0000 00:00:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Fri, 31 Dec 9999 23:59:59 -1200",
            "Mon, 01 Jan 0001 00:00:00 +1400",
            "Thu, 01 Jan 1970 00:00:00 GMT",
        ]
    ),
    date_like(),
)
HEADER_VALUES = st.one_of(NUMBERS, HTTP_DATES, st.text(max_size=60))
NOW = st.floats(0, 1e10)


@FAST
@given(
    millis=st.none() | HEADER_VALUES,
    seconds=st.none() | HEADER_VALUES,
    now=NOW,
)
def test_retry_after_is_none_or_a_finite_non_negative_number(millis, seconds, now):
    headers = {
        name: value
        for name, value in (("retry-after-ms", millis), ("retry-after", seconds))
        if value is not None
    }
    wait, error = bounded(retry_after_seconds, headers, lambda: now, seconds=0.5)

    assert error is None
    assert wait is None or (math.isfinite(wait) and wait >= 0)


def test_retry_after_reads_seconds_millis_and_dates():
    now = 1_700_000_000.0
    in_30_s = email.utils.formatdate(now + 30, usegmt=True)

    assert retry_after_seconds({"retry-after-ms": "1500"}, lambda: now) == 1.5
    assert retry_after_seconds({"retry-after": "7"}, lambda: now) == 7.0
    assert retry_after_seconds({"retry-after": in_30_s}, lambda: now) == 30.0
    assert retry_after_seconds({"retry-after": "Sat, 01 Jan 2000 00:00:00 GMT"}, lambda: now) == 0
    assert retry_after_seconds({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, lambda: now) > 0
    assert retry_after_seconds({"retry-after": "Mon, 32 Foo 2024 99:99 GMT"}, lambda: now) is None
    assert retry_after_seconds({"retry-after": "inf"}) is None


@FAST
@example(500, 1024, 1025, None, None, 0.0, 0.0)  # found: 2.0**1024 overflowed in backoff()
@given(
    status=st.integers(-1, 1000),
    retries_done=st.integers(0, 2**40),
    max_retries=st.integers(0, 2**40),
    retry_after=st.none() | HEADER_VALUES,
    should_retry=st.none() | st.sampled_from(["true", "false", " TRUE ", "", "maybe"]),
    jitter=st.floats(0, 1, exclude_max=True),
    now=NOW,
)
def test_retry_decision_waits_a_finite_time_and_respects_max_retries(
    status, retries_done, max_retries, retry_after, should_retry, jitter, now
):
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    if should_retry is not None:
        headers["x-should-retry"] = should_retry
    policy = RetryPolicy(max_retries=max_retries, random=lambda: jitter, now=lambda: now)

    decision, error = bounded(policy.for_status, retries_done, status, headers, seconds=0.5)

    assert error is None
    assert math.isfinite(decision.wait)
    assert decision.wait >= 0
    assert decision.reason
    if decision.retry:
        assert retries_done < max_retries
        assert decision.wait <= max(policy.max_retry_after, MAX_BACKOFF)


@settings(max_examples=50, deadline=1000, database=None)
@given(
    status=st.sampled_from([408, 409, 429, 500, 502, 503, 599]),
    max_retries=st.integers(0, 40),
    retry_after=st.none() | HEADER_VALUES,
)
def test_a_failing_server_is_retried_at_most_max_retries_times(status, max_retries, retry_after):
    headers = {} if retry_after is None else {"retry-after": retry_after}
    policy = RetryPolicy(max_retries=max_retries)
    retries = 0
    while policy.for_status(retries, status, headers).retry:
        retries += 1
        assert retries <= max_retries

    assert retries in (0, max_retries)


# --- error bodies --------------------------------------------------------------------------

KEY_TAILS = st.text(string.ascii_letters + string.digits + "-_", min_size=13)
SECRETS = st.just(PLANTED_KEY) | KEY_TAILS.map(lambda tail: "sk-" + tail)
"""Shaped like keys ("sk-..."), so a secret can never be a word of the provider's own messages."""
JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=400)


def json_values(leaves=JSON_LEAVES):
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    )


def with_secret(secret_and_text):
    """Text that echoes the secret somewhere in the middle."""
    secret, (before, after) = secret_and_text
    return before + secret + after


@st.composite
def error_bodies(draw, secret):
    """Bytes, JSON error shapes, HTML pages and deep nesting, some echoing ``secret``."""
    text = st.text(max_size=700)
    echoed = st.tuples(text, text).map(lambda pair: pair[0] + secret + pair[1])
    escaped = "".join(f"\\u{ord(ch):04x}" for ch in secret)  # only visible once JSON-decoded
    words = st.one_of(text, echoed)
    anything = json_values(JSON_LEAVES | echoed)
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return draw(st.binary(max_size=5000))
    if kind == 1:
        return json.dumps({"error": draw(anything)}).encode()
    if kind == 2:
        error = draw(
            st.fixed_dictionaries(
                {},
                optional={"message": anything, "detail": anything, "param": anything},
            )
        )
        error["code"] = draw(anything)
        return json.dumps({"error": error}).encode()
    if kind == 3:
        return json.dumps(draw(anything)).encode()
    if kind == 4:
        title, body = draw(words), draw(words)
        return f"<!DOCTYPE html><html><head><title>{title}</title></head><h1>{body}</h1>".encode()
    if kind == 5:
        depth = draw(st.integers(1, 3000))
        return b'{"error": ' + b"[" * depth + b"]" * draw(st.sampled_from([0, depth])) + b"}"
    if kind == 6:
        padding = " " * draw(st.integers(0, 5000))
        return (padding + secret + draw(text)).encode()
    error = {"message": draw(text) + "@@SECRET@@", "param": "@@SECRET@@"}
    return json.dumps({"error": error}).replace("@@SECRET@@", escaped).encode()


HEADER_TEXT = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=400
)


@SLOW
@given(
    status=st.integers(0, 999),
    secret=SECRETS,
    data=st.data(),
    headers=st.dictionaries(
        st.sampled_from(["x-request-id", "request-id", "cf-ray", "retry-after", "content-type"]),
        HEADER_TEXT,
    ),
)
def test_an_error_body_becomes_a_short_typed_error_without_the_secret(
    status, secret, data, headers
):
    body = data.draw(error_bodies(secret))

    error, failure = bounded(refuse, status, body, headers, secret, seconds=0.5)

    assert failure is None
    assert isinstance(error, CometAPIError)
    text = str(error)
    assert len(text) <= 600
    assert len(text.splitlines()) == 1
    fields = [text, repr(error), error.message, error.server_message, error.param, error.code]
    for value in fields:
        assert secret not in (value or "")
    for value in (error.server_message, error.param, error.code):
        assert value is None or (len(value) <= 300 and len(value.splitlines()) <= 1)


def refuse(status, body, headers, secret):
    return error_from_response(status, body, headers, secrets=(secret,))


@pytest.mark.parametrize(
    "body",
    [
        PLANTED_KEY,
        "x" * 250 + PLANTED_KEY,  # the 300-character excerpt cuts through the key
        "x" * 290 + PLANTED_KEY,
        " " * 4070 + PLANTED_KEY,  # the 4 KiB head cuts through it; spaces collapse
        " " * 4090 + PLANTED_KEY,
        '{"error": {"message": "' + "x" * 290 + PLANTED_KEY + '"}}',
    ],
    ids=[
        "whole",
        "cut at 300 (a)",
        "cut at 300 (b)",
        "cut at 4 KiB (a)",
        "cut at 4 KiB (b)",
        "json",
    ],
)
def test_no_part_of_a_secret_survives_a_cut(body):
    error = refuse(500, body.encode(), {}, PLANTED_KEY)

    assert PLANTED_KEY[:4] not in str(error)


def test_a_secret_echoed_in_the_request_id_header_is_scrubbed():
    error = refuse(500, b"", {"x-request-id": f"req-{PLANTED_KEY}"}, PLANTED_KEY)

    assert error.request_id == "req-***"


@pytest.mark.parametrize("body", [b"[" * 5000, b'{"error": ' + b"[" * 5000 + b"}"])
def test_json_nested_deeper_than_the_stack_is_plain_text(body):
    error = refuse(502, body, {}, PLANTED_KEY)

    assert error.server_message.startswith(body[:12].decode())


def test_an_html_page_with_an_empty_title_is_named():
    error = refuse(502, b"<html><head><title></title></head><h1>Bad gateway</h1></html>", {}, "")

    assert error.server_message == "an HTML error page"


def test_a_secret_in_param_or_code_is_scrubbed():
    body = json.dumps({"error": {"message": "bad", "param": PLANTED_KEY, "code": PLANTED_KEY}})

    error = refuse(400, body.encode(), {}, PLANTED_KEY)

    assert (error.param, error.code) == ("***", "***")


# --- 200 bodies ----------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
B64_VALUES = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=60).map(lambda raw: base64.b64encode(raw).decode()),
    st.binary(max_size=60).map(lambda raw: base64.b64encode(PNG_SIGNATURE + raw).decode()),
    st.binary(max_size=60).map(lambda raw: base64.b64encode(PNG_SIGNATURE + raw).decode()[:-1]),
    st.sampled_from(["", "====", "QQ==QQ==", "iVBORw0KGgo=", "\\/\\/", "iVBORw0KGgoAAAA\\"]),
)
ITEMS = st.fixed_dictionaries(
    {},
    optional={
        "b64_json": B64_VALUES | json_values(),
        "url": st.text(max_size=30) | json_values(),
        "revised_prompt": json_values(),
    },
)
EDIT_BODIES = st.one_of(
    st.binary(max_size=3000),
    json_values().map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(
        {"data": st.lists(ITEMS, max_size=4) | json_values()},
        optional={"created": json_values(), "usage": json_values()},
    ).map(lambda value: json.dumps(value).encode()),
    st.integers(1, 3000).map(lambda depth: b'{"data": ' + b"[" * depth),
)


@SLOW
@given(body=EDIT_BODIES, request_id=st.none() | st.text(max_size=20))
def test_a_200_body_is_an_edit_or_a_bad_response_error(body, request_id):
    decoded, error = bounded(decode_in_memory, body, request_id, seconds=0.5)

    if error is not None:
        assert type(error) is CometAPIBadResponseError
        assert error.request_id == request_id
        return
    edit, sink = decoded
    assert isinstance(edit, StreamedEdit)
    assert edit.outputs
    for output in edit.outputs:
        assert isinstance(output, ImageUrl | WrittenImage)
        if isinstance(output, WrittenImage):
            data = sink.data(output.slot)
            assert len(data) == output.size
            assert data.startswith(PNG_SIGNATURE) or output.mime_type != "image/png"


# --- operator inputs -----------------------------------------------------------------------


def read_source(value: object) -> tuple[str, bytes]:
    """Classify an operator input, then read it: what an item does with each of its sources."""
    return classify(value, "image", None).read("image")


def never_a_real_file(text: str) -> bool:
    """Text that read_source cannot take as a URI (no network) or as an existing local path."""
    stripped = text.strip()
    return not (
        URI.match(stripped)
        or "://" in text
        or any(key in text for key in ("path", "uri", "url"))
        or (stripped and os.path.lexists(stripped))
    )


UNDER_MISSING = (
    st.text(max_size=80).filter(lambda text: ".." not in text).map(lambda text: f"{MISSING}/{text}")
)
B64_ALPHABET = string.ascii_letters + string.digits + "+/=\n "
LITERAL_ATOMS = st.sampled_from(["1", "'a'", "None", "[]", "{}", "()", "b''", "1j", "-1", '"x"'])
LITERALS = st.recursive(
    LITERAL_ATOMS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(inner, inner), max_size=3).map(
            lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
        ),
        st.lists(inner, min_size=1, max_size=3).map(lambda items: "{" + ", ".join(items) + "}"),
    ),
    max_leaves=8,
)
SOURCE_TEXTS = st.one_of(
    st.text(max_size=200).filter(never_a_real_file),
    UNDER_MISSING,
    st.text(B64_ALPHABET, max_size=200).filter(never_a_real_file),
    st.binary(max_size=200).map(lambda raw: base64.b64encode(raw).decode()),
    st.tuples(
        st.sampled_from(["data:", "data:image/png", "DATA:image/x-foo;charset=utf-8", "data:;a=b"]),
        st.sampled_from([";base64,", ",", ";base64", ";BASE64,"]),
        st.text(max_size=100),
    ).map("".join),
    st.lists(UNDER_MISSING, max_size=3).map(json.dumps),
    LITERALS,
    st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 3000).map(lambda depth: "[" * depth + "1" + "]"),
)
B64_DICTS = st.fixed_dictionaries(
    {"b64_json": st.one_of(st.text(B64_ALPHABET, max_size=100), st.text(max_size=40), JSON_LEAVES)},
    optional={"filename": JSON_LEAVES, "name": JSON_LEAVES},
)


@SLOW
@example("[" * 5000 + "]" * 5000)  # found: json.loads raised RecursionError
@example("{[]: 1}")  # found: ast.literal_eval raised TypeError (unhashable key)
@example("{0: 0, '': 0}")  # found: sorting mixed-type keys for the message raised TypeError
@given(value=SOURCE_TEXTS | B64_DICTS | B64_DICTS.map(json.dumps))
def test_a_source_is_bytes_or_a_typed_error(value):
    assume(not isinstance(value, str) or never_a_real_file(value) or str(MISSING) in value)

    result, error = bounded(read_source, value, seconds=0.5)

    if error is not None:
        assert isinstance(error, CometAPIValidationError)  # or its CometAPISourceError
        assert error.param == "image"
        assert str(error).startswith("image")
        return
    name, data = result
    assert isinstance(name, str)
    assert isinstance(data, bytes)


# --- image checks --------------------------------------------------------------------------


def encoded(fmt, mode="RGB", size=(64, 48), **options):
    buffer = io.BytesIO()
    Image.new(mode, size, (30, 120, 200, 0)[: len(mode)] if mode != "P" else 3).save(
        buffer, format=fmt, **options
    )
    return buffer.getvalue()


SAMPLES = {
    "png": encoded("PNG"),
    "png-rgba": encoded("PNG", "RGBA"),
    "png-palette": encoded("PNG", "P", transparency=3),
    "jpeg": encoded("JPEG"),
    "webp": encoded("WEBP"),
    "webp-rgba": encoded("WEBP", "RGBA", lossless=True),
    "gif": encoded("GIF", "P"),
    "bmp": encoded("BMP"),
    "tiff": encoded("TIFF", compression="tiff_deflate"),
}
FIRST = check_image("first.png", SAMPLES["png"], "image")


@st.composite
def corrupted(draw):
    """A real encoded image with a few bytes flipped, a tail cut, bytes inserted or appended."""
    data = bytearray(SAMPLES[draw(st.sampled_from(sorted(SAMPLES)))])
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "cut", "insert", "append"]))
        if action == "flip" and where < len(data):
            data[where] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[where:]
        elif action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += draw(st.binary(max_size=64))
    return bytes(data)


IMAGE_BYTES = st.one_of(
    st.binary(max_size=2000),
    st.binary(max_size=200).map(lambda raw: PNG_SIGNATURE + raw),
    st.binary(max_size=200).map(lambda raw: b"\xff\xd8\xff" + raw),
    st.binary(max_size=200).map(lambda raw: b"RIFF\0\0\0\0WEBP" + raw),
    st.binary(max_size=200).map(lambda raw: b"GIF89a" + raw),
    corrupted(),
)
FILENAMES = st.sampled_from(["", "boat.png", "x.jpg", "../../etc/passwd", "a\x00b.webp", "é.gif"])


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about some corrupt files
@SLOW
@given(filename=FILENAMES, data=IMAGE_BYTES)
def test_image_check_gives_a_part_or_a_validation_error(filename, data):
    part, error = bounded(check_image, filename, data, "image")

    if error is not None:
        assert type(error) is CometAPIValidationError
        assert error.param == "image"
        return
    assert isinstance(part, ImagePart)
    assert part.mime_type in ("image/png", "image/jpeg", "image/webp")
    assert part.width > 0
    assert part.height > 0
    assert "/" not in part.filename


@pytest.mark.filterwarnings("ignore::UserWarning")
@SLOW
@given(filename=FILENAMES, data=IMAGE_BYTES)
def test_mask_check_gives_a_part_or_a_validation_error(filename, data):
    part, error = bounded(check_mask, filename, data, FIRST)

    if error is not None:
        assert type(error) is CometAPIValidationError
        assert error.param == "mask"
        return
    assert part.mime_type == "image/png"
    assert (part.width, part.height) == (FIRST.width, FIRST.height)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_uncorrupted_sample_is_accepted(name):
    part = check_image(f"sample.{name}", SAMPLES[name], "image")

    assert (part.width, part.height) == (64, 48)
