"""Constants and small helpers shared by the emulator tests."""

from __future__ import annotations

import base64
import contextlib
import http.client
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import requests

from tests.imaging import decode, image_bytes

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = "test-key-0123456789"
PROMPT = "Add a small red ribbon"
USAGE_KEYS = {
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
    "input_tokens",
    "output_tokens",
    "input_tokens_details",
    "claude_cache_creation_5_m_tokens",
    "claude_cache_creation_1_h_tokens",
}
"""The keys of a GPT-like model's ``usage``, as in CometAPI's example."""


def png_part(data: bytes | None = None, name: str = "image.png", field: str = "image"):
    """One multipart file part for ``requests``, a 64x48 PNG by default."""
    return (field, (name, image_bytes() if data is None else data, "image/png"))


def outputs(response):
    """Decode every ``b64_json`` image of an edit response."""
    return [decode(base64.b64decode(item["b64_json"])) for item in response.json()["data"]]


def assert_refused(response, emulator, param, code=None):
    """A 400 ``invalid_request_error`` naming ``param``: the only request, and nothing billed."""
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    assert [r["status"] for r in emulator.requests] == [400]
    assert emulator.billed == []


@contextlib.contextmanager
def emulator_cli(*options: str) -> Iterator[str]:
    """Run ``python -m airflow_provider_cometapi.emulator --port 0 OPTIONS``; yield its URL.

    On leaving, it must stop cleanly on SIGTERM (exit code 0); it is killed if it does not.
    """
    command = [sys.executable, "-m", "airflow_provider_cometapi.emulator", "--port", "0"]
    with subprocess.Popen(
        [*command, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            line = process.stdout.readline().strip()
            prefix = "CometAPI emulator listening on http://127.0.0.1:"
            assert line.startswith(prefix), line or process.stderr.read()
            yield line.rsplit(" ", 1)[1]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()


def truncated_answer(url: str, headers: dict[str, str]) -> tuple[int, int, bytes]:
    """POST an edit (``png_part()``, prompt "x") with ``headers`` over a plain connection that
    reads whatever arrives; return the status, the promised ``Content-Length`` and the part
    received before the body was cut off (the read must be cut off)."""
    prepared = requests.Request(
        "POST",
        f"{url}/v1/images/edits",
        files=[png_part()],
        data={"prompt": "x"},
        headers={**headers, "Authorization": f"Bearer {KEY}"},
    ).prepare()
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("POST", "/v1/images/edits", body=prepared.body, headers=prepared.headers)
        response = connection.getresponse()
        with pytest.raises(http.client.IncompleteRead) as cut:
            response.read()
    finally:
        connection.close()
    return response.status, int(response.headers["Content-Length"]), cut.value.partial
