"""HTTP responses for errors and injected faults (status, html, malformed_json, truncate)."""

from __future__ import annotations

import base64
import json
import logging
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, Response

from airflow_provider_cometapi.emulator.errors import EmulatorError

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from airflow_provider_cometapi.emulator.faults import FaultSpec

MALFORMED_JSON = b'{"created": 1, "data": ['


class TruncatedBody(Exception):
    """Raised on purpose after half a body was sent, so the server drops the connection."""


class _HideTruncation(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], TruncatedBody))


_HIDE_TRUNCATION = _HideTruncation()


def quiet_truncation_logs() -> None:
    """Keep uvicorn from logging the deliberate :class:`TruncatedBody` as an app error."""
    logger = logging.getLogger("uvicorn.error")
    if _HIDE_TRUNCATION not in logger.filters:
        logger.addFilter(_HIDE_TRUNCATION)


class TruncatedResponse(Response):
    """A 200 whose ``Content-Length`` promises the whole body but only half is sent."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        half = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise TruncatedBody("emulated truncated response")


def error_response(error: EmulatorError) -> Response:
    """Answer an :class:`EmulatorError` as OpenAI does.

    :param error: the error to answer.
    """
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _retry_headers(spec: FaultSpec) -> dict[str, str]:
    headers: dict[str, str] = {}
    if spec.retry_after is not None:
        headers["Retry-After"] = f"{spec.retry_after:g}"
    if spec.retry_after_ms is not None:
        headers["retry-after-ms"] = str(spec.retry_after_ms)
    if spec.retry_after_date is not None:
        headers["Retry-After"] = formatdate(time.time() + spec.retry_after_date, usegmt=True)
    if spec.should_retry is not None:
        headers["x-should-retry"] = "true" if spec.should_retry else "false"
    return headers


def _status_error(spec: FaultSpec, status: int) -> EmulatorError:
    if status == 429:
        message, code = "Rate limit reached for requests (emulated fault).", "rate_limit_exceeded"
    elif status >= 500:
        message, code = "The server had an error processing your request (emulated fault).", None
    else:
        message, code = f"{status} {_phrase(status)} (emulated fault).", "emulated_fault"
    return EmulatorError(status, message, code=code, headers=_retry_headers(spec))


def _truncated_success() -> TruncatedResponse:
    payload = {
        "created": int(time.time()),
        "data": [{"b64_json": base64.b64encode(bytes(3072)).decode()}],
    }
    return TruncatedResponse(json.dumps(payload).encode(), media_type="application/json")


def fault_response(spec: FaultSpec) -> Response:
    """Return the response that replaces the normal answer for a fault.

    :param spec: a fault whose :attr:`~FaultSpec.answers` is true, other than ``hang``.
    """
    if spec.truncate:
        return _truncated_success()
    if spec.malformed_json:
        return Response(MALFORMED_JSON, media_type="application/json")
    status = spec.status or 502
    if spec.html:
        page = f"<html><body><h1>{status} {_phrase(status)}</h1></body></html>"
        return Response(
            page, status_code=status, media_type="text/html", headers=_retry_headers(spec)
        )
    return error_response(_status_error(spec, status))
