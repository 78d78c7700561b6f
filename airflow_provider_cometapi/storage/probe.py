"""Before any paid edit, prove that the output folder takes a write: a tiny hidden object."""

from __future__ import annotations

import logging
import threading
import uuid

from airflow_provider_cometapi.api.response import scrub
from airflow_provider_cometapi.api.text import excerpt
from airflow_provider_cometapi.exceptions import CometAPIOutputError
from airflow_provider_cometapi.storage.paths import is_local, storage_path

log = logging.getLogger(__name__)

PROBE_PREFIX = ".cometapi-probe-"
"""A leading dot hides the probe, as it hides the provider's staged outputs."""
_PROBE_BYTES = b"cometapi write probe\n"

_HINTS = (
    (
        {"AirflowNotFoundException"},
        "The connection does not exist: create it, or correct output_conn_id "
        "(or the conn_id@ part of the URI).",
    ),
    (
        {"NotADirectoryError", "FileExistsError"},
        "Part of the path is an existing file: choose a folder that is not under a file.",
    ),
    (
        {"NoSuchBucket", "FileNotFoundError"},
        "The bucket does not exist: create it, or correct the bucket name.",
    ),
    (
        {"PermissionError", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"},
        "Permission was refused: check that the connection's keys (for a local folder, the "
        "worker's user) may write to this folder.",
    ),
)
"""What a cause (an exception class or an S3 error code anywhere in the chain) means; the
first match wins."""
_NO_HINT = "Check the folder, the storage and the connection."


def probe_output_folder(folder: str, conn_id: str | None) -> None:
    """Write a few bytes under a hidden, unique name in ``folder``, then remove them.

    A local folder is created first. Raise ``CometAPIOutputError`` saying what to fix if the
    write fails; only warn if the probe object cannot be removed afterwards.

    :param folder: an object-storage URI or a local path ending with ``/``.
    :param conn_id: the connection for object storage (a URI's ``conn_id@`` also counts).
    """
    secrets: tuple[str, ...] = ()
    try:
        path = storage_path(folder, conn_id)
        conn_id = path.conn_id or conn_id
        if is_local(path):
            path.mkdir(parents=True, exist_ok=True)
        elif conn_id:  # Airflow falls back to ambient credentials for an unknown connection
            secrets = _connection_secrets(conn_id)
        probe = path / f"{PROBE_PREFIX}{uuid.uuid4().hex[:12]}"
        probe.write_bytes(_PROBE_BYTES)
    except Exception as exc:
        raise _unwritable(folder, conn_id, exc, secrets) from exc
    try:
        probe.fs.rm_file(probe.path)  # not unlink: s3fs's bulk delete ignores a refused delete
    except Exception as exc:
        log.warning(
            "Could not remove the write probe %s (%s); it is safe to delete.",
            excerpt(str(probe)),
            type(exc).__name__,
        )


def _connection_secrets(conn_id: str) -> tuple[str, ...]:
    """The connection's password and extra values, to keep out of messages; raise if missing."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    values = (conn.password, *conn.extra_dejson.values())
    return tuple(value for value in values if isinstance(value, str) and value)


def _unwritable(
    folder: str, conn_id: str | None, exc: Exception, secrets: tuple[str, ...]
) -> CometAPIOutputError:
    """The error for a failed probe: the folder, the hint for its cause, and what to do."""
    causes = _causes(exc)
    hint = next((text for names, text in _HINTS if names & causes), _NO_HINT)
    via = f" with connection {conn_id!r}" if conn_id else ""
    detail = excerpt(scrub(str(exc), secrets), 200)
    return CometAPIOutputError(
        f"Output folder {excerpt(folder)} cannot be written{via} ({type(exc).__name__}: "
        f"{detail}). {hint} Nothing was paid for yet: fix output_path or output_conn_id, then "
        "retry the task."
    )


def _causes(exc: BaseException) -> set[str]:
    """The class names (with their bases) and S3 error codes of ``exc`` and what it wraps."""
    names: set[str] = set()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names.update(cls.__name__ for cls in type(current).__mro__)
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            names.add(str(response.get("Error", {}).get("Code", "")))
        current = current.__cause__ or current.__context__
    return names


class ProbedFolders:
    """Probe each output folder once per task: the first item bound for a folder probes it,
    the others get the same answer (a fresh copy of its error)."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str | None], CometAPIOutputError | None] = {}
        self._lock = threading.Lock()

    def check(self, folder: str, conn_id: str | None) -> None:
        """Raise ``CometAPIOutputError`` if ``folder`` cannot take a write."""
        key = (folder, conn_id)
        with self._lock:
            if key not in self._answers:
                try:
                    probe_output_folder(folder, conn_id)
                    self._answers[key] = None
                except CometAPIOutputError as exc:
                    self._answers[key] = exc
        error = self._answers[key]
        if error is not None:
            raise CometAPIOutputError.from_dict(error.to_dict())
