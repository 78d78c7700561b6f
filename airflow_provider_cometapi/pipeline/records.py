"""What one item came to, and what a batch of them came to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.pricing import cost_of, money
from airflow_provider_cometapi.exceptions import (
    CometAPIBatchError,
    CometAPIBudgetError,
    CometAPIError,
)
from airflow_provider_cometapi.pipeline.masking import summed_checks

if TYPE_CHECKING:
    from airflow_provider_cometapi.api.pricing import Pricing
    from airflow_provider_cometapi.api.results import EditOutcome

NOT_STARTED = "not started: an earlier item failed and on_item_failure='fail'"
_NOT_STARTED = (CometAPIBatchError.__name__, CometAPIBudgetError.__name__)
"""The error types of items never taken up."""


@dataclass(frozen=True)
class ItemResult:
    """One item's record: its source, outputs, usage, request id, retries, reuse and error.

    Its JSON (``to_json``) is what the ``items`` XCom and the trigger event carry; a manifest
    keeps ``manifest_record()``.
    """

    source: str
    outputs: list[str] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    retries: int = 0
    reused: bool = False
    """The outputs were there already, proven by a manifest: nothing was paid now."""
    paid: bool = False
    """This task instance paid for the edit, now or in an earlier try (``usage`` is that bill)."""
    images: int = 0
    """How many images the edit returned (delivered or not)."""
    fingerprint: str | None = None
    """The edit's fingerprint, once its inputs were read (the ledger's key for it)."""
    earlier: list[dict[str, Any]] = field(default_factory=list)
    """Payments for this edit in earlier tries of the task instance, beyond this record's own:
    ``{"request_id", "usage", "images", "try_number"}`` each (see ``pipeline/ledger.py``)."""
    parked: list[dict[str, str]] = field(default_factory=list)
    """The images of a paid edit whose outputs could not be written (``mime_type``, ``b64``),
    on their way to the ledger, which keeps them for a later try; never pushed to XCom."""
    error: dict[str, Any] | None = None
    """``CometAPIError.to_dict()`` of what failed, or ``None``."""
    cost: float | None = None
    """What ``usage`` cost by the user's prices (``with_cost``), when known; never a guess."""
    checks: list[dict[str, Any]] = field(default_factory=list)
    """A masked edit's check of each output (``pipeline/masking.py``): where it is, the share of
    kept pixels the model changed and by how much, whether it was composited or rejected."""
    cause: BaseException | None = field(default=None, compare=False, repr=False)
    """The error itself, while the record stays in the process that caught it (not in JSON)."""

    @classmethod
    def edited(cls, source: str, outputs: list[str], outcome: EditOutcome) -> ItemResult:
        """An item edited now and written to ``outputs``."""
        return cls(
            source,
            list(outputs),
            outcome.usage,
            outcome.request_id,
            outcome.retries,
            paid=True,
            images=len(outputs),
        )

    @classmethod
    def failed(
        cls, source: str, error: BaseException, outcome: EditOutcome | None = None
    ) -> ItemResult:
        """An item that failed with ``error``; ``outcome`` when the edit was paid for first."""
        described = CometAPIError.describe(error)
        if outcome is None:
            return cls(source, request_id=described["request_id"], error=described, cause=error)
        return cls(
            source,
            usage=outcome.usage,
            request_id=outcome.request_id,
            retries=outcome.retries,
            paid=True,
            images=len(outcome.images),
            error=described,
            cause=error,
        )

    @classmethod
    def not_started(cls, source: str, reason: CometAPIError | None = None) -> ItemResult:
        """An item never sent: an earlier one failed under ``fail``, or ``reason``."""
        return cls.failed(source, reason or CometAPIBatchError(NOT_STARTED))

    @classmethod
    def reused_from(cls, source: str, manifest: Mapping[str, Any], *, paid: bool) -> ItemResult:
        """An item whose outputs a manifest proves complete: nothing is paid again.

        :param paid: this task instance paid for them in an earlier try.
        """
        usage = manifest.get("usage") or {}
        outputs, request_id = list(manifest["outputs"]), manifest.get("request_id")
        return cls(
            source,
            outputs,
            dict(usage),
            request_id,
            reused=True,
            paid=paid,
            images=len(outputs),
        )

    @property
    def started(self) -> bool:
        """Whether the item was taken up at all (not stopped by an earlier failure or the
        budget)."""
        return self.error is None or self.error["type"] not in _NOT_STARTED

    def exception(self) -> BaseException:
        """The item's error: the one caught, or in another process, rebuilt as its own class."""
        assert self.error is not None
        return self.cause if self.cause is not None else CometAPIError.from_dict(self.error)

    def manifest_record(self) -> dict[str, Any]:
        """What a manifest keeps of a finished item (the caller adds files and payer)."""
        return {key: getattr(self, key) for key in ("source", "outputs", "usage", "request_id")}

    def report_line(self, position: int) -> dict[str, Any]:
        """The record as the batch report's line: its JSON, its place, no images."""
        return {"position": position, **self.to_json(), "parked": []}

    @classmethod
    def from_report_line(cls, line: Mapping[str, Any]) -> ItemResult:
        """The record a report line holds."""
        return cls.from_json({key: value for key, value in line.items() if key != "position"})

    def to_json(self) -> dict[str, Any]:
        """The record as JSON (without ``cost`` when it is not known, nor ``checks`` when the
        edit had no mask)."""
        return {
            item.name: getattr(self, item.name)
            for item in fields(self)
            if item.name != "cause"
            and not (item.name == "cost" and self.cost is None)
            and not (item.name == "checks" and not self.checks)
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ItemResult:
        """The record ``to_json`` gave."""
        return cls(**data)


def usage_report(results: list[ItemResult], currency: str | None = None) -> dict[str, Any]:
    """``usage`` as pushed: what this task instance paid (over all its tries) at the top level,
    and under ``reused`` what it reused of other task instances' or earlier runs' edits.

    :param currency: the pricing table's; then each part carries ``cost`` when every edit in
        it had one, and ``currency``.
    """
    paid = [result for result in results if result.paid]
    reused = [result for result in results if result.reused and not result.paid]
    earlier = [payment for result in results for payment in result.earlier]
    reused_usage = _tokens(sum_usage([result.usage for result in reused]))
    report = {
        **{key: 0 for key in reused_usage},
        **sum_usage([result.usage for result in paid] + [p["usage"] for p in earlier]),
        "requests": len(paid) + len(earlier),
        "images": sum(result.images for result in paid) + sum(p["images"] for p in earlier),
    }
    report["reused"] = {
        **reused_usage,
        "requests": len(reused),
        "images": sum(result.images for result in reused),
    }
    if currency is not None:
        costs = [result.cost for result in paid] + [p.get("cost") for p in earlier]
        reused_costs = [result.cost for result in reused]
        for part, found in ((report, costs), (report["reused"], reused_costs)):
            if None not in found:
                part["cost"] = money(sum((Decimal(str(cost)) for cost in found), Decimal(0)))
            part["currency"] = currency
    return report


def with_cost(result: ItemResult, pricing: Pricing | None, model: str) -> ItemResult:
    """The result with the cost of its usage by ``pricing`` (paid or reused edits), when the
    model has a price and the usage holds every count it charges."""
    price = pricing.price_of(model) if pricing is not None else None
    if price is None or result.cost is not None or not (result.paid or result.reused):
        return result
    cost = cost_of(price, result.usage, result.images)
    return replace(result, cost=money(cost)) if cost is not None else result


def summary(results: list[ItemResult], usage: Mapping[str, Any]) -> dict[str, Any]:
    """The ``summary`` XCom: counts of items by outcome, and the tokens paid and reused, from
    ``usage`` as ``usage_report`` gave it, and the masked edits' checks summed up; small
    whatever the batch's size."""
    started = [result for result in results if result.started]
    checks = [check for result in results for check in result.checks]
    return {
        "items": len(results),
        "edited": sum(1 for result in started if not result.error and not result.reused),
        "reused": sum(1 for result in started if not result.error and result.reused),
        "failed": sum(1 for result in started if result.error),
        "not_started": len(results) - len(started),
        "paid_tokens": usage.get("total_tokens", 0),
        "reused_tokens": usage["reused"].get("total_tokens", 0),
        **{key: usage[key] for key in ("cost", "currency") if key in usage},
        **({"checks": summed_checks(checks)} if checks else {}),
    }


def _tokens(usage: dict[str, Any]) -> dict[str, Any]:
    """The numeric keys of a summed usage (token counts), without nested details."""
    return {
        key: value
        for key, value in usage.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def sum_usage(usages: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Add up usage dicts key by key, nested ones too; non-numbers keep the first value."""
    total: dict[str, Any] = {}
    for usage in usages:
        for key, value in usage.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, Mapping)):
                total.setdefault(key, value)
            elif isinstance(value, Mapping):
                total[key] = sum_usage([total.get(key) or {}, value])
            else:
                total[key] = total.get(key, 0) + value
    return total
