"""A batch's log, bounded whatever its size: the same lines on the worker and the triggerer.

- a start line, a progress line at most every ``PROGRESS_SECONDS``, and an end line;
- each failed item at WARNING up to ``WARNING_CAP``, then only counted (the end line says how
  many were not shown, and the report has them all);
- each item's own lines (reused, wrote…) at DEBUG, or at INFO for a batch of one; the first
  item that waits for another task instance's claim at INFO, the others like item lines.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_cometapi.pipeline.records import ItemResult

PROGRESS_SECONDS = 10.0
WARNING_CAP = 20
_now = time.monotonic


class BatchLog:
    """What an ``ItemJob`` logs through (``item``, ``warning``) and the batch's counts.

    :param log: the operator's or trigger's logger.
    :param total: items in the batch.
    """

    def __init__(self, log: Any, total: int) -> None:
        self.log, self.total = log, total
        self.edited = self.reused = self.retried = self.failed = 0
        self._item_level = logging.INFO if total == 1 else logging.DEBUG
        self._warnings = 0
        self._waited = False
        self._last = _now()
        self._guard = threading.Lock()

    def start(self, limit: int, report: str | None) -> None:
        """The start line."""
        where = f"; report: {report}" if report else ""
        self.log.info("Editing %d item(s), up to %d in flight%s", self.total, limit, where)

    def item(self, message: str, *args: Any) -> None:
        """One item's own line."""
        self.log.log(self._item_level, message, *args)

    def waiting(self, message: str, *args: Any) -> None:
        """An item waits for another task instance: said once at INFO, then as item lines."""
        with self._guard:
            first, self._waited = not self._waited, True
        self.log.log(logging.INFO if first else self._item_level, message, *args)

    def warning(self, message: str, *args: Any) -> None:
        """An item's failure, at WARNING while under the cap."""
        with self._guard:
            self._warnings += 1
            shown = self._warnings <= WARNING_CAP
        if shown:
            self.log.warning(message, *args)
        else:
            self.log.debug(message, *args)

    def add(self, result: ItemResult) -> None:
        """Count one finished item; a progress line when one is due."""
        self.failed += bool(result.error)
        self.reused += result.reused and not result.error
        self.edited += not result.error and not result.reused
        self.retried += bool(result.retries)
        if _now() - self._last >= PROGRESS_SECONDS:
            self._progress()

    def finish(self) -> None:
        """The end line, and how many failures were only counted."""
        self._progress()
        hidden = self._warnings - WARNING_CAP
        if hidden > 0:
            self.log.warning(
                "%d more warning(s) about items not shown here: the report has every item", hidden
            )

    def _progress(self) -> None:
        self._last = _now()
        self.log.info(
            "%d/%d done: %d edited, %d reused, %d retried, %d failed",
            self.edited + self.reused + self.failed,
            self.total,
            self.edited,
            self.reused,
            self.retried,
            self.failed,
        )
