"""An item's steps in order around the request gate, yielded for a runner to perform.

``item_steps`` runs an ``ItemJob``'s steps around the gate and the transport, yielding each step:
the worker runs them in its thread, the triggerer runs blocking ones with ``asyncio.to_thread``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.exceptions import CometAPIAuthError

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from airflow_provider_cometapi.pipeline.gate import OrderedGate
    from airflow_provider_cometapi.pipeline.item import ItemJob
    from airflow_provider_cometapi.pipeline.records import ItemResult


@dataclass(frozen=True)
class Blocking:
    """A step that blocks: storage or CPU work, run in a thread off the triggerer's loop."""

    call: Callable[[], Any]


@dataclass(frozen=True)
class Turn:
    """The step that waits for the item's turn at the gate; answers whether it may go on.

    :param sending: the item will send a request (counted against the limit).
    """

    sending: bool


class Send:
    """The step that sends the item's request; answers the ``EditOutcome``."""


Step = Blocking | Turn | Send
SEND = Send()


def item_steps(job: ItemJob, gate: OrderedGate) -> Generator[Step, Any, ItemResult | None]:
    """The item's steps in order; a runner performs each and sends back its answer (or throws
    its error). Returns the item's result, or ``None`` when it was never started."""
    budget = gate.budget
    settled = yield Blocking(job.prepare)
    if settled is not None and settled.error is not None:
        gate.check_failed(job.position)
    if settled is not None and settled.paid and budget is not None and not budget.shared:
        budget.paid_edit(job.params.model, settled.usage, settled.images)  # in an earlier try
    if settled is None and budget is not None and budget.shared:  # read what the others spent
        yield Blocking(partial(budget.refresh, gate.in_flight))
    if not (yield Turn(sending=settled is None)):
        yield Blocking(job.abandon)
        return None
    if settled is not None:
        return settled
    try:
        outcome = yield SEND
    except Exception as exc:  # refused, or failed for good: the gate stops under 'fail'
        gate.answered(ok=False)
        if isinstance(exc, CometAPIAuthError):  # no other request could succeed either
            gate.stop()
        return (yield Blocking(partial(job.failed, exc)))
    if budget is not None:  # counted before the next request may start
        budget.paid_edit(job.params.model, outcome.usage, len(outcome.images))
    gate.answered(ok=True)
    result = yield Blocking(partial(job.finish, outcome))
    if result.error is not None:
        gate.commit_failed()
    return result


class ItemSteps:
    """Iterate it for an item's steps; tell it each step's answer or error.

    What both runners share of driving ``item_steps``: the result when the steps end, and,
    when the runner itself is stopped, a gate that starts nothing more and nothing left staged.
    """

    def __init__(self, job: ItemJob, gate: OrderedGate) -> None:
        self._job, self._gate = job, gate
        self._steps = item_steps(job, gate)
        self._answer: Any = None
        self._error: Exception | None = None
        self.result: ItemResult | None = None

    def __iter__(self) -> ItemSteps:
        return self

    def __next__(self) -> Step:
        answer, error = self._answer, self._error
        self._answer, self._error = None, None
        try:
            return self._steps.throw(error) if error is not None else self._steps.send(answer)
        except StopIteration as done:
            self.result = done.value
            raise StopIteration from None
        except Exception as exc:  # a step failed that should not: this item fails, not the batch
            self._gate.check_failed(self._job.position)
            self._gate.leave(self._job.position)
            self.result = self._job.failed(exc)
            raise StopIteration from None

    def answer(self, value: Any) -> None:
        """The answer of the step just performed."""
        self._answer = value

    def fail(self, error: Exception) -> None:
        """The error of the step just performed."""
        self._error = error

    def stopped(self) -> None:
        """The runner is being stopped (a timeout, the task killed, the triggerer ending)."""
        self._gate.stop()
        self._job.abandon()
