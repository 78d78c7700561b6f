"""What one item came to, and the batch's running count of them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.exceptions import CometAPIBatchError, CometAPIError

if TYPE_CHECKING:
    from airflow_provider_cometapi.api.results import EditOutcome

NOT_STARTED = "not started: an earlier item failed and on_item_failure='fail'"


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
    def not_started(cls, source: str) -> ItemResult:
        """An item never sent because an earlier one failed under ``fail``."""
        return cls.failed(source, CometAPIBatchError(NOT_STARTED))

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
        """Whether the item was taken up at all (not stopped by an earlier failure)."""
        return self.error is None or self.error["type"] != CometAPIBatchError.__name__

    def exception(self) -> BaseException:
        """The item's error: the one caught, or in another process, rebuilt as its own class."""
        assert self.error is not None
        return self.cause if self.cause is not None else CometAPIError.from_dict(self.error)

    def manifest_record(self) -> dict[str, Any]:
        """What a manifest keeps of a finished item (the caller adds files and payer)."""
        return {key: getattr(self, key) for key in ("source", "outputs", "usage", "request_id")}

    def to_json(self) -> dict[str, Any]:
        """The record as JSON."""
        return {
            item.name: getattr(self, item.name) for item in fields(self) if item.name != "cause"
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ItemResult:
        """The record ``to_json`` gave."""
        return cls(**data)


def usage_report(results: list[ItemResult]) -> dict[str, Any]:
    """``usage`` as pushed: what this task instance paid (over all its tries) at the top level,
    and under ``reused`` what it reused of other task instances' or earlier runs' edits."""
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
    return report


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


class BatchProgress:
    """Counts finished items and logs ``37/200 edited, 2 retried, 0 failed`` on ``log``."""

    def __init__(self, log: Any, total: int) -> None:
        self.log, self.total = log, total
        self.edited = self.retried = self.failed = 0

    def add(self, result: ItemResult) -> None:
        """Count one finished item and log the running totals."""
        self.failed += bool(result.error)
        self.edited += not result.error
        self.retried += bool(result.retries)
        self.log.info(
            "%d/%d edited, %d retried, %d failed",
            self.edited,
            self.total,
            self.retried,
            self.failed,
        )
