"""Shared test set-up: a private Airflow home and DAG bundles, the emulator connection, DAG runs."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.settings import PLANTED_KEY, TEST_DAGS


@pytest.fixture
def cometapi_conn(cometapi_emulator, monkeypatch):
    """Point ``cometapi_default`` at the emulator with a planted key; return a setter for extras.

    Downloads from other loopback servers (the tests' image hosts) are allowed unless a test
    says otherwise; the emulator's own URL outputs need no such permission.
    """

    def configure(**extra):
        extra.setdefault("allow_private_urls", True)
        monkeypatch.setenv(
            "AIRFLOW_CONN_COMETAPI_DEFAULT",
            cometapi_emulator.connection_json(api_key=PLANTED_KEY, **extra),
        )
        return cometapi_emulator

    configure()
    return configure


@pytest.fixture
def edits_sent_by(cometapi_emulator):
    """``edits_sent_by("httpx")``: the emulator's records of the edits one transport sent.

    Each transport names itself after the product in its User-Agent: ``requests`` for the
    worker's hook, ``httpx`` for the triggerer's client.
    """
    from airflow_provider_cometapi.api.request import EDIT_PATH
    from airflow_provider_cometapi.api.wire import user_agent

    def sent_by(transport: str) -> list[dict]:
        agent = user_agent(transport)
        return [
            record
            for record in cometapi_emulator.requests
            if record["path"] == EDIT_PATH and record["headers"].get("user-agent") == agent
        ]

    return sent_by


@pytest.fixture
def no_sleeping(monkeypatch):
    """Retry waits of both transports return at once: the waits are all that is not real."""
    from airflow_provider_cometapi.hooks.cometapi import CometApiHook
    from airflow_provider_cometapi.hooks.cometapi_async import AsyncCometApiClient

    async def no_wait(_seconds):
        return None

    monkeypatch.setattr(CometApiHook, "_sleep", staticmethod(lambda _seconds: None))
    monkeypatch.setattr(AsyncCometApiClient, "_sleep", staticmethod(no_wait))


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's own SQLite metadata database, created once for the session."""
    from airflow.utils import db

    db.initdb()


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on loopback for the whole session."""
    from tests.s3 import s3_server

    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A boto3 client for the loopback S3 server, with the Airflow connection ``s3_test`` set."""
    from tests.s3 import S3_CONN_ID, client, connection_json

    monkeypatch.setenv(f"AIRFLOW_CONN_{S3_CONN_ID.upper()}", connection_json(s3_endpoint))
    return client(s3_endpoint)


@pytest.fixture
def run_dag(airflow_db, cometapi_conn):
    """Write a DAG file into the test bundle, load it, and run it with ``dag.test()``."""
    from tests.dagrun import DagRunner

    return DagRunner(TEST_DAGS)


@pytest.fixture
def accounts(cometapi_emulator):
    """``accounts.check(outcome)`` after each run: reported paid tokens == billed tokens."""
    from tests.accounting import Accounts

    return Accounts(cometapi_emulator)


class LatencyGate:
    """Stands in for ``asyncio`` in the emulator's app: each pause the app takes (its latency) is
    recorded and held until :meth:`release`, so a test sees an answer wait without timing it.

    Every other name is asyncio's own. Only for tests without ``after_requests``, whose polling
    pauses would be held too.
    """

    def __init__(self) -> None:
        self.pauses: list[float] = []  # the seconds of each pause begun, in order
        self._changed = threading.Condition()
        self._open = False
        self._held: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(asyncio, name)

    async def sleep(self, seconds: float) -> None:
        """Record the pause; wait until the gate is released (at once if it already is)."""
        released = asyncio.Event()
        with self._changed:
            self.pauses.append(seconds)
            self._changed.notify_all()
            if self._open:
                return
            self._held.append((asyncio.get_running_loop(), released))
        await released.wait()

    def wait_for_pauses(self, count: int, timeout: float = 240.0) -> list[float]:
        """``pauses`` once ``count`` have begun; fails if they have not after ``timeout`` (a
        bound against hanging, not a timing assertion: what follows needs them held)."""
        with self._changed:
            begun = self._changed.wait_for(lambda: len(self.pauses) >= count, timeout)
            assert begun, f"{len(self.pauses)} of {count} pauses begun after {timeout} s"
            return list(self.pauses)

    def release(self) -> None:
        """End every pause held, and let later ones through at once."""
        with self._changed:
            self._open = True
            held, self._held = self._held, []
        for loop, released in held:
            loop.call_soon_threadsafe(released.set)


@pytest.fixture
def latency_gate(cometapi_emulator, monkeypatch):
    """Hold the emulator's latency pauses until ``release()`` (done at the latest on teardown)."""
    from airflow_provider_cometapi.emulator import app

    gate = LatencyGate()
    monkeypatch.setattr(app, "asyncio", gate)
    yield gate
    gate.release()
