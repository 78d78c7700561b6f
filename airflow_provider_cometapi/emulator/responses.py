"""HTTP responses for errors and injected faults (status, html, malformed_json, truncate, reset)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import struct
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from airflow_provider_cometapi.emulator.errors import EmulatorError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from starlette.types import Receive, Scope, Send

    from airflow_provider_cometapi.emulator.faults import FaultSpec

MALFORMED_JSON = b'{"created": 1, "data": ['
RESET_STATUS = 444
"""The status recorded for a connection reset without an answer (nginx's code for it)."""


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


class ResetResponse(Response):
    """No answer: the request's connection is closed with a TCP RST (``SO_LINGER`` 0).

    ASGI has no message for that, so the connection is found among the server's own
    (uvicorn's protocols, matched by the client's address) and aborted.

    :param connections: the server's open connections, each with ``client`` and ``transport``.
    """

    def __init__(self, connections: Callable[[], Collection[Any]]) -> None:
        super().__init__(status_code=RESET_STATUS)
        self._connections = connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = tuple(scope.get("client") or ())
        for connection in list(self._connections()):
            if tuple(getattr(connection, "client", None) or ()) == client:
                transport = connection.transport
                sock = transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
                await asyncio.sleep(0)  # the server sees the connection lost, and sends nothing
                return
        raise RuntimeError(f"emulated reset: no open connection from {client!r}")


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


def _stand_in_success() -> bytes:
    """A made-up success body, for a truncated answer to an edit that was never done."""
    payload = {
        "created": int(time.time()),
        "data": [{"b64_json": base64.b64encode(bytes(3072)).decode()}],
    }
    return json.dumps(payload).encode()


def fault_response(
    spec: FaultSpec,
    connections: Callable[[], Collection[Any]],
    body: bytes | None = None,
) -> Response:
    """Return the response that replaces the normal answer for a fault.

    :param spec: a fault whose :attr:`~FaultSpec.answers` is true, other than ``hang``.
    :param connections: the server's open connections, for ``reset``.
    :param body: the real answer of a ``billed`` fault's edit, which ``truncate`` cuts.
    """
    if spec.truncate:
        return TruncatedResponse(body or _stand_in_success(), media_type="application/json")
    if spec.reset:
        return ResetResponse(connections)
    if spec.malformed_json:
        return Response(MALFORMED_JSON, media_type="application/json")
    status = spec.status or 502
    if spec.html:
        page = f"<html><body><h1>{status} {_phrase(status)}</h1></body></html>"
        return Response(
            page, status_code=status, media_type="text/html", headers=_retry_headers(spec)
        )
    return error_response(_status_error(spec, status))
