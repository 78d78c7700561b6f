"""Errors raised by the CometAPI provider: one class per thing a caller can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowException

if TYPE_CHECKING:
    from collections.abc import Mapping


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

    def to_dict(self) -> dict[str, Any]:
        """The error as JSON: its class name, message, status, request id, param and code."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            **{name: getattr(self, name) for name in _DETAILS},
        }

    @classmethod
    def from_dict(cls, described: Mapping[str, Any]) -> CometAPIError:
        """The error ``to_dict`` described, as its own class (``CometAPIError`` if unknown)."""
        error_class = _CLASSES.get(str(described.get("type")), CometAPIError)
        details = {name: described.get(name) for name in _DETAILS}
        return error_class(str(described.get("message", "")), **details)

    @staticmethod
    def describe(error: BaseException) -> dict[str, Any]:
        """Any error as the JSON ``to_dict`` gives; other exceptions keep their class name."""
        if isinstance(error, CometAPIError):
            return error.to_dict()
        return {"type": type(error).__name__, "message": str(error), **dict.fromkeys(_DETAILS)}

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle through ``to_dict``, so errors cross process boundaries intact."""
        return CometAPIError.from_dict, (self.to_dict(),)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES[cls.__name__] = cls


_DETAILS = ("status", "request_id", "server_message", "param", "code")
"""The keyword attributes every error carries besides its message."""
_CLASSES: dict[str, type[CometAPIError]] = {"CometAPIError": CometAPIError}
"""Every error class by name, filled as classes are defined: what ``from_dict`` can rebuild."""


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


class CometAPIOutputConflictError(CometAPIOutputError):
    """An output name already holds an object that is not this edit's: nothing was overwritten."""


class CometAPIBatchError(CometAPIError):
    """One or more items of a batch failed; the others' outputs were written."""


class CometAPIRowsError(CometAPIValidationError):
    """Rows of a batch's ``sources`` have bad fields (each named by its line); nothing was sent."""


class CometAPIBudgetError(CometAPIError):
    """A batch stopped starting items at its token or cost budget; what was paid is reported."""


class CometAPIQualityError(CometAPIError):
    """An output changed more of what its mask keeps than allowed; it was kept, not written."""


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
