"""Each HTTP error status maps to the error class a caller catches."""

from __future__ import annotations

import pytest

from airflow_provider_cometapi.exceptions import (
    CometAPIAuthError,
    CometAPIBadRequestError,
    CometAPIRateLimitError,
    CometAPIServerError,
    CometAPITimeoutError,
    error_class_for_status,
)

STATUS_CLASSES = {
    400: CometAPIBadRequestError,
    404: CometAPIBadRequestError,
    413: CometAPIBadRequestError,
    422: CometAPIBadRequestError,
    418: CometAPIBadRequestError,
    401: CometAPIAuthError,
    403: CometAPIAuthError,
    408: CometAPITimeoutError,
    429: CometAPIRateLimitError,
    500: CometAPIServerError,
    502: CometAPIServerError,
    503: CometAPIServerError,
}


@pytest.mark.parametrize(("status", "expected"), STATUS_CLASSES.items())
def test_error_class_for_status(status, expected):
    assert error_class_for_status(status) is expected
