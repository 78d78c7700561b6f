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
