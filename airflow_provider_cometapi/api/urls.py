"""Which output URLs the client may download: http(s) only, public addresses or the API's own
origin, bounded redirects; a refusal names the paid output's URL."""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from airflow_provider_cometapi.api.response import scrub
from airflow_provider_cometapi.api.text import excerpt
from airflow_provider_cometapi.exceptions import CometAPIBadResponseError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_cometapi.api.settings import CometApiSettings

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
SHOWN_URL_CHARS = 300
"""The longest URL a message shows; longer ones keep their start (the host) and end (the file)."""
_ALLOW_PRIVATE = (
    " Set the connection extra 'allow_private_urls' to true for a trusted local server."
)
_ASK_FOR_B64 = " Request response_format='b64_json' instead."


def check_download_url(
    url: str,
    settings: CometApiSettings,
    *,
    output_url: str,
    label: str,
    request_id: str | None = None,
) -> None:
    """Refuse one hop of the download of ``output_url`` unless ``url`` may be fetched.

    Only http(s). The API's own origin is trusted as the edit itself is; any other host must
    resolve to public addresses, unless the connection extra ``allow_private_urls`` is set.

    :param url: this hop: ``output_url`` itself, or where one of its redirects points.
    :param output_url: the ``data[i].url`` the server answered, named in a refusal.
    :param label: how the message names the output, such as ``data[0].url``.
    """
    problem = _problem(url, settings)
    if problem is None:
        return
    if url != output_url:
        problem = f"redirects to {shown_url(url, settings)}, which {problem}"
    raise refused_download(
        problem, settings, output_url=output_url, label=label, request_id=request_id
    )


def too_many_redirects(
    settings: CometApiSettings, *, output_url: str, label: str, request_id: str | None = None
) -> CometAPIBadResponseError:
    """The error for a download that kept redirecting past ``MAX_REDIRECTS`` hops."""
    return refused_download(
        f"redirects more than {MAX_REDIRECTS} times.",
        settings,
        output_url=output_url,
        label=label,
        request_id=request_id,
    )


def refused_download(
    problem: str,
    settings: CometApiSettings,
    *,
    output_url: str,
    label: str,
    request_id: str | None = None,
) -> CometAPIBadResponseError:
    """The error for an output not downloaded: the edit is paid for, so it names where to fetch it.

    :param problem: what is wrong, worded to follow ``label`` (``points at ...``), advice included.
    """
    return CometAPIBadResponseError(
        f"{label} {problem} The edit was paid for: its image can be fetched from "
        f"{shown_url(output_url, settings)}",
        request_id=request_id,
    )


def shown_url(url: str, settings: CometApiSettings) -> str:
    """``url`` for a message: scheme, host, port and path, on one line and at most 300 characters.

    Credentials before the host, the query and the fragment are left out (a query may carry a
    signature), and the API key is scrubbed should the server have put it in the path.
    """
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    shown = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else parts.path
    shown = excerpt(scrub(shown, (settings.api_key,)), SHOWN_URL_CHARS)
    return shown + " (its query is left out: it may carry a signature)" if parts.query else shown


def same_origin(url: str, other: str) -> bool:
    """Whether two http(s) URLs share scheme, host and port (case-blind, default ports filled)."""
    origin = _origin(url)
    return origin is not None and origin == _origin(other)


def accepted(status: int, *, authenticated: bool) -> bool:
    """A 2xx answer, or a redirect of a download (the caller follows it, checked, hop by hop)."""
    return status < 300 or (not authenticated and status in REDIRECT_STATUSES)


def redirect_target(url: str, status: int, headers: Mapping[str, str]) -> str | None:
    """Where a redirect answer points (absolute), or ``None`` if it is not a redirect."""
    location = headers.get("location")
    if status not in REDIRECT_STATUSES or not location:
        return None
    return urljoin(url, location)


def _problem(url: str, settings: CometApiSettings) -> str | None:
    """Why ``url`` may not be fetched, worded to follow the output's label; ``None`` if it may."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
        return "is not an http(s) URL; refusing to fetch it." + _ASK_FOR_B64
    if settings.allow_private_urls or same_origin(url, settings.base_url):
        return None
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme.lower()]
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        return f"has a host that cannot be resolved ({parts.hostname!r}: {exc})."
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            return (
                f"points at a non-public address ({address}); refusing to fetch it."
                + _ALLOW_PRIVATE
            )
    return None


def _origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an http(s) URL, lowercase, default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme]
