"""Which output URLs the client may download: http(s) only, public addresses, bounded redirects."""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from airflow_provider_cometapi.exceptions import CometAPIBadResponseError

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def check_download_url(url: str, *, allow_private: bool, label: str) -> None:
    """Refuse a URL that is not http(s), or whose host resolves to a non-public address."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise CometAPIBadResponseError(
            f"{label} is not an http(s) URL; request response_format='b64_json' instead."
        )
    if allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise CometAPIBadResponseError(
            f"{label}: cannot resolve {parts.hostname!r} ({exc})."
        ) from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise CometAPIBadResponseError(
                f"{label} points at a non-public address ({address}); refusing to fetch it. "
                "Set the connection extra 'allow_private_urls' to true for a trusted local server."
            )


def accepted(status: int, *, authenticated: bool) -> bool:
    """A 2xx answer, or a redirect of a download (the caller follows it, checked, hop by hop)."""
    return status < 300 or (not authenticated and status in REDIRECT_STATUSES)


def redirect_target(url: str, status: int, headers: Mapping[str, str]) -> str | None:
    """Where a redirect answer points (absolute), or ``None`` if it is not a redirect."""
    location = headers.get("location")
    if status not in REDIRECT_STATUSES or not location:
        return None
    return urljoin(url, location)
