"""pytest fixtures that serve a local CometAPI emulator (registered through ``pytest11``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_cometapi.emulator.server import EmulatorServer

SETTINGS = ("drift", "honour_idempotency")
"""What a test may set through the ``cometapi_emulator`` fixture's parameter."""


@pytest.fixture(scope="session")
def cometapi_emulator_session() -> Iterator[EmulatorServer]:
    """One emulator for the whole test session, stopped at the end."""
    from airflow_provider_cometapi.emulator.server import EmulatorServer

    with EmulatorServer() as server:
        yield server


def _restore(server: EmulatorServer) -> None:
    server.set_latency(0.0)
    server.set_fault(None)
    server.set_file_faults(None)
    server.set_drift(0.0)
    server.set_honour_idempotency(False)


@pytest.fixture
def cometapi_emulator(
    request: pytest.FixtureRequest, cometapi_emulator_session: EmulatorServer
) -> Iterator[EmulatorServer]:
    """The session emulator with empty records and no latency, fault, file fault or drift.

    Parametrize it indirectly to change :data:`SETTINGS` for one test, e.g.
    ``@pytest.mark.parametrize("cometapi_emulator", [{"drift": 0.3}], indirect=True)``.
    """
    settings: dict[str, Any] = dict(getattr(request, "param", None) or {})
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"cometapi_emulator takes {', '.join(SETTINGS)}; not {unknown}")
    server = cometapi_emulator_session
    server.reset()
    _restore(server)
    server.set_drift(settings.get("drift", 0.0))
    server.set_honour_idempotency(settings.get("honour_idempotency", False))
    yield server
    _restore(server)
