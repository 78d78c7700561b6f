"""The request gate: which item of a batch may send its request, and when, by position.

The rule, with items numbered by their position in ``sources``:

- at most ``limit`` requests are in flight at once, and items take their turn in order: item
  *k* sends its request (or reports that it needs none) only once every item before it has been
  read, checked and looked up in its manifest, and has taken its own turn;
- under ``on_item_failure="fail"``, an item that fails its checks is the batch's failure: no
  item after it is ever sent (each reports not started), and every item before it still is
  (unless its own checks fail). A failed request or a failed commit stops the batch at once:
  no item starts its request after that answer arrived; requests already in flight finish and
  their outputs are written;
- under ``"continue"`` a failure stops nothing;
- once stopped (the task is ending, a failure under ``fail``, or a refused API key under either),
  no waiting item starts;
- with a budget, an item whose turn to send has come starts only while the budget admits one
  more request with those in flight (``pipeline/budget.py``); once it does not, no item sends
  again (each reports not started), while items that need no request still take their turn.

Worker and triggerer run the same ``OrderedGate`` rule; ``ThreadGate`` and ``AsyncGate`` only wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from airflow_provider_cometapi.pipeline.budget import Budget


class OrderedGate:
    """The rule above, without waiting: ``decide`` says go, never, or not yet.

    :param count: items in the batch.
    :param limit: requests in flight at once.
    :param stop_on_failure: ``on_item_failure == "fail"``.
    :param budget: the token or cost budget, if any.
    """

    def __init__(
        self, count: int, limit: int, *, stop_on_failure: bool, budget: Budget | None = None
    ) -> None:
        self.budget = budget
        self.over_budget: set[int] = set()
        """The items the budget kept from sending."""
        self._done_waiting = [False] * count
        self._next = 0  # every item before this position has taken its turn
        self._first_failed_check = count
        self._limit = limit
        self._stop_on_failure = stop_on_failure
        self.in_flight = 0
        self.stopped = False

    def check_failed(self, position: int) -> None:
        """Item ``position`` failed its checks (passing them changes nothing: turns go in order)."""
        with self._guard():
            self._first_failed_check = min(self._first_failed_check, position)
            self._changed()

    def answered(self, *, ok: bool) -> None:
        """A request in flight has its answer (or failed for good)."""
        with self._guard():
            self.in_flight -= 1
            if not ok and self._stop_on_failure:
                self.stopped = True
            self._changed()

    def commit_failed(self) -> None:
        """An answered item's outputs could not be written."""
        if self._stop_on_failure:
            self.stop()

    def stop(self) -> None:
        """Start no waiting item from now on."""
        with self._guard():
            self.stopped = True
            self._changed()

    def refuses(self, position: int) -> bool:
        """Whether item ``position`` is never to be sent, nor reported as more than not started."""
        return self.stopped or (self._stop_on_failure and self._first_failed_check < position)

    def decide(self, position: int, *, sending: bool = True) -> bool | None:
        """Item ``position``'s turn: ``True`` go (a request is counted in flight if
        ``sending``), ``False`` never, ``None`` not yet. Call it under the gate's guard.

        Items that need no request (failed checks, reused outputs) take their turn too, so what
        every item reports is fixed by position, not by timing.
        """
        if self.refuses(position):
            self.leave(position)
            return False
        if self._next < position:
            return None
        if sending:
            if self.in_flight >= self._limit:
                return None
            if self.budget is not None and (
                self.over_budget or not self.budget.admits(self.in_flight)
            ):
                self.over_budget.add(position)
                self.leave(position)
                return False
            self.in_flight += 1
        self.leave(position)
        return True

    def leave(self, position: int) -> None:
        """Item ``position`` has taken its turn (or was settled before the run): wake the next."""
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

    def __init__(
        self, count: int, limit: int, *, stop_on_failure: bool, budget: Budget | None = None
    ) -> None:
        super().__init__(count, limit, stop_on_failure=stop_on_failure, budget=budget)
        self._condition = threading.Condition()

    def turn(self, position: int, *, sending: bool = True) -> bool:
        """Wait for item ``position``'s turn; ``False`` when it is not to go on."""
        with self._condition:
            decision = self.decide(position, sending=sending)
            while decision is None:
                self._condition.wait()
                decision = self.decide(position, sending=sending)
            return decision

    def _guard(self) -> AbstractContextManager[object]:
        return self._condition

    def _changed(self) -> None:
        self._condition.notify_all()


class AsyncGate(OrderedGate):
    """The gate for the triggerer's event loop (used only from that loop)."""

    def __init__(
        self, count: int, limit: int, *, stop_on_failure: bool, budget: Budget | None = None
    ) -> None:
        super().__init__(count, limit, stop_on_failure=stop_on_failure, budget=budget)
        self._change = asyncio.Event()

    async def turn(self, position: int, *, sending: bool = True) -> bool:
        """Wait for item ``position``'s turn; ``False`` when it is not to go on."""
        while True:
            change = self._change
            decision = self.decide(position, sending=sending)
            if decision is not None:
                return decision
            await change.wait()

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()
