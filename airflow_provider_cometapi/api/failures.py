"""Transport failures, named the same way by every transport, and the typed error each becomes."""

from __future__ import annotations

import enum
from urllib.parse import urlsplit

from airflow_provider_cometapi.exceptions import (
    CometAPIBadResponseError,
    CometAPIConnectionError,
    CometAPIError,
    CometAPITimeoutError,
)


class Failure(enum.Enum):
    """What went wrong on the wire, in words for the log."""

    CONNECT = "connection refused or unreachable"
    CONNECT_TIMEOUT = "connect timeout"
    READ_TIMEOUT = "read timeout"
    CUT_OFF = "answer cut off mid-body"
    DROPPED = "connection dropped"

    @property
    def never_sent(self) -> bool:
        """True when the request never reached the server, so nothing can have been billed."""
        return self in (Failure.CONNECT, Failure.CONNECT_TIMEOUT)


def failure_error(failure: Failure, reason: str, url: str | None = None) -> CometAPIError:
    """The typed error a caller sees once a failure is not retried.

    :param url: what was being fetched; only its origin is named (never a query or userinfo).
    """
    where = f" at {origin(url)}" if url else ""
    if failure in (Failure.READ_TIMEOUT, Failure.CONNECT_TIMEOUT):
        return CometAPITimeoutError(
            f"CometAPI{where} did not answer in time ({reason}). Raise the connection's "
            "'timeout' extra; set 'retry_on_read_timeout' to retry (a retried edit may be billed "
            "twice)."
        )
    if failure is Failure.CUT_OFF:
        return CometAPIBadResponseError(
            f"CometAPI's answer{where} was cut off ({reason}). Retry later."
        )
    return CometAPIConnectionError(
        f"Could not reach CometAPI{where} ({reason}): check the connection's base URL and the "
        "network."
    )


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL: enough to find the server, nothing that may be secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def give_up_note(wait_too_long: bool, reason: str, retries: int) -> str:
    """The sentence added to an error once the retries stop."""
    if wait_too_long:
        return f"Not retried: {reason}"
    return f"Gave up after {retries} retries" if retries else ""
