"""The ledger of what a task instance paid, over all its tries, in Airflow's ``task_state_store``.

Manifests next to the outputs prove delivered edits to any task instance; the ledger keeps, for
this task instance alone, every payment, including edits paid for whose outputs never arrived
(a storage error after the answer), so that a later try still reports them in ``usage``. It lives
in the task state store of AIP-103 (Airflow 3.3), which keeps small values for one task instance
across its tries; without one (a bare ``execute()`` call) there is no ledger.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_cometapi.pipeline.records import ItemResult

KEY_PREFIX = "cometapi.paid."


def settle(context: Context, results: list[ItemResult]) -> list[ItemResult]:
    """Record this try's payments, and attach to each result the payments of earlier tries
    for the same edit that it does not already stand for."""
    store = context.get("task_state_store")
    if store is None:
        return results
    try_number = getattr(context["ti"], "try_number", 1)
    return [_settle(store, result, try_number) for result in results]


def _settle(store: Any, result: ItemResult, try_number: int) -> ItemResult:
    if result.fingerprint is None:  # failed before its inputs were read: never paid
        return result
    key = KEY_PREFIX + result.fingerprint
    payments: list[dict[str, Any]] = list(store.get(key) or [])
    known = {payment["request_id"] for payment in payments}
    if result.paid and not result.reused and result.request_id not in known:
        payment = {
            "request_id": result.request_id,
            "usage": result.usage,
            "images": result.images,
            "try_number": try_number,
        }
        store.set(key, [*payments, payment])
    earlier = [payment for payment in payments if payment["request_id"] != result.request_id]
    return replace(result, earlier=earlier) if earlier else result
