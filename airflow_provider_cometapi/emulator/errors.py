"""OpenAI-style API errors raised inside the emulator."""

from __future__ import annotations

from typing import Any


def error_type(status: int) -> str:
    """Return the OpenAI error ``type`` for an HTTP status.

    :param status: the HTTP status code.
    """
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


class EmulatorError(Exception):
    """An error answered as ``{"error": {...}}`` with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """Return the JSON body of the error response."""
        return {
            "error": {
                "message": self.message,
                "type": error_type(self.status),
                "param": self.param,
                "code": self.code,
            }
        }


def invalid_request(message: str, param: str | None, code: str) -> EmulatorError:
    """Return a 400 ``invalid_request_error``.

    :param message: what is wrong and what to do.
    :param param: the form field at fault.
    :param code: the machine-readable error code.
    """
    return EmulatorError(400, message, param=param, code=code)


def invalid_api_key() -> EmulatorError:
    """Return the 401 answered for a missing, empty or wrong API key."""
    return EmulatorError(401, "Incorrect API key provided.", code="invalid_api_key")
