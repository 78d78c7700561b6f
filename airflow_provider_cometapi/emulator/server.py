"""``EmulatorServer``: the emulator app served by uvicorn in a background thread."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.emulator.drift import parse_drift
from airflow_provider_cometapi.emulator.faults import (
    FileFaults,
    RandomFaults,
    parse_fault,
    parse_random_faults,
)
from airflow_provider_cometapi.emulator.state import EmulatorState

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    import uvicorn

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
GRACEFUL_SHUTDOWN = 3
"""Seconds stop() lets requests in flight (latency, hang) finish before cancelling them."""


class EmulatorServer:
    """A local CometAPI emulator on loopback, for offline DAG development and tests.

    :param host: interface to listen on.
    :param port: port to listen on; 0 picks a free one.
    :param api_key: the one Bearer key accepted; ``None`` accepts any non-empty key.
    :param latency: seconds added to each edit.
    :param fault: a fault spec applied to every edit request, e.g. ``status=429;retry_after=2``.
    :param file_faults: fault specs for the requests that upload one named image, e.g.
        ``{"b3.png": "status=400"}``; see :meth:`set_file_faults`.
    :param random_faults: status rates such as ``{"429": 0.1, "500": 0.05}`` or ``"429=0.1"``.
    :param seed: seed of the random faults.
    :param honour_idempotency: answer a repeated ``Idempotency-Key`` of a billed edit with
        the same response, billing nothing, as a deduplicating gateway does.
    :param drift: the share (0 to 1) of the pixels a mask keeps that each edit changes anyway,
        as real models do; see ``emulator/drift.py``. A request's ``x-emulator-drift`` header
        wins.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        latency: float = 0.0,
        fault: str | None = None,
        file_faults: Mapping[str, str] | None = None,
        random_faults: str | Mapping[str, float] | Mapping[int, float] | None = None,
        seed: int = 0,
        honour_idempotency: bool = False,
        drift: float = 0.0,
    ) -> None:
        self.host = host
        self.port = port
        rates = parse_random_faults(random_faults) if random_faults else {}
        self._state = EmulatorState(
            api_key=api_key or None,
            random_faults=RandomFaults(rates, seed) if rates else None,
            honour_idempotency=honour_idempotency,
        )
        self.set_latency(latency)
        self.set_drift(drift)
        self.set_fault(fault)
        self.set_file_faults(file_faults)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    @property
    def api_key(self) -> str | None:
        """The one key accepted, or ``None`` when any non-empty key is."""
        return self._state.api_key

    @property
    def url(self) -> str:
        """Base URL without ``/v1``, e.g. ``http://127.0.0.1:8080``."""
        if self._url is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._url

    def start(self) -> EmulatorServer:
        """Start serving in a background thread; return once connections are accepted."""
        if self._server is not None:
            return self
        import uvicorn

        from airflow_provider_cometapi.emulator.app import create_app
        from airflow_provider_cometapi.emulator.responses import quiet_truncation_logs

        quiet_truncation_logs()
        self._state.closing.clear()
        config = uvicorn.Config(
            create_app(self._state),
            host=self.host,
            port=self.port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            limit_concurrency=None,
            backlog=2048,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        )
        server = uvicorn.Server(config)
        self._state.connections = lambda: server.server_state.connections
        thread = threading.Thread(
            target=_run, args=(server,), name="cometapi-emulator", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(
                    f"the emulator could not listen on {self.host}:{self.port}; is the port in use?"
                )
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        self._server, self._thread = server, thread
        self._url = f"http://{_url_host(self.host)}:{port}"
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; pending hangs are abandoned."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._state.closing.set()
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            server.force_exit = True
            thread.join(STOP_TIMEOUT)
        self._server = self._thread = self._url = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Copies of the records of every API request (edits and ``/v1/models``), oldest first."""
        return self._state.records.requests()

    @property
    def billed(self) -> list[dict[str, Any]]:
        """Copies of the billing records, one per successful edit."""
        return self._state.records.billed()

    @property
    def max_in_flight(self) -> int:
        """The most edit requests the emulator has been answering at once since the last reset."""
        return self._state.max_in_flight

    def reset(self) -> None:
        """Clear records, served files and ``times`` counts; restart random faults."""
        self._state.reset()

    def set_latency(self, seconds: float) -> None:
        """Add ``seconds`` to each edit from now on.

        :param seconds: delay, 0 for none.
        """
        if not seconds >= 0:
            raise ValueError(f"latency must be >= 0 seconds, got {seconds!r}")
        self._state.latency = float(seconds)

    def set_drift(self, share: float) -> None:
        """Change that share of the pixels a mask keeps in each edit from now on.

        :param share: 0 to 1; 0 keeps them exactly the source's.
        :raises ValueError: not a number from 0 to 1.
        """
        self._state.drift = parse_drift(share)

    def set_honour_idempotency(self, honour: bool) -> None:
        """Replay (unbilled) the answer of a billed edit for a repeated ``Idempotency-Key``.

        :param honour: on, or off (answers stored while it was on are kept until reset).
        """
        self._state.honour_idempotency = bool(honour)

    def set_fault(self, spec: str | None) -> None:
        """Apply a fault to every edit request from now on (a request's own header wins).

        :param spec: a fault spec such as ``status=503;times=2``, or ``None`` for none.
        :raises ValueError: the spec is invalid.
        """
        self._state.fault = parse_fault(spec) if spec else None

    def set_file_faults(self, faults: Mapping[str, str] | None) -> None:
        """Apply faults to the edit requests that upload given images, from now on.

        A request gets the fault of a name when one of its ``image``/``image[]`` parts has
        exactly that file name or, if no part does, when a part's name without its last
        extension is the name (``b3`` matches ``b3.png`` and ``b3.jpeg``); parts are tried in
        upload order. That fault replaces the server-wide and random faults; a request's own
        ``x-emulator-fault`` header still wins. ``times=N`` counts per name and
        ``Idempotency-Key``. The mapping replaces the previous one whole.

        :param faults: file name to fault spec, e.g. ``{"b3.png": "status=400"}``, or ``None``
            (or empty) for none.
        :raises ValueError: a name is empty or a spec is invalid; nothing is changed then.
        """
        self._state.file_faults = FileFaults(faults) if faults else None

    def connection_json(self, api_key: str | None = None, **extra: Any) -> str:
        """Return an Airflow connection for this emulator, as JSON for ``AIRFLOW_CONN_<ID>``.

        Its ``response_format="url"`` images are served from its own origin, which the hook
        downloads from without ``allow_private_urls``.

        :param api_key: the key to use; defaults to the server's key, else ``test-key``.
        :param extra: the connection's extra fields.
        """
        key = api_key if api_key is not None else (self.api_key or "test-key")
        return json.dumps(
            {"conn_type": "cometapi", "host": self.url, "password": key, "extra": extra}
        )


def _run(server: uvicorn.Server) -> None:
    """Serve until stopped; a failed start (uvicorn exits) just ends the thread."""
    with contextlib.suppress(SystemExit):
        server.run()


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
