"""Registers fsspec's in-process ``memory://`` filesystem with Airflow's object storage.

Handy for tests and local development: ``ObjectStoragePath("memory://inbox/boat.png")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

schemes = ["memory"]


def get_fs(
    conn_id: str | None, storage_options: dict[str, Any] | None = None
) -> AbstractFileSystem:
    """fsspec's process-wide memory filesystem; ``conn_id`` is not used."""
    from fsspec.implementations.memory import MemoryFileSystem

    return MemoryFileSystem(**(storage_options or {}))
