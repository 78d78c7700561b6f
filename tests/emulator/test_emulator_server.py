"""EmulatorServer life cycle: ports, start and stop, runtime settings, cheap imports."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from airflow_provider_cometapi.emulator import EmulatorServer
from tests.emulator.helpers import KEY, png_part


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_port_zero_picks_a_free_port_and_stop_closes_it():
    with EmulatorServer() as server:
        url = server.url
        port = int(url.rsplit(":", 1)[1])
        assert url == f"http://127.0.0.1:{port}"
        assert port > 0
        assert requests.get(f"{url}/v1/models", headers={"Authorization": "Bearer k"}).ok

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/v1/models", timeout=2)


def test_given_port_is_used():
    port = free_port()
    server = EmulatorServer(port=port).start()
    try:
        assert server.url == f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_start_fails_clearly_when_the_port_is_taken():
    with EmulatorServer() as taken:
        port = int(taken.url.rsplit(":", 1)[1])
        with pytest.raises(RuntimeError, match=str(port)):
            EmulatorServer(port=port).start()


def test_url_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="start"):
        EmulatorServer().url  # noqa: B018


def test_invalid_settings_are_refused_at_construction():
    with pytest.raises(ValueError, match="explode"):
        EmulatorServer(fault="explode")
    with pytest.raises(ValueError, match="latency"):
        EmulatorServer(latency=-1)
    with pytest.raises(ValueError, match="more than 1"):
        EmulatorServer(random_faults={"429": 0.8, "500": 0.8})


def test_stop_ends_a_hanging_request_with_a_504_instead_of_waiting_it_out():
    server = EmulatorServer().start()
    answers: list[requests.Response] = []
    errors: list[BaseException] = []

    def hang():
        try:
            answers.append(
                requests.post(
                    f"{server.url}/v1/images/edits",
                    files=[png_part()],
                    data={"prompt": "x"},
                    headers={"Authorization": f"Bearer {KEY}", "x-emulator-fault": "hang"},
                    timeout=30,
                )
            )
        except requests.RequestException as exc:
            errors.append(exc)

    client = threading.Thread(target=hang)
    client.start()
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r["status"] for r in server.requests] == [None]  # hanging

    server.stop()
    client.join(10)

    # The hang itself gave up (a 504) when stop() began; left to run, it would have been
    # cancelled by uvicorn's graceful shutdown after 3 s, and answered 500.
    assert not client.is_alive()
    assert errors == []
    assert [(a.status_code, "Emulated hang: gave up waiting." in a.text) for a in answers] == [
        (504, True)
    ]
    assert [r["status"] for r in server.requests] == [504]


def test_importing_the_package_and_plugin_loads_no_web_stack():
    code = (
        "import sys\n"
        "import airflow_provider_cometapi.emulator as emulator\n"
        "import airflow_provider_cometapi.emulator.pytest_plugin\n"
        "heavy = {'fastapi', 'starlette', 'uvicorn', 'PIL'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert emulator.EmulatorServer.__name__ == 'EmulatorServer'\n"
        "heavy = {'fastapi', 'uvicorn', 'PIL'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
