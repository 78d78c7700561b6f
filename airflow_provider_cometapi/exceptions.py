"""Errors raised by the CometAPI provider: one class per thing a caller can act on."""

from __future__ import annotations

from airflow.exceptions import AirflowException


class CometAPIError(AirflowException):
    """Base of every error this provider raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        server_message: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.server_message = server_message
        self.param = param
        self.code = code

    def __str__(self) -> str:
        context = []
        if self.status is not None:
            context.append(f"HTTP {self.status}")
        if self.request_id:
            context.append(f"request id {self.request_id}")
        return f"{self.message} ({', '.join(context)})" if context else self.message

    def __reduce__(self):  # type: ignore[no-untyped-def]
        """Pickle with the keyword attributes, so errors cross process boundaries intact."""
        kwargs = {
            "status": self.status,
            "request_id": self.request_id,
            "server_message": self.server_message,
            "param": self.param,
            "code": self.code,
        }
        return _rebuild, (type(self), self.message, kwargs)


def _rebuild(cls: type[CometAPIError], message: str, kwargs: dict) -> CometAPIError:
    return cls(message, **kwargs)


class CometAPIValidationError(CometAPIError, ValueError):
    """An argument or input file is invalid; nothing was sent."""


class CometAPISourceError(CometAPIValidationError):
    """A source image or mask could not be found or read; nothing was sent."""


class CometAPIAuthError(CometAPIError):
    """The API key is missing, malformed or refused (401/403)."""


class CometAPIBadRequestError(CometAPIError):
    """The server refused the request as invalid (400/404/413/422 and other 4xx)."""


class CometAPIRateLimitError(CometAPIError):
    """The server kept answering 429 Too Many Requests."""


class CometAPIServerError(CometAPIError):
    """The server kept failing with a 5xx status."""


class CometAPITimeoutError(CometAPIError):
    """No complete answer arrived within the timeout."""


class CometAPIConnectionError(CometAPIError):
    """The server could not be reached, or dropped the connection."""


class CometAPIBadResponseError(CometAPIError):
    """The server answered with something that is not a usable image-edit result."""


class CometAPIOutputError(CometAPIError):
    """An edited image could not be written; no partial output was left behind."""


class CometAPIBatchError(CometAPIError):
    """One or more items of a batch failed; the others' outputs were written."""


def error_class_for_status(status: int) -> type[CometAPIError]:
    """Map an HTTP error status to the class a caller should catch."""
    if status in (401, 403):
        return CometAPIAuthError
    if status == 429:
        return CometAPIRateLimitError
    if status == 408:
        return CometAPITimeoutError
    if status >= 500:
        return CometAPIServerError
    if 400 <= status < 500:
        return CometAPIBadRequestError
    return CometAPIBadResponseError


def rebuild_error(described: dict) -> CometAPIError:
    """Turn an error described as JSON (``type``, ``message``, …) back into its class."""
    cls = globals().get(str(described.get("type")))
    if not (isinstance(cls, type) and issubclass(cls, CometAPIError)):
        cls = CometAPIError
    return cls(
        str(described.get("message", "")),
        status=described.get("status"),
        request_id=described.get("request_id"),
        param=described.get("param"),
        server_message=described.get("server_message"),
        code=described.get("code"),
    )
