"""Claims: a small object next to the outputs saying which task instance is paying for an edit.

A claim is created exclusively where the storage can (``O_EXCL`` on local disks, a conditional
put on S3 through s3fs); on a storage that cannot, it is checked, then written, which leaves a
window of one request. A claim expires after ``CLAIM_SECONDS``, so one left by a killed worker
only delays another task instance; the same task instance (a retry) takes its own over at once.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.storage.paths import (
    remove_empty_folders,
    storage_path,
    write_in_shared_folder,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from airflow_provider_cometapi.storage.outputs import StagedOutputs

CLAIM_FOLDER = ".cometapi-claims"
CLAIM_SECONDS = 15 * 60
"""How long a claim holds without its holder finishing: longer than one edit takes."""
POLL_SECONDS = 2.0
"""How often a task instance waiting on another's claim looks for its manifest."""
UNREADABLE_SECONDS = 10.0
"""A claim still unreadable this long after it was written was left half-written by a writer
that died (a claim is a few hundred bytes): it is taken over."""


def take(
    sink: StagedOutputs,
    fingerprint: str,
    owner: Mapping[str, Any],
    ours: Callable[[Mapping[str, Any]], bool],
) -> dict[str, Any] | None:
    """Take the claim on the edit with this fingerprint for ``owner`` (a manifest's payer).

    Returns ``None`` when ``owner`` holds it now, or the live claim of another task instance.
    An expired claim, or one whose owner is ``ours`` (an earlier try), is taken over.
    """
    path = _claim(sink, fingerprint)
    body = json.dumps({"owner": dict(owner), "expires_at": now() + CLAIM_SECONDS}).encode()
    for _ in range(3):  # a claim released between the create and the read: create again
        try:
            write_in_shared_folder(path, lambda: _create(path, body))
            return None
        except FileExistsError:
            pass
        held = _read(path)
        if held is None:
            age = _age(path)
            if age is None:  # released meanwhile
                continue
            if age < UNREADABLE_SECONDS:  # being written this moment: look again soon
                return {"owner": {"unknown": str(path)}, "expires_at": now() + POLL_SECONDS}
        elif held["expires_at"] > now() and not ours(held["owner"]):
            return held
        # expired, ours from an earlier try, or left half-written
        write_in_shared_folder(path, lambda: path.write_bytes(body))
        return None
    return {"owner": {"unknown": str(path)}, "expires_at": now() + POLL_SECONDS}


def release(sink: StagedOutputs, fingerprint: str) -> None:
    """Remove the claim, and its folder on local disk when that leaves it empty (best effort:
    an expired claim frees the edit anyway). An item creating a claim in the folder at this
    moment makes it again (see ``take``)."""
    path = _claim(sink, fingerprint)
    try:
        path.fs.rm_file(path.path)
        remove_empty_folders(str(path.parent), sink.conn_id, below=sink.folder)
    except Exception:
        return


def now() -> float:
    """Seconds since the epoch: claims compare times across machines."""
    return time.time()


def pause() -> None:
    """Wait a little before looking again for the holder's manifest."""
    time.sleep(POLL_SECONDS)


def _create(path: Any, body: bytes) -> None:
    """Write ``body`` where nothing is yet; ``FileExistsError`` if something is."""
    try:
        path.fs.pipe_file(path.path, body, mode="create")
    except FileExistsError:
        raise
    except Exception:  # no exclusive create here (an older fsspec or s3fs, another store)
        if path.exists():
            raise FileExistsError(str(path)) from None
        path.write_bytes(body)


def _age(path: Any) -> float | None:
    """Seconds since the claim at ``path`` was written, or ``None`` if it is gone."""
    try:
        return now() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def _read(path: Any) -> dict[str, Any] | None:
    """The claim stored at ``path``, or ``None`` if it is gone or unreadable."""
    try:
        held = json.loads(path.read_bytes())
        if isinstance(held, dict) and isinstance(held.get("owner"), dict):
            held["expires_at"] = float(held["expires_at"])
            return held
    except Exception:  # removed meanwhile, or half-written: treat as free
        return None
    return None


def _claim(sink: StagedOutputs, fingerprint: str) -> Any:
    return storage_path(f"{sink.folder}{CLAIM_FOLDER}/{fingerprint}.json", sink.conn_id)
