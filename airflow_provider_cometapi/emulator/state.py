"""Settings and records shared by :class:`EmulatorServer` and the running app."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.emulator.faults import (
    FaultCounter,
    FaultSpec,
    FileFaults,
    RandomFaults,
)
from airflow_provider_cometapi.emulator.files import FileStore
from airflow_provider_cometapi.emulator.records import RecordBook

if TYPE_CHECKING:
    from collections.abc import Callable, Collection


def _no_connections() -> Collection[Any]:
    return ()


@dataclass
class EmulatorState:
    """What the app reads on every request; settings may change while it runs."""

    api_key: str | None = None
    latency: float = 0.0
    fault: FaultSpec | None = None
    file_faults: FileFaults | None = None
    random_faults: RandomFaults | None = None
    records: RecordBook = field(default_factory=RecordBook)
    files: FileStore = field(default_factory=FileStore)
    fault_counter: FaultCounter = field(default_factory=FaultCounter)
    closing: threading.Event = field(default_factory=threading.Event)
    honour_idempotency: bool = False
    replays: dict[str, bytes] = field(default_factory=dict)
    drift: float = 0.0
    connections: Callable[[], Collection[Any]] = _no_connections
    """The server's open connections (set by :class:`EmulatorServer`), for the ``reset`` fault."""
    in_flight: int = 0
    max_in_flight: int = 0
    received: int = 0

    def enter(self) -> None:
        """Count an edit request starting (the app's event loop is single-threaded)."""
        self.received += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        """Count an edit request answered."""
        self.in_flight -= 1

    def reset(self) -> None:
        """Clear records, stored images and ``times`` counts; restart random faults."""
        self.records.clear()
        self.files.clear()
        self.fault_counter.clear()
        self.replays.clear()
        self.max_in_flight = self.in_flight
        self.received = self.in_flight
        if self.random_faults is not None:
            self.random_faults.reseed()
