"""The request gate: which item of a batch may send its request, and when, by position.

The rule, with items numbered by their position in ``sources``:

- at most ``limit`` requests are in flight at once;
- under ``on_item_failure="fail"``, items take their turn in order: item *k* sends its request
  only once every item before it has passed its checks (read, decoded, checked, looked up in its
  manifest) and has sent its own request or needed none. An item that fails
  its checks is the batch's failure: no item after it is ever sent, and every item before it
  still is (unless its own checks fail). A failed request or a failed commit stops the batch at
  once: no item starts its request after that answer arrived; requests already in flight finish
  and their outputs are written;
- under ``"continue"`` only the limit applies;
- once stopped (the task is ending, or a failure under ``fail``), no waiting item starts.

Worker and triggerer run the same ``OrderedGate`` rule; ``ThreadGate`` and ``AsyncGate`` only wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


class OrderedGate:
    """The rule above, without waiting: ``decide`` says send, never, or not yet.

    :param count: items in the batch.
    :param limit: requests in flight at once.
    :param stop_on_failure: ``on_item_failure == "fail"``.
    """

    def __init__(self, count: int, limit: int, *, stop_on_failure: bool) -> None:
        self._checks: list[bool | None] = [None] * count
        self._passed = 0  # the items before this position all passed their checks
        self._done_waiting = [False] * count
        self._next = 0  # the items before this position have all sent, or needed no request
        self._first_failed_check = count
        self._limit = limit
        self._ordered = stop_on_failure
        self.in_flight = 0
        self.stopped = False

    def checked(self, position: int, *, passed: bool, settled: bool) -> None:
        """Item ``position`` passed or failed its checks; ``settled``: it needs no request."""
        with self._guard():
            self._checks[position] = passed
            if not passed:
                self._first_failed_check = min(self._first_failed_check, position)
            while self._passed < len(self._checks) and self._checks[self._passed]:
                self._passed += 1
            if settled:
                self._leave(position)
            self._changed()

    def answered(self, *, ok: bool) -> None:
        """A request in flight has its answer (or failed for good)."""
        with self._guard():
            self.in_flight -= 1
            if not ok and self._ordered:
                self.stopped = True
            self._changed()

    def commit_failed(self) -> None:
        """An answered item's outputs could not be written."""
        if self._ordered:
            self.stop()

    def stop(self) -> None:
        """Start no waiting item from now on."""
        with self._guard():
            self.stopped = True
            self._changed()

    def refuses(self, position: int) -> bool:
        """Whether item ``position`` will never send its request."""
        return self.stopped or (self._ordered and self._first_failed_check < position)

    def decide(self, position: int) -> bool | None:
        """``True``: send now (counted in flight); ``False``: never; ``None``: not yet.

        Call it under the gate's guard: an answer other than ``None`` moves the turn on.
        """
        if self.refuses(position):
            self._leave(position)
            return False
        if self.in_flight >= self._limit or (
            self._ordered and min(self._passed, self._next) < position
        ):
            return None
        self.in_flight += 1
        self._leave(position)
        return True

    def _leave(self, position: int) -> None:
        """Item ``position`` waits no more: the next one may take its turn (wake it)."""
        self._done_waiting[position] = True
        while self._next < len(self._done_waiting) and self._done_waiting[self._next]:
            self._next += 1
        self._changed()

    def _guard(self) -> AbstractContextManager[object]:
        return contextlib.nullcontext()

    def _changed(self) -> None:
        """Wake whoever waits for a decision."""


class ThreadGate(OrderedGate):
    """The gate for worker threads."""

    def __init__(self, count: int, limit: int, *, stop_on_failure: bool) -> None:
        super().__init__(count, limit, stop_on_failure=stop_on_failure)
        self._condition = threading.Condition()

    def turn(self, position: int) -> bool:
        """Wait for item ``position``'s turn; ``False`` when it must never send."""
        with self._condition:
            decision = self.decide(position)
            while decision is None:
                self._condition.wait()
                decision = self.decide(position)
            return decision

    def _guard(self) -> AbstractContextManager[object]:
        return self._condition

    def _changed(self) -> None:
        self._condition.notify_all()


class AsyncGate(OrderedGate):
    """The gate for the triggerer's event loop (used only from that loop)."""

    def __init__(self, count: int, limit: int, *, stop_on_failure: bool) -> None:
        super().__init__(count, limit, stop_on_failure=stop_on_failure)
        self._change = asyncio.Event()

    async def turn(self, position: int) -> bool:
        """Wait for item ``position``'s turn; ``False`` when it must never send."""
        while True:
            change = self._change
            decision = self.decide(position)
            if decision is not None:
                return decision
            await change.wait()

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()
