"""The ledger of what a task instance paid, over all its tries, in Airflow's ``task_state_store``.

Manifests next to the outputs prove delivered edits, and who paid for them, to any task instance
and any later try. The ledger keeps, for this task instance alone, what no manifest can show:

- the payments for edits whose outputs never arrived, so that a later try still reports them
  in ``usage``;
- the images of such an edit ("parked"), so that a later try delivers them instead of paying
  again, and forgets them once delivered.

So an ordinary try costs two reads of the store (the two index keys), however many items it
has; the store is written only for edits that storage failed after payment.

It lives in the task state store of AIP-103 (Airflow 3.3), which keeps small values for one
task instance across its tries (images are large: configure ``[workers] state_store_backend``
to keep them in object storage rather than the metadata database). The triggerer cannot reach
it, so the worker settles the ledger, after the run or on resuming from the trigger. Without a
store (a bare ``execute()`` call) there is no ledger.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_cometapi.pipeline.records import ItemResult

PAID = "cometapi.paid."
PAID_INDEX = "cometapi.paid"
PARKED = "cometapi.parked."
PARKED_INDEX = "cometapi.parked"
"""Each index lists the fingerprints with an entry, so that a try reads one key to find them."""


def parked(context: Context) -> dict[str, dict[str, Any]]:
    """The edits earlier tries paid for but could not deliver, by fingerprint:
    ``{"request_id", "usage", "images": [{"mime_type", "b64"}, ...]}`` each."""
    store: Any = context.get("task_state_store")
    if store is None:
        return {}
    found = {key: store.get(PARKED + key) for key in store.get(PARKED_INDEX) or []}
    return {key: entry for key, entry in found.items() if entry}


def settle(context: Context, results: list[ItemResult], log: Any) -> list[ItemResult]:
    """Record the payments this try could not deliver and park their images; attach to each
    result the undelivered payments of earlier tries for the same edit."""
    store: Any = context.get("task_state_store")
    if store is None:
        for result in results:
            if result.parked:
                log.warning(
                    "No task state store: the paid images of %s are not kept", result.source
                )
        return [replace(result, parked=[]) for result in results]
    indexes = {name: list(store.get(name) or []) for name in (PAID_INDEX, PARKED_INDEX)}
    before = {name: list(keys) for name, keys in indexes.items()}
    try_number = getattr(context["ti"], "try_number", 1)
    settled = [_settle(store, result, try_number, indexes, log) for result in results]
    for name, keys in indexes.items():
        if keys != before[name]:
            store.set(name, keys)
    return settled


def _settle(
    store: Any,
    result: ItemResult,
    try_number: int,
    indexes: dict[str, list[str]],
    log: Any,
) -> ItemResult:
    key = result.fingerprint
    if key is None:  # failed before its inputs were read: never paid
        return result
    paid, parked_keys = indexes[PAID_INDEX], indexes[PARKED_INDEX]
    payments: list[dict[str, Any]] = list(store.get(PAID + key) or []) if key in paid else []
    undelivered = result.paid and not result.reused and result.error is not None
    if undelivered and result.request_id not in {p["request_id"] for p in payments}:
        payment = {
            "request_id": result.request_id,
            "usage": result.usage,
            "images": result.images,
            "try_number": try_number,
            **({"cost": result.cost} if result.cost is not None else {}),
        }
        store.set(PAID + key, [*payments, payment])
        paid.extend([key] if key not in paid else [])
    if result.parked:
        entry = {"request_id": result.request_id, "usage": result.usage, "images": result.parked}
        store.set(PARKED + key, entry)
        parked_keys.extend([key] if key not in parked_keys else [])
        log.warning(
            "Kept the %d paid image(s) of %s in the task state store: a retry delivers them "
            "without paying again",
            len(result.parked),
            result.source,
        )
    elif result.error is None and key in parked_keys:  # delivered now: forget the images
        store.delete(PARKED + key)
        parked_keys.remove(key)
    earlier = [payment for payment in payments if payment["request_id"] != result.request_id]
    return replace(result, earlier=earlier, parked=[])
