"""``response_format="url"`` downloads: the 64 MiB cap, retries and the per-call timeout."""

from __future__ import annotations

import contextlib
import json
import select
import threading

import pytest

from airflow_provider_cometapi.exceptions import CometAPIBadResponseError, CometAPITimeoutError
from airflow_provider_cometapi.hooks.cometapi import MAX_DOWNLOAD_BYTES, CometApiHook
from airflow_provider_cometapi.samples import PAPER_BOAT
from tests.httpserver import QuietHandler, serve
from tests.imaging import decode, image_bytes

STALL_SECONDS = 60.0
"""The longest ``/slow`` holds its answer back: far past a per-call timeout, far short of the
connection's 600 s, so a client that kept the 600 s gets the image and fails the test."""


class _ImageHost(QuietHandler):
    """A CometAPI stand-in: an edit answers with the URL of ``output`` on this server.

    ``/flaky`` fails with 503 the first time; ``/slow`` sends nothing until the client hangs up,
    or answers after ``STALL_SECONDS``, and records which in ``stalls``.
    """

    output: str
    gets: list[str]
    stalls: list[str]
    stalled: threading.Event
    image = image_bytes()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        host, port = self.server.server_address[:2]
        url = f"http://{host}:{port}{self.output}"
        self.answer(200, json.dumps({"created": 1, "data": [{"url": url}]}).encode())

    def do_GET(self) -> None:
        self.gets.append(self.path)
        if self.path == "/huge":
            self._stream_past_the_cap()
            return
        if self.path == "/flaky" and len(self.gets) == 1:
            self.answer(503, b'{"error": {"message": "busy"}}')
            return
        if self.path == "/slow" and self._stall():
            return
        self.answer(200, self.image, "image/png")

    def _stall(self) -> bool:
        """Wait for the client to hang up (true) or for ``STALL_SECONDS`` to pass (false)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], STALL_SECONDS)
            hung_up = bool(readable) and self.connection.recv(1) == b""
        except ConnectionResetError:
            hung_up = True
        self.stalls.append("client hung up" if hung_up else "answered")
        self.stalled.set()
        return hung_up

    def _stream_past_the_cap(self) -> None:
        """A PNG signature, then filler, 1 MiB more than the 64 MiB cap, in 1 MiB chunks."""
        chunk, chunks = 1 << 20, (MAX_DOWNLOAD_BYTES >> 20) + 1
        with contextlib.suppress(OSError):  # the client hangs up at the cap
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(chunk * chunks))
            self.end_headers()
            self.wfile.write(b"\x89PNG\r\n\x1a\n" + bytes(chunk - 8))
            for _ in range(chunks - 1):
                self.wfile.write(bytes(chunk))


@pytest.fixture
def image_host(monkeypatch):
    """Start a stand-in whose edits point at ``output``; ``cometapi_default`` points at it.

    The outputs are on the API's own origin, so they download without ``allow_private_urls``.
    """
    with contextlib.ExitStack() as stack:

        def start(output, **extra):
            attributes = {"output": output, "gets": [], "stalls": [], "stalled": threading.Event()}
            handler = type("ImageHost", (_ImageHost,), attributes)
            url = stack.enter_context(serve(handler))
            conn = {"conn_type": "cometapi", "host": url, "password": "key-12345", "extra": extra}
            monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(conn))
            return handler

        yield start


def test_download_over_the_cap_is_a_bad_response(image_host, waits):
    gets = image_host("/huge").gets

    with CometApiHook() as hook, pytest.raises(CometAPIBadResponseError) as raised:
        hook.edit_image(image_bytes(), "Add a ribbon", response_format="url")

    assert "the download of data[0].url is larger than 64 MiB" in str(raised.value)
    assert gets == ["/huge"]  # a cut-off download is final: the edit is already paid for


def test_download_over_the_cap_leaves_no_partial_output(run_dag, tmp_path, image_host, capfd):
    gets = image_host("/huge").gets
    output = f"{tmp_path}/out/"

    outcome = run_dag(
        f'CometImageEditOperator(task_id="edit", prompt="Add a ribbon", '
        f'image={str(PAPER_BOAT)!r}, output_path={output!r}, response_format="url")'
    )

    assert outcome.states() == {("edit", -1): "failed"}
    logs = "".join(capfd.readouterr())
    assert "CometAPIBadResponseError" in logs
    assert "the download of data[0].url is larger than 64 MiB" in logs
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []
    assert gets == ["/huge"]


def test_download_503_is_retried_then_succeeds(image_host, waits):
    gets = image_host("/flaky").gets

    with CometApiHook() as hook:
        result = hook.edit_image(image_bytes(), "Add a flag", response_format="url")

    assert gets == ["/flaky", "/flaky"]
    assert len(waits) == 1
    assert result.images[0].data == _ImageHost.image
    assert decode(result.images[0].data).size == (64, 48)


def test_per_call_timeout_applies_to_downloads(image_host, waits):
    host = image_host("/slow", max_retries=0)  # the connection's read timeout stays 600 s

    with (
        CometApiHook() as hook,
        pytest.raises(CometAPITimeoutError, match="did not answer") as raised,
    ):
        hook.edit_image(image_bytes(), "Add a flag", response_format="url", timeout=0.5)

    assert "read timeout=0.5" in str(raised.value.__cause__)  # the socket waited 0.5 s, not 600 s
    assert host.stalled.wait(STALL_SECONDS)
    assert host.stalls == ["client hung up"]  # before the image host gave in and answered
    assert host.gets == ["/slow"]
