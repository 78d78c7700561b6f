"""Budgets: stop starting items before what was paid, and what is in flight, passes a limit.

The rule (``Budget.admits``), for each limit set (``max_total_tokens``, ``max_cost``): one more
request may start while

    paid + (requests in flight + 1) × (mean paid per edit so far) <= limit.

Before any edit is paid the mean is 0, so the first requests always start: the overshoot is
bounded by the requests in flight. A paid edit whose tokens (or cost) are unknown makes that
limit unjudgeable, and an unjudgeable limit counts as reached.

A run-wide budget (``SharedBudget``) judges the same rule over every task instance of one DAG
run, through a ``RunLedger``: one small JSON record per task instance next to the outputs,
which only that task instance writes and every one reads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.pricing import (
    CONFIG_WHERE,
    EXTRA_WHERE,
    cost_of,
    money,
)
from airflow_provider_cometapi.exceptions import CometAPIBudgetError, CometAPIValidationError
from airflow_provider_cometapi.storage.budget_ledger import (
    BudgetRecord,
    RunLedger,
    Spending,
    decimal_of,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_cometapi.api.pricing import Pricing
    from airflow_provider_cometapi.pipeline.scope import TaskScope

REREAD_SECONDS = 1.0
"""A shared budget reads the other task instances' records at most this often."""
_now = time.monotonic


class Budget:
    """``max_total_tokens`` and/or ``max_cost`` for one task instance, by the rule above.

    Thread-safe, and usable from one event loop too: it never blocks on I/O.

    :param max_total_tokens: a whole number greater than 0, or ``None`` (text as from a template
        is read as a number).
    :param max_cost: an amount greater than 0 in ``currency``, or ``None``.
    :param currency: the pricing table's currency; ``None`` without one (then no ``max_cost``).
    :param pricing: the table that prices each edit for ``paid_edit``.
    """

    scope = "This task instance"
    """Whose spending the budget judges, for messages."""
    shared = False
    """Whether others spend from it too (then ``refresh`` reads what they spent)."""
    _same_currency = ""

    def __init__(
        self,
        *,
        max_total_tokens: int | str | None,
        max_cost: Decimal | float | str | None,
        currency: str | None,
        pricing: Pricing | None = None,
    ) -> None:
        self.max_total_tokens = _token_limit(max_total_tokens)
        self.max_cost = _cost_limit(max_cost, currency)
        self.currency = currency
        self.pricing = pricing
        self._lock = threading.Lock()
        self._own = Spending()

    def paid_edit(self, model: str, usage: Mapping[str, Any], images: int) -> None:
        """Count one paid edit of ``model``, priced by the budget's pricing table."""
        price = self.pricing.price_of(model) if self.pricing is not None else None
        self.paid(usage, cost_of(price, usage, images) if price is not None else None)

    def paid(self, usage: Mapping[str, Any], cost: Decimal | None) -> None:
        """Count one paid edit: its usage and its cost (``None`` when it could not be priced)."""
        edit = Spending.of_edit(usage, cost)
        with self._lock:
            self._own += edit

    @property
    def label(self) -> str:
        """The limits, as set: ``max_total_tokens=50000, max_cost=2.50 USD``."""
        with self._lock:
            spending, _ = self._judged()
        return ", ".join(limit.label for limit in self._limits(spending))

    def refresh(self, in_flight: int) -> None:
        """Read what others spent: nothing to read for a task instance's own budget."""

    def publish(self, in_flight: int) -> None:
        """Tell others what this task instance spent: no one to tell for its own budget."""

    def admits(self, in_flight: int) -> bool:
        """Whether one more request may start, with ``in_flight`` of this task instance's
        requests unanswered: the rule above, for every limit."""
        with self._lock:
            spending, elsewhere = self._judged()
        starts = in_flight + elsewhere + 1
        return all(limit.passes(starts) for limit in self._limits(spending))

    def spent(self) -> dict[str, Any]:
        """What was paid, as JSON: ``paid_edits``, ``total_tokens`` (when every paid edit had
        them), ``cost`` (when every paid edit had one) and ``currency``."""
        with self._lock:
            spending, _ = self._judged()
        report: dict[str, Any] = {"paid_edits": spending.edits}
        if not spending.edits_without_tokens:
            report["total_tokens"] = spending.total_tokens
        if self.currency is not None:
            if not spending.edits_without_cost:
                report["cost"] = money(spending.cost)
            report["currency"] = self.currency
        return report

    def error(self, not_started: int) -> CometAPIBudgetError | None:
        """The error to report after the run: ``None`` while every limit is known to hold and no
        item was refused; else one naming the limits, what was spent and what was not started.

        :param not_started: items the budget refused to start.
        """
        with self._lock:
            spending, _ = self._judged()
        limits = self._limits(spending)
        broken = [limit for limit in limits if limit.unknown or limit.paid > limit.limit]
        if not not_started and not broken:
            return None
        named = broken or [limit for limit in limits if not limit.passes(1)] or limits
        unknown = [limit for limit in named if limit.unknown]
        verdict = "cannot be judged" if unknown else "was reached"
        items = "1 item was" if not_started == 1 else f"{not_started} items were"
        reasons = "".join(f" {limit.why_unknown}" for limit in unknown)
        return CometAPIBudgetError(
            f"Budget {', '.join(limit.label for limit in named)} {verdict}.{reasons} "
            f"{self.scope} spent {self._described(spending)}; {items} not started."
        )

    def _judged(self) -> tuple[Spending, int]:
        """What the budget judges: the spending, and requests in flight elsewhere (under the
        lock)."""
        return self._own, 0

    def _limits(self, spending: Spending) -> list[_Limit]:
        limits = []
        if self.max_total_tokens is not None:
            limits.append(
                _Limit(
                    label=f"max_total_tokens={self.max_total_tokens}",
                    limit=Decimal(self.max_total_tokens),
                    paid=Decimal(spending.total_tokens),
                    edits=spending.edits,
                    unknown=spending.edits_without_tokens,
                    why_unknown=f"{_edits(spending.edits_without_tokens).capitalize()} reported "
                    "no total_tokens (nor input_tokens and output_tokens).",
                )
            )
        if self.max_cost is not None:
            limits.append(
                _Limit(
                    label=f"max_cost={self.max_cost} {self.currency}",
                    limit=self.max_cost,
                    paid=spending.cost,
                    edits=spending.edits,
                    unknown=spending.edits_without_cost,
                    why_unknown=f"The cost of {_edits(spending.edits_without_cost)} was unknown: "
                    f"set a price for the model in the {EXTRA_WHERE} or {CONFIG_WHERE}, "
                    f"with a rate for each token count its usage reports{self._same_currency}.",
                )
            )
        return limits

    def _described(self, spending: Spending) -> str:
        tokens = f"{spending.total_tokens} total tokens"
        if spending.edits_without_tokens:
            tokens = f"at least {tokens}"
        parts = [tokens]
        if self.currency is not None:
            cost = f"{money(spending.cost)} {self.currency}"
            parts.insert(0, f"at least {cost}" if spending.edits_without_cost else cost)
        return f"{' and '.join(parts)} on {_edits(spending.edits)}"


@dataclass(frozen=True)
class _Limit:
    """One limit and what was paid against it."""

    label: str
    limit: Decimal
    paid: Decimal
    edits: int
    unknown: int
    why_unknown: str

    def passes(self, starts: int) -> bool:
        """``paid + starts × paid / edits <= limit``, exactly; never while a count is unknown."""
        if self.unknown:
            return False
        return self.paid * (self.edits + starts) <= self.limit * self.edits


class SharedBudget(Budget):
    """A budget shared by every task instance of one DAG run, through its ``RunLedger``.

    ``admits`` judges this task instance's spending (over all its tries), the others' as last
    read, and everyone's requests in flight, without I/O; ``refresh`` does the I/O. ``spent``
    and ``error`` report the run's spending as last read. A task
    instance's requests stay counted in flight until it rewrites its record (a killed one's,
    until its retry does): the budget errs towards starting less.

    :param try_number: spending recorded by this task instance's earlier tries, or by an
        earlier process of this try (before a deferral, or a restarted trigger), is kept.
    """

    scope = "The task instances of this DAG run"
    shared = True
    _same_currency = " (every task instance sharing the budget must price in one currency)"

    def __init__(
        self,
        ledger: RunLedger,
        *,
        task_id: str,
        map_index: int,
        try_number: int,
        max_total_tokens: int | str | None,
        max_cost: Decimal | float | str | None,
        currency: str | None,
        pricing: Pricing | None = None,
    ) -> None:
        super().__init__(
            max_total_tokens=max_total_tokens,
            max_cost=max_cost,
            currency=currency,
            pricing=pricing,
        )
        self._ledger = ledger
        self._task = (task_id, map_index)
        self._try_number = try_number
        self._io = threading.Lock()
        self._earlier: Spending | None = None  # read from storage on the first publish
        self._others = Spending()
        self._others_in_flight = 0
        self._read_at: float | None = None

    def refresh(self, in_flight: int) -> None:
        """Publish this task instance's record, then read the others' (unless read less than
        ``REREAD_SECONDS`` ago). Blocking storage I/O: call it from a worker thread before an
        item's turn.

        :param in_flight: this task instance's requests in flight now.
        """
        with self._io:
            self._publish(in_flight)
            if self._read_at is not None and _now() - self._read_at < REREAD_SECONDS:
                return
            others, flying = Spending(), 0
            for record in self._ledger.records():
                if (record.task_id, record.map_index) == self._task:
                    continue
                same = record.currency == self.currency
                others += record.spending if same else record.spending.cost_unknown()
                flying += record.in_flight
            with self._lock:
                self._others, self._others_in_flight = others, flying
            self._read_at = _now()

    def publish(self, in_flight: int) -> None:
        """Write this task instance's record (blocking storage I/O); call it with 0 when the
        task instance ends, so that no request of it stays counted in flight."""
        with self._io:
            self._publish(in_flight)

    def _publish(self, in_flight: int) -> None:
        if self._earlier is None:
            earlier = self._ledger.read(*self._task)
            kept = earlier is not None and earlier.try_number <= self._try_number
            with self._lock:
                self._earlier = earlier.spending if earlier is not None and kept else Spending()
        with self._lock:
            spending = self._earlier + self._own
        task_id, map_index = self._task
        self._ledger.write(
            BudgetRecord(
                task_id=task_id,
                map_index=map_index,
                try_number=self._try_number,
                currency=self.currency,
                in_flight=in_flight,
                spending=spending,
            )
        )

    def _judged(self) -> tuple[Spending, int]:
        earlier = self._earlier or Spending()
        return earlier + self._own + self._others, self._others_in_flight


def _token_limit(value: Any) -> int | None:
    if value is None or value == "":
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise CometAPIValidationError(
            f"max_total_tokens is {value!r}: set it to a whole number greater than 0, or None "
            "for no token budget.",
            param="max_total_tokens",
        )
    return int(text)


def _cost_limit(value: Any, currency: str | None) -> Decimal | None:
    if value is None or value == "":
        return None
    amount = None if isinstance(value, bool) else decimal_of(value)
    if amount is None or not amount > 0:
        raise CometAPIValidationError(
            f"max_cost is {value!r}: set it to an amount greater than 0, or None for no cost "
            "budget.",
            param="max_cost",
        )
    if currency is None:
        raise CometAPIValidationError(
            f"max_cost is set but no prices are: set a pricing table in the {EXTRA_WHERE} or "
            f"{CONFIG_WHERE}, with a price for each model the task uses.",
            param="max_cost",
        )
    return amount


def _edits(count: int) -> str:
    return "1 paid edit" if count == 1 else f"{count} paid edits"


BUDGET_SCOPES = ("task", "dag_run")


@dataclass(frozen=True)
class BudgetSpec:
    """A budget as the operator's arguments give it, JSON-friendly for the triggerer.

    :param ledger: the folder of a run-wide budget's ``RunLedger`` (``None``: this task
        instance's own budget).
    """

    max_total_tokens: int | str | None = None
    max_cost: str | None = None
    ledger: str | None = None

    @classmethod
    def of(
        cls, max_total_tokens: Any, max_cost: Any, budget_scope: str, folder: str
    ) -> BudgetSpec | None:
        """The spec of the operator's arguments, or ``None`` without a limit; raise
        ``CometAPIValidationError`` naming a bad ``budget_scope``."""
        if budget_scope not in BUDGET_SCOPES:
            raise CometAPIValidationError(
                f"budget_scope is {budget_scope!r}: use 'task' (this task instance's own "
                "budget) or 'dag_run' (one budget for every task instance of the DAG run).",
                param="budget_scope",
            )
        if max_total_tokens in (None, "") and max_cost in (None, ""):
            return None
        cost = None if max_cost in (None, "") else str(max_cost)
        return cls(max_total_tokens, cost, folder if budget_scope == "dag_run" else None)

    def budget(self, *, pricing: Pricing | None, scope: TaskScope, conn_id: str | None) -> Budget:
        """The budget itself, for the task instance ``scope``, pricing edits by ``pricing``;
        raise ``CometAPIValidationError`` naming a bad limit."""
        currency = pricing.currency if pricing is not None else None
        limits = {"max_total_tokens": self.max_total_tokens, "max_cost": self.max_cost}
        if self.ledger is None:
            return Budget(**limits, currency=currency, pricing=pricing)
        ledger = RunLedger(self.ledger, conn_id, dag_id=scope.dag_id, run_id=scope.run_id)
        return SharedBudget(
            ledger,
            task_id=scope.task_id,
            map_index=scope.map_index,
            try_number=scope.try_number,
            **limits,
            currency=currency,
            pricing=pricing,
        )

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON."""
        return asdict(self)
