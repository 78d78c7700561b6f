"""When to retry and how long to wait: pure rules shared by every transport."""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from airflow_provider_cometapi.api.failures import Failure

RETRYABLE_STATUSES = frozenset({408, 409, 429})
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 120.0


@dataclass(frozen=True)
class RetryDecision:
    """Whether to try again, after how many seconds, and why (for the log and the error)."""

    retry: bool
    wait: float = 0.0
    reason: str = ""
    wait_too_long: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    """Retry rules for one logical call."""

    max_retries: int = 2
    retry_on_read_timeout: bool = False
    max_retry_after: float = MAX_RETRY_AFTER
    random: Callable[[], float] = random.random
    now: Callable[[], float] = time.time

    def for_status(
        self, retries_done: int, status: int, headers: Mapping[str, str]
    ) -> RetryDecision:
        """Decide after an error status."""
        should = headers.get("x-should-retry", "").strip().lower()
        if should == "false":
            return RetryDecision(False, reason=f"HTTP {status}, server said x-should-retry: false")
        retryable = status in RETRYABLE_STATUSES or status >= 500 or should == "true"
        if not retryable:
            return RetryDecision(False, reason=f"HTTP {status} is not retryable")
        if retries_done >= self.max_retries:
            return RetryDecision(False, reason=f"HTTP {status} after {retries_done} retries")
        asked = retry_after_seconds(headers, self.now)
        if asked is not None and asked > self.max_retry_after:
            return RetryDecision(
                False,
                wait=asked,
                reason=f"HTTP {status}; the server asked to wait {asked:.0f} s, over the "
                f"{self.max_retry_after:.0f} s limit",
                wait_too_long=True,
            )
        wait = asked if asked is not None else self.backoff(retries_done)
        return RetryDecision(True, wait=wait, reason=f"HTTP {status}")

    def for_failure(self, retries_done: int, failure: Failure) -> RetryDecision:
        """Decide after a transport failure; only one that never reached the server is safe."""
        what = failure.value
        if not failure.never_sent and not self.retry_on_read_timeout:
            return RetryDecision(
                False, reason=f"{what} after the request was sent (the edit may be billed)"
            )
        if retries_done >= self.max_retries:
            return RetryDecision(False, reason=f"{what} after {retries_done} retries")
        return RetryDecision(True, wait=self.backoff(retries_done), reason=what)

    def backoff(self, retries_done: int) -> float:
        """0.5 s doubling per retry, capped at 8 s, minus up to 25 % jitter."""
        # the cap is reached by retry 4; a bounded exponent cannot overflow with a large max_retries
        base = min(INITIAL_BACKOFF * (2.0 ** min(retries_done, 16)), MAX_BACKOFF)
        return base * (1.0 - 0.25 * self.random())


def retry_after_seconds(
    headers: Mapping[str, str], now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms``, then ``Retry-After``), or ``None``."""
    millis = _finite(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return seconds
    try:
        moment = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None:
        return None
    try:
        return max(0.0, moment.timestamp() - now())
    except (OverflowError, ValueError, OSError):
        return None


def _finite(value: str | None) -> float | None:
    """A finite, non-negative number, or ``None``."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except (ValueError, AttributeError):
        return None
    if math.isnan(number) or math.isinf(number) or number < 0:
        return None
    return number
