"""The uvicorn internals the emulator's ``reset`` fault reaches into, checked on their own.

``ResetResponse`` (``emulator/responses.py``) finds the request's connection among uvicorn's
private ``Server.server_state.connections`` (wired in ``emulator/server.py``), matches its
``client`` address and aborts its ``transport`` with ``SO_LINGER`` 0. No public API offers that,
so a uvicorn upgrade may take it away: these tests then fail naming what is gone, rather than the
reset-fault tests failing in ways that look like flakes.
"""

from __future__ import annotations

import socket
from collections.abc import Set
from urllib.parse import urlsplit

import pytest
import uvicorn

from airflow_provider_cometapi.emulator import EmulatorServer


def gone(what: str) -> str:
    """The failure message: which internal is missing, who needs it, and what to do."""
    return (
        f"uvicorn {uvicorn.__version__} {what}. The emulator's `reset` fault needs it "
        "(ResetResponse in airflow_provider_cometapi/emulator/responses.py, wired to "
        "Server.server_state.connections in emulator/server.py): adapt them to this uvicorn, "
        "or keep uvicorn below this version."
    )


async def _app(scope, receive, send):  # never called: the server is only constructed
    raise AssertionError("not served")


def test_uvicorn_servers_keep_their_open_connections_in_server_state():
    server = uvicorn.Server(uvicorn.Config(_app))

    state = getattr(server, "server_state", None)
    if state is None:
        pytest.fail(gone("has no Server.server_state"))
    if not isinstance(getattr(state, "connections", None), Set):
        pytest.fail(gone("has no set of protocols as Server.server_state.connections"))


def test_the_emulators_connections_have_the_client_and_transport_the_reset_fault_aborts():
    with EmulatorServer() as emulator:
        address = urlsplit(emulator.url)
        with socket.create_connection((address.hostname, address.port), timeout=10) as client:
            client.sendall(
                b"GET /v1/models HTTP/1.1\r\nHost: emulator\r\nAuthorization: Bearer k\r\n\r\n"
            )
            assert client.recv(65536).startswith(b"HTTP/1.1 200")  # kept open: HTTP/1.1
            try:
                connections = list(emulator._state.connections())  # what ResetResponse reads
            except AttributeError as exc:
                pytest.fail(gone(f"lost an attribute the emulator reads ({exc})"))

            here = client.getsockname()[:2]
            mine = [c for c in connections if tuple(getattr(c, "client", None) or ()) == here]
            if len(mine) != 1:
                pytest.fail(
                    gone(
                        f"lists no connection whose .client is this request's address {here!r} "
                        f"among {connections!r}"
                    )
                )
            transport = getattr(mine[0], "transport", None)
            if not callable(getattr(transport, "abort", None)):
                pytest.fail(gone(f"gives {type(mine[0]).__name__} no .transport to abort"))
            sock = transport.get_extra_info("socket")
            if not callable(getattr(sock, "setsockopt", None)):
                pytest.fail(gone("gives a transport without its socket (for SO_LINGER)"))
