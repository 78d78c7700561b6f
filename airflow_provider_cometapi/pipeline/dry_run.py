"""A dry run: read and check every item as a real run would, count what it would send, and
estimate the cost where the user's prices make that computable; nothing is sent or written."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.pricing import estimate, money
from airflow_provider_cometapi.pipeline.item import ItemJob
from airflow_provider_cometapi.pipeline.progress import BatchLog
from airflow_provider_cometapi.storage import manifests

if TYPE_CHECKING:
    from airflow_provider_cometapi.api.pricing import Pricing
    from airflow_provider_cometapi.api.request import EditParams
    from airflow_provider_cometapi.pipeline.plans import ItemPlan
    from airflow_provider_cometapi.pipeline.scope import TaskScope

MAX_ERRORS = 10
"""Invalid items named one by one in the result."""


def dry_run(
    plans: list[ItemPlan],
    params: EditParams,
    scope: TaskScope,
    pricing: Pricing | None,
    log: Any,
) -> dict[str, Any]:
    """What a run would do: ``items``, ``requests``, ``images``, ``reused`` (proven by a
    manifest), ``invalid`` (with the first ``errors``); ``estimated_output_tokens`` when every
    request's model and size have ``output_tokens_per_image``; ``estimated_cost`` (and
    ``currency``) when every request's cost is computable before sending (``estimate``)."""
    batch_log = BatchLog(log, len(plans))
    counts = {"requests": 0, "images": 0, "reused": 0, "invalid": 0}
    errors: list[dict[str, str]] = []
    tokens: int | None = 0
    cost: Decimal | None = Decimal(0)
    for position, plan in enumerate(plans):
        job = ItemJob(position, plan, params, scope, batch_log)
        failed = job.check()
        if failed is not None:
            assert failed.error is not None
            counts["invalid"] += 1
            if len(errors) < MAX_ERRORS:
                errors.append({"source": failed.source, "error": failed.error["message"]})
            continue
        if _reusable(job, scope):
            counts["reused"] += 1
            continue
        n = job.params.n or 1
        counts["requests"] += 1
        counts["images"] += n
        price = pricing.price_of(job.params.model) if pricing is not None else None
        per_image = _output_tokens(price, job.params.size)
        tokens = None if tokens is None or per_image is None else tokens + per_image * n
        edit = estimate(price, size=job.params.size, n=n, requests=1) if price else None
        cost = None if cost is None or edit is None else cost + edit
    result: dict[str, Any] = {"items": len(plans), **counts, "errors": errors}
    if tokens is not None:
        result["estimated_output_tokens"] = tokens
    if pricing is not None:
        if cost is not None:
            result["estimated_cost"] = money(cost)
        result["currency"] = pricing.currency
    return result


def _reusable(job: ItemJob, scope: TaskScope) -> bool:
    """Whether a run would reuse the item's outputs instead of sending it."""
    if job.sink is None or not job.plan.output_path:
        return False
    found = manifests.look_up(job.sink, job.key)
    return found.record is not None and (scope.reuse_outputs or scope.paid_for(found.record))


def _output_tokens(price: Any, size: str | None) -> int | None:
    if price is None or size is None:
        return None
    count = price.output_tokens_per_image.get(size)
    return int(count) if count is not None else None
