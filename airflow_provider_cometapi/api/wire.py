"""What both transports share on the wire: read sizes, the User-Agent, keys and log lines."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from airflow_provider_cometapi import __version__
from airflow_provider_cometapi.api.text import excerpt

CHUNK_BYTES = 256 * 1024
"""How many bytes of a streamed body are read at a time."""
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
"""The largest output image downloaded from a URL."""
PRODUCT = f"airflow-provider-cometapi/{__version__}"
"""The first token of every User-Agent."""
DOWNLOAD = "download"
"""How the log names a request for an output URL (never the URL: it may carry a signature)."""
CALL_FORMAT = "CometAPI %s %s"
"""A call in the log: method and path; ``CALL_FOR_FORMAT`` adds the item it is for."""
CALL_FOR_FORMAT = "CometAPI %s %s for %s"


def user_agent(transport: str) -> str:
    """``airflow-provider-cometapi/<version> <transport>``, the transport being the HTTP client.

    The worker's hook sends ``requests``, the triggerer's client ``httpx``, so a server's records
    tell the two apart.
    """
    return f"{PRODUCT} {transport}"


def new_idempotency_key() -> str:
    """A fresh ``Idempotency-Key`` for one logical call."""
    return f"airflow-cometapi-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class CallLog:
    """How the log names one call, the same on both transports.

    For example ``CometAPI POST /v1/images/edits for b3.png: attempt 1 of 3``. Each method returns
    the arguments of one log call: a fixed format, then its values. Attempts are logged at DEBUG
    (a batch sends thousands), retries at INFO.
    """

    method: str
    path: str
    label: str | None = None

    @classmethod
    def of(
        cls, method: str, url: str, base_url: str, *, authenticated: bool, label: str | None
    ) -> CallLog:
        """Name a call by the part of ``url`` after ``base_url``; a download only as ``download``.

        :param authenticated: an API call; otherwise the download of an output.
        :param label: the item the call is for (a file name), if there is one.
        """
        api_call = authenticated and url.startswith(base_url)
        return cls(method, url[len(base_url) :] if api_call else DOWNLOAD, label)

    def attempt(self, number: int, attempts: int) -> tuple[object, ...]:
        """The log line announcing attempt ``number`` of ``attempts``."""
        return self._line(": attempt %d of %d", number, attempts)

    def retry(self, reason: str, wait: float) -> tuple[object, ...]:
        """The log line saying why the call is retried, and after how many seconds."""
        return self._line(": %s; retrying in %.2f s", reason, wait)

    def _line(self, tail: str, *values: object) -> tuple[object, ...]:
        if self.label:
            return (CALL_FOR_FORMAT + tail, self.method, self.path, excerpt(self.label), *values)
        return (CALL_FORMAT + tail, self.method, self.path, *values)
