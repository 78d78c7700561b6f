"""Read the server's answers: the request id, the type of output bytes, error bodies as errors."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.images import sniff_mime_type
from airflow_provider_cometapi.api.streaming import bad_response as _bad
from airflow_provider_cometapi.api.text import excerpt
from airflow_provider_cometapi.exceptions import CometAPIError, error_class_for_status

if TYPE_CHECKING:
    from collections.abc import Mapping

REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-oneapi-request-id", "cf-ray")
MAX_MESSAGE_CHARS = 300
_TITLE = re.compile(rb"<title>(.*?)</title>|<h1>(.*?)</h1>", re.IGNORECASE | re.DOTALL)


def request_id_from(headers: Mapping[str, str]) -> str | None:
    """The request id the server sent, if any."""
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value[:200]
    return None


def decode_image_bytes(data: bytes, what: str, request_id: str | None) -> str:
    """The MIME type of decoded output bytes; raise if they are not a PNG, JPEG or WEBP."""
    mime_type = sniff_mime_type(data)
    if mime_type is None:
        raise _bad(f"{what} is not a PNG, JPEG or WEBP image", request_id)
    return mime_type


def error_from_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    secrets: tuple[str, ...] = (),
    note: str = "",
) -> CometAPIError:
    """The typed error for a non-2xx answer, carrying a short excerpt of the server's message."""
    request_id = request_id_from(headers)
    if request_id is not None:
        request_id = scrub(request_id, secrets)
    message, param, code = _error_details(body, secrets)
    cls = error_class_for_status(status)
    hint = _HINTS.get(cls.__name__, "")
    text = f"CometAPI refused the edit: {message}" if message else "CometAPI refused the edit"
    return cls(
        f"{text.rstrip('.')}.{' ' + note + '.' if note else ''}{hint}",
        status=status,
        request_id=request_id,
        server_message=message or None,
        param=param,
        code=code,
    )


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


_HINTS = {
    "CometAPIAuthError": " Check the API key in the cometapi connection.",
    "CometAPIRateLimitError": " Lower the concurrency or raise max_retries.",
    "CometAPIServerError": " The service failed; retry the task later.",
    "CometAPITimeoutError": " Raise the connection's 'timeout' extra.",
    "CometAPIBadRequestError": " Fix the named parameter or input.",
}


def _error_details(body: bytes, secrets: tuple[str, ...]) -> tuple[str, str | None, str | None]:
    """``(message, param, code)`` from a JSON error body, an HTML page, or plain text, scrubbed.

    Secrets are replaced before anything is cut short, so no part of one survives a cut.
    """
    for secret in secrets:
        if secret:
            body = body.replace(secret.encode(), b"***")

    def clean(value: Any) -> str:
        return excerpt(scrub(str(value), secrets), MAX_MESSAGE_CHARS)

    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the stack
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail") or ""
            param, code = error.get("param"), error.get("code")
            return (
                clean(message),
                clean(param) if param is not None else None,
                clean(code) if code is not None else None,
            )
        if isinstance(error, str):
            return clean(error), None, None
    head = body[:4096]
    if b"<html" in head.lower() or b"<!doctype" in head.lower():
        match = _TITLE.search(head)
        title = (
            (match.group(1) or match.group(2) or b"").decode("utf-8", "replace") if match else ""
        )
        return clean(f"an HTML error page{': ' + title if title else ''}"), None, None
    return clean(head.decode("utf-8", "replace")), None, None
