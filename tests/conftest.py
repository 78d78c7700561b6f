"""Shared test set-up: a private Airflow home, and ``cometapi_default`` pointing at the emulator."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="cometapi-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")

import pytest

PLANTED_KEY = "sk-planted-0123456789abcdefSECRET"


@pytest.fixture
def cometapi_conn(cometapi_emulator, monkeypatch):
    """Point ``cometapi_default`` at the emulator with a planted key; return a setter for extras."""

    def configure(**extra):
        monkeypatch.setenv(
            "AIRFLOW_CONN_COMETAPI_DEFAULT",
            cometapi_emulator.connection_json(api_key=PLANTED_KEY, **extra),
        )
        return cometapi_emulator

    configure()
    return configure
