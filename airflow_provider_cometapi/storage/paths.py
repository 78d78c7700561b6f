"""One way to turn a path or URI into an ``ObjectStoragePath``, and local folders made and
removed without one thread racing another."""

from __future__ import annotations

import os
import re
import threading
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def storage_path(location: str, conn_id: str | None) -> Any:
    """An ``ObjectStoragePath`` for a URI (``s3://``, ``conn_id@bucket`` forms) or a local path."""
    from airflow.sdk import ObjectStoragePath

    if not URI.match(location):
        location = "file://" + os.path.abspath(location)
    return ObjectStoragePath(location, conn_id=conn_id) if conn_id else ObjectStoragePath(location)


_LOCAL_PROTOCOLS = ("", "file", "local")
TRIES = 3
"""How often a local folder is made again when another process removes it at that moment."""
_FOLDERS = threading.Lock()
"""Held while this process makes a local folder and writes into it, or removes emptied folders:
its own threads (a batch's items) never race each other; another process's removal is met by
making the folder again."""


def is_local(path: Any) -> bool:
    """Whether an ``ObjectStoragePath`` is on this machine's disk, where folders must exist
    before a file is written into them."""
    return path.protocol in _LOCAL_PROTOCOLS


def remove_empty_folders(location: str, conn_id: str | None, *, below: str) -> None:
    """Remove the local folder at ``location`` and each parent that is left empty, up to but not
    including ``below``; a folder that still holds anything (another task's files) stops it.
    Object storage has no folders to remove."""
    path = storage_path(location, conn_id)
    if not is_local(path):
        return
    top, folder = PurePath(storage_path(below, conn_id).path), PurePath(path.path)
    with _FOLDERS:
        while top in folder.parents:
            try:
                os.rmdir(folder)
            except FileNotFoundError:
                pass
            except OSError:
                return
            folder = folder.parent


def write_in_shared_folder(path: Any, write: Callable[[], T]) -> T:
    """Call ``write``, which creates the file at ``path``, once its local folder exists; if
    another process removes the emptied folder in between, make it again and write again."""
    if not is_local(path):
        return write()
    for _ in range(TRIES - 1):
        with _FOLDERS:
            _make_folder(path.parent.path)
            try:
                return write()
            except FileNotFoundError:
                continue
    with _FOLDERS:
        _make_folder(path.parent.path)
        return write()


def _make_folder(folder: str) -> None:
    """``os.makedirs`` that tells a file in the way from a folder removed meanwhile."""
    for attempt in range(1, TRIES + 1):
        try:
            os.makedirs(folder, exist_ok=True)
            return
        except FileExistsError:
            if os.path.lexists(folder) and not os.path.isdir(folder):
                raise NotADirectoryError(f"{folder} is a file, not a folder") from None
            if attempt == TRIES:
                raise
        except FileNotFoundError:  # a parent removed while it was being made
            if attempt == TRIES:
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
