"""Thread-safe records of the edit requests received and the edits billed."""

from __future__ import annotations

import copy
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}
)
"""Headers never recorded, so no API key ends up in a record."""


def request_record(
    request_id: str,
    path: str,
    headers: Iterable[tuple[str, str]],
    fields: Mapping[str, str],
    files: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """Build the record of one received request, without its secret headers.

    :param request_id: the ``x-request-id`` answered.
    :param path: the URL path.
    :param headers: the request headers as (name, value) pairs.
    :param fields: the text form fields.
    :param files: one mapping per file part: field, filename, content_type, size.
    """
    kept = {name.lower(): value for name, value in headers if name.lower() not in SECRET_HEADERS}
    return {
        "request_id": request_id,
        "path": path,
        "status": None,
        "fault": None,
        "fields": dict(fields),
        "files": [dict(f) for f in files],
        "headers": kept,
        "idempotency_key": kept.get("idempotency-key"),
        "billed": False,
    }


class RecordBook:
    """Holds request records (in arrival order) and billing records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, dict[str, Any]] = {}
        self._billed: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> None:
        """Store a new request record.

        :param record: a record from :func:`request_record`.
        """
        with self._lock:
            self._requests[record["request_id"]] = record

    def update(self, request_id: str, **changes: Any) -> None:
        """Change fields of a stored request record (ignored if it was reset meanwhile).

        :param request_id: the record to change.
        """
        with self._lock:
            record = self._requests.get(request_id)
            if record is not None:
                record.update(changes)

    def bill(self, request_id: str, *, model: str, images: int, usage: dict[str, Any]) -> None:
        """Record one successful, billed edit.

        :param request_id: the request billed.
        :param model: the model asked for.
        :param images: how many images were returned.
        :param usage: the usage object answered.
        """
        with self._lock:
            record = self._requests.get(request_id)
            if record is not None:
                record["billed"] = True
            self._billed.append(
                {
                    "request_id": request_id,
                    "idempotency_key": record["idempotency_key"] if record else None,
                    "model": model,
                    "images": images,
                    "usage": usage,
                }
            )

    def requests(self) -> list[dict[str, Any]]:
        """Return a copy of the request records, oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._requests.values()))

    def billed(self) -> list[dict[str, Any]]:
        """Return a copy of the billing records, oldest first."""
        with self._lock:
            return copy.deepcopy(self._billed)

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._requests.clear()
            self._billed.clear()
