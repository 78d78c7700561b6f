"""Manifests: proof, next to the outputs, that an edit was paid for and fully written."""

from __future__ import annotations

import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.storage.paths import storage_path

if TYPE_CHECKING:
    from airflow_provider_cometapi.storage.outputs import StagedOutputs

MANIFEST_FOLDER = ".cometapi-manifests"
log = logging.getLogger(__name__)


def load_completed(sink: StagedOutputs, fingerprint: str) -> dict[str, Any] | None:
    """The manifest of an edit with this fingerprint whose outputs are all present, or ``None``."""
    path = _manifest(sink, fingerprint)
    try:
        record = json.loads(path.read_text())
        outputs = record.get("outputs") if isinstance(record, dict) else None
        if record.get("fingerprint") != fingerprint or not isinstance(outputs, list) or not outputs:
            return None
        if not all(storage_path(uri, sink.conn_id).exists() for uri in outputs):
            return None
    except FileNotFoundError:
        return None
    except Exception as exc:  # an unreadable manifest only means the edit is done again
        log.warning("Ignoring the manifest %s: %s", path, exc)
        return None
    return record


def save(sink: StagedOutputs, fingerprint: str, record: dict[str, Any]) -> str:
    """Write the manifest atomically (stage, then move); call only once every output is written."""
    path = _manifest(sink, fingerprint)
    staging = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.partial"
    if path.protocol in ("", "file", "local"):
        path.parent.mkdir(parents=True, exist_ok=True)
    staging.write_text(json.dumps({**record, "fingerprint": fingerprint}, sort_keys=True))
    path.fs.mv(staging.path, path.path)
    return str(path)


def _manifest(sink: StagedOutputs, fingerprint: str) -> Any:
    return storage_path(f"{sink.folder}{MANIFEST_FOLDER}/{fingerprint}.json", sink.conn_id)
