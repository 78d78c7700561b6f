"""Shared test set-up: a private Airflow home and DAG bundles, the emulator connection, DAG runs."""

from __future__ import annotations

import pytest

from tests.settings import PLANTED_KEY, TEST_DAGS


@pytest.fixture
def cometapi_conn(cometapi_emulator, monkeypatch):
    """Point ``cometapi_default`` at the emulator with a planted key; return a setter for extras.

    The emulator serves ``response_format=url`` images from loopback, so private URLs are
    allowed unless a test says otherwise.
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
