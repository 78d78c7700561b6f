"""pytest fixtures that serve a local CometAPI emulator (registered through ``pytest11``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_cometapi.emulator.server import EmulatorServer


@pytest.fixture(scope="session")
def cometapi_emulator_session() -> Iterator[EmulatorServer]:
    """One emulator for the whole test session, stopped at the end."""
    from airflow_provider_cometapi.emulator.server import EmulatorServer

    with EmulatorServer() as server:
        yield server


@pytest.fixture
def cometapi_emulator(cometapi_emulator_session: EmulatorServer) -> Iterator[EmulatorServer]:
    """The session emulator with empty records and no latency, fault or file fault."""
    server = cometapi_emulator_session
    server.reset()
    server.set_latency(0.0)
    server.set_fault(None)
    server.set_file_faults(None)
    yield server
    server.set_latency(0.0)
    server.set_fault(None)
    server.set_file_faults(None)
