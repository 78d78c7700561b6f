"""Fixtures of the fault tests: a raw-socket server standing in for CometAPI."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

import pytest

from tests.faults.rawserver import RawServer

if TYPE_CHECKING:
    from collections.abc import Sequence

RAW_KEY = "k-123456"


@pytest.fixture
def serve_raw(monkeypatch):
    """Start a ``RawServer`` and point ``cometapi_default`` at it; stop it, leaving no thread."""
    servers: list[RawServer] = []

    def start(script: Sequence[bytes | memoryview | str], **options) -> RawServer:
        server = RawServer(script, **options).__enter__()
        servers.append(server)
        connection = {
            "conn_type": "cometapi",
            "host": server.url,
            "password": RAW_KEY,
            "extra": {"timeout": 0.5, "max_retries": 1},
        }
        monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(connection))
        return server

    yield start
    for server in servers:
        server.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("rawserver-")]
