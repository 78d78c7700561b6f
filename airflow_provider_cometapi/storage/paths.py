"""One way to turn a path or URI into an ``ObjectStoragePath``."""

from __future__ import annotations

import os
import re
from pathlib import PurePath
from typing import Any

URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def storage_path(location: str, conn_id: str | None) -> Any:
    """An ``ObjectStoragePath`` for a URI (``s3://``, ``conn_id@bucket`` forms) or a local path."""
    from airflow.sdk import ObjectStoragePath

    if not URI.match(location):
        location = "file://" + os.path.abspath(location)
    return ObjectStoragePath(location, conn_id=conn_id) if conn_id else ObjectStoragePath(location)


LOCAL_PROTOCOLS = ("", "file", "local")


def remove_empty_folders(location: str, conn_id: str | None, *, below: str) -> None:
    """Remove the local folder at ``location`` and each parent that is left empty, up to but not
    including ``below``; a folder that still holds anything (another task's files) stops it.
    Object storage has no folders to remove."""
    path = storage_path(location, conn_id)
    if path.protocol not in LOCAL_PROTOCOLS:
        return
    top, folder = PurePath(storage_path(below, conn_id).path), PurePath(path.path)
    while top in folder.parents:
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            pass
        except OSError:
            return
        folder = folder.parent


def make_parent(path: Any) -> None:
    """Create a local file's folder. Tried again when a parent vanishes meanwhile: a task
    finishing at that moment removes the folders it left empty (``remove_empty_folders``)."""
    if path.protocol not in LOCAL_PROTOCOLS:
        return
    for attempt in range(3):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            if attempt == 2:
                raise


def warm_up(location: str, conn_id: str | None) -> None:
    """Load what every edit needs once (Airflow's filesystem registry and lineage collector,
    Pillow's plugins), before worker threads queue on the import lock for it."""
    try:
        storage_path(location, conn_id).fs  # noqa: B018 - the attribute loads the registry
        from airflow.sdk.lineage import get_hook_lineage_collector
        from PIL import Image

        get_hook_lineage_collector()
        Image.init()
    except Exception:  # only a speed-up; the real work reports real errors
        return
