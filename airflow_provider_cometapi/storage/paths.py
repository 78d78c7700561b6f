"""One way to turn a path or URI into an ``ObjectStoragePath``."""

from __future__ import annotations

import os
import re
from typing import Any

URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def storage_path(location: str, conn_id: str | None) -> Any:
    """An ``ObjectStoragePath`` for a URI (``s3://``, ``conn_id@bucket`` forms) or a local path."""
    from airflow.sdk import ObjectStoragePath

    if not URI.match(location):
        location = "file://" + os.path.abspath(location)
    return ObjectStoragePath(location, conn_id=conn_id) if conn_id else ObjectStoragePath(location)


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
