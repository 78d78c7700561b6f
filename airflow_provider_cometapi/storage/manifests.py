"""Manifests: proof, next to the outputs, that an edit was paid for and fully written.

A manifest records each output's URI, size and sha256 and who paid for the edit; it proves the
outputs only while every one of them still has the recorded size and content.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.wire import CHUNK_BYTES
from airflow_provider_cometapi.storage.paths import is_local, storage_path

if TYPE_CHECKING:
    from airflow_provider_cometapi.storage.outputs import StagedOutputs

MANIFEST_FOLDER = ".cometapi-manifests"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lookup:
    """What a manifest look-up found.

    :param record: the manifest, when every output it lists still matches it.
    :param problem: why a manifest that was found does not prove its outputs.
    :param intact: the outputs that still match their record (all of them with ``record``).
    """

    record: dict[str, Any] | None = None
    problem: str | None = None
    intact: frozenset[str] = frozenset()


def look_up(sink: StagedOutputs, fingerprint: str) -> Lookup:
    """The manifest of the edit with this fingerprint, checked against its outputs."""
    path = _manifest(sink, fingerprint)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return Lookup()
    except Exception as exc:  # an unreadable manifest only means the edit is done again
        return Lookup(problem=f"its manifest {path} cannot be read ({exc})")
    files = record.get("files") if isinstance(record, dict) else None
    if record.get("fingerprint") != fingerprint or not isinstance(files, list) or not files:
        return Lookup(problem=f"its manifest {path} records no output sizes and hashes")
    problems = {file["uri"]: _mismatch(file, sink.conn_id) for file in files}
    intact = frozenset(uri for uri, problem in problems.items() if problem is None)
    problem = next((problem for problem in problems.values() if problem is not None), None)
    return Lookup(record if problem is None else None, problem, intact)


def save(sink: StagedOutputs, fingerprint: str, record: dict[str, Any]) -> str:
    """Write the manifest atomically (stage, then move); call only once every output is written."""
    path = _manifest(sink, fingerprint)
    staging = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.partial"
    if is_local(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    staging.write_text(json.dumps({**record, "fingerprint": fingerprint}, sort_keys=True))
    path.fs.mv(staging.path, path.path)
    return str(path)


def _mismatch(file: dict[str, Any], conn_id: str | None) -> str | None:
    """Why the output no longer matches its record, or ``None`` when it does."""
    uri = file["uri"]
    path = storage_path(uri, conn_id)
    try:
        size = path.stat().st_size
        if size != file["bytes"]:
            return f"{uri} has {size} bytes, not the {file['bytes']} its manifest recorded"
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
    except FileNotFoundError:
        return f"{uri} is missing"
    except Exception as exc:
        return f"{uri} cannot be read ({type(exc).__name__}: {exc})"
    if digest.hexdigest() != file["sha256"]:
        return f"{uri} was changed after its manifest was written"
    return None


def _manifest(sink: StagedOutputs, fingerprint: str) -> Any:
    return storage_path(f"{sink.folder}{MANIFEST_FOLDER}/{fingerprint}.json", sink.conn_id)
