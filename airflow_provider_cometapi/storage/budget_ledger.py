"""The ledger of a run-wide budget: what each task instance of a DAG run spent, kept in storage
next to the outputs, one small JSON record per task instance, which only that task instance
writes and every one reads."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.pricing import token_count
from airflow_provider_cometapi.storage.outputs import safe_stem
from airflow_provider_cometapi.storage.paths import is_local, storage_path

if TYPE_CHECKING:
    from collections.abc import Mapping

BUDGET_FOLDER = ".cometapi-budget"
log = logging.getLogger(__name__)
_ZERO = Decimal(0)


@dataclass(frozen=True)
class Spending:
    """What some paid edits cost; ``edits_without_*`` count those whose tokens or cost are unknown
    (their share is missing from ``total_tokens`` or ``cost``)."""

    edits: int = 0
    total_tokens: int = 0
    cost: Decimal = _ZERO
    edits_without_tokens: int = 0
    edits_without_cost: int = 0

    @classmethod
    def of_edit(cls, usage: Mapping[str, Any], cost: Decimal | None) -> Spending:
        """One paid edit: ``usage["total_tokens"]``, else input plus output tokens."""
        tokens = token_count(usage, "total_tokens")
        if tokens is None:
            parts = [token_count(usage, key) for key in ("input_tokens", "output_tokens")]
            tokens = None if None in parts else sum(part or 0 for part in parts)
        return cls(
            edits=1,
            total_tokens=tokens or 0,
            cost=cost if cost is not None else _ZERO,
            edits_without_tokens=int(tokens is None),
            edits_without_cost=int(cost is None),
        )

    def __add__(self, other: Spending) -> Spending:
        return Spending(
            self.edits + other.edits,
            self.total_tokens + other.total_tokens,
            self.cost + other.cost,
            self.edits_without_tokens + other.edits_without_tokens,
            self.edits_without_cost + other.edits_without_cost,
        )

    def cost_unknown(self) -> Spending:
        """The same spending with its cost unknown (priced in another currency)."""
        return replace(self, cost=_ZERO, edits_without_cost=self.edits)

    def to_json(self) -> dict[str, Any]:
        """The spending as JSON (the cost as exact decimal text)."""
        return {
            "edits": self.edits,
            "total_tokens": self.total_tokens,
            "cost": str(self.cost),
            "edits_without_tokens": self.edits_without_tokens,
            "edits_without_cost": self.edits_without_cost,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Spending:
        """The spending ``to_json`` gave; ``ValueError`` if it is not one."""
        counts = ("edits", "total_tokens", "edits_without_tokens", "edits_without_cost")
        return cls(
            **{key: _natural(data, key) for key in counts},
            cost=_amount(data.get("cost")),
        )


@dataclass(frozen=True)
class BudgetRecord:
    """One task instance's record in a ``RunLedger``: what it paid over all its tries, and how
    many of its requests were in flight when it wrote the record."""

    task_id: str
    map_index: int
    try_number: int
    currency: str | None
    in_flight: int
    spending: Spending = field(default_factory=Spending)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON."""
        return {
            "task_id": self.task_id,
            "map_index": self.map_index,
            "try_number": self.try_number,
            "currency": self.currency,
            "in_flight": self.in_flight,
            **self.spending.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> BudgetRecord:
        """The record ``to_json`` gave; ``ValueError`` if it is not one."""
        if not isinstance(data, dict):
            raise ValueError("a budget record is a JSON object")
        task_id, currency = data.get("task_id"), data.get("currency")
        if not isinstance(task_id, str) or not isinstance(currency, str | None):
            raise ValueError("task_id and currency must be text")
        map_index = data.get("map_index")
        if isinstance(map_index, bool) or not isinstance(map_index, int):
            raise ValueError("map_index must be a whole number")
        return cls(
            task_id=task_id,
            map_index=map_index,
            try_number=_natural(data, "try_number"),
            currency=currency,
            in_flight=_natural(data, "in_flight"),
            spending=Spending.from_json(data),
        )


class RunLedger:
    """The budget records of one DAG run's task instances, in storage next to the outputs:
    ``<folder>.cometapi-budget/<dag_id>/<run_id>/<task_id>-<map_index>.json``.

    Every method does blocking storage I/O. A record is written whole (staged and renamed on a
    local disk; one put on an object store), so a reader never sees half of one.

    :param folder: the output folder (ending with ``/``), the same for every task instance
        that shares the budget.
    """

    def __init__(self, folder: str, conn_id: str | None, *, dag_id: str, run_id: str) -> None:
        folder = folder if folder.endswith("/") else folder + "/"
        self.location = f"{folder}{BUDGET_FOLDER}/{safe_stem(dag_id)}/{safe_stem(run_id)}/"
        self.conn_id = conn_id

    def write(self, record: BudgetRecord) -> None:
        """Write (or rewrite) a task instance's record."""
        path = self._record_path(record.task_id, record.map_index)
        body = json.dumps(record.to_json(), sort_keys=True).encode()
        if not is_local(path):
            path.write_bytes(body)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.partial"
        try:
            staging.write_bytes(body)
            path.fs.mv(staging.path, path.path)
        finally:
            if staging.exists():
                staging.unlink()

    def read(self, task_id: str, map_index: int) -> BudgetRecord | None:
        """A task instance's record, or ``None`` if it has none (or an unreadable one)."""
        path = self._record_path(task_id, map_index)
        return self._load(path.fs, path.path)

    def records(self) -> list[BudgetRecord]:
        """Every readable record of the run; unreadable ones are skipped with a warning."""
        fs, folder = self._folder.fs, self._folder.path
        fs.invalidate_cache(folder)  # object stores cache listings; others write meanwhile
        try:
            names = fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        found = []
        for name in sorted(names):
            base = name.rstrip("/").rpartition("/")[2]
            if base.endswith(".json") and not base.startswith("."):
                record = self._load(fs, name)
                if record is not None:
                    found.append(record)
        return found

    @cached_property
    def _folder(self) -> Any:
        return storage_path(self.location, self.conn_id)

    def _record_path(self, task_id: str, map_index: int) -> Any:
        return storage_path(f"{self.location}{safe_stem(task_id)}-{map_index}.json", self.conn_id)

    @staticmethod
    def _load(fs: Any, path: str) -> BudgetRecord | None:
        try:
            return BudgetRecord.from_json(json.loads(fs.cat_file(path)))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            log.warning("Skipping the budget record %s: it cannot be read (%s)", path, exc)
            return None


def decimal_of(value: Any) -> Decimal | None:
    """A finite ``Decimal`` from a number or its text, or ``None``."""
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _natural(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a whole number, 0 or more")
    return value


def _amount(value: Any) -> Decimal:
    amount = decimal_of(value) if isinstance(value, str) else None
    if amount is None or amount < 0:
        raise ValueError("cost must be an amount, 0 or more, as text")
    return amount
