"""CometImageEditTrigger: runs deferred edits on the triggerer, many in flight at once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_cometapi.editing import BatchProgress


class CometImageEditTrigger(BaseTrigger):
    """
    Edit every item with an async HTTP client, write the outputs, then fire one small event.

    Its keyword arguments hold paths and parameters only, never image bytes; so does the event
    (``{"items": [{source, outputs, usage, request_id, retries, error}], "staged": [...]}``).

    :param items: ``ItemPlan`` fields of each item, as dicts.
    :param params: ``EditParams`` fields.
    :param cometapi_conn_id: the ``cometapi`` connection.
    :param max_concurrency: edits in flight at once.
    :param on_item_failure: ``fail`` starts no new item after a failure; ``continue`` goes on.
    :param settled: per item, a result already known (it failed its checks) or ``None``.
    :param staged: inputs staged by the worker, echoed back for clean-up.
    """

    def __init__(
        self,
        *,
        items: list[dict[str, Any]],
        params: dict[str, Any],
        cometapi_conn_id: str,
        max_concurrency: int = 1,
        on_item_failure: str = "fail",
        settled: list[dict[str, Any] | None] | None = None,
        staged: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.items = items
        self.params = params
        self.cometapi_conn_id = cometapi_conn_id
        self.max_concurrency = max_concurrency
        self.on_item_failure = on_item_failure
        self.settled = settled or [None] * len(items)
        self.staged = staged or []

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and keyword arguments (JSON-friendly, no bytes)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "items": self.items,
                "params": self.params,
                "cometapi_conn_id": self.cometapi_conn_id,
                "max_concurrency": self.max_concurrency,
                "on_item_failure": self.on_item_failure,
                "settled": self.settled,
                "staged": self.staged,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Edit the items with at most ``max_concurrency`` in flight; yield one event."""
        from airflow_provider_cometapi.editing import BatchProgress, EditParams, ItemPlan
        from airflow_provider_cometapi.hooks.cometapi_async import AsyncCometApiClient

        params = EditParams(**self.params)
        plans = [ItemPlan(**item) for item in self.items]
        gate = asyncio.Semaphore(self.max_concurrency)
        progress = BatchProgress(self.log, len(plans))
        self._failed = False
        client = await AsyncCometApiClient.connect(self.cometapi_conn_id)
        try:
            results = await asyncio.gather(
                *(
                    self._settle(client, gate, progress, plan, params, known)
                    for plan, known in zip(plans, self.settled, strict=True)
                )
            )
        finally:
            await client.aclose()
        yield TriggerEvent({"items": results, "staged": self.staged})

    async def _settle(
        self,
        client: Any,
        gate: asyncio.Semaphore,
        progress: BatchProgress,
        plan: Any,
        params: Any,
        known: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """One item in its turn: its known result or its edit, counted in the progress line."""
        from airflow_provider_cometapi.editing import not_started

        async with gate:  # taken in order, as on the worker
            if known is None and self._failed and self.on_item_failure == "fail":
                return not_started(plan.label)
            result = known if known is not None else await self._edit(client, plan, params)
            self._failed = self._failed or bool(result["error"])
            progress.add(result)
            return result

    async def _edit(self, client: Any, plan: Any, params: Any) -> dict[str, Any]:
        """Read inputs, edit, commit; a failure becomes the item's error."""
        from airflow_provider_cometapi.editing import item_result, manifest_record, reused_result
        from airflow_provider_cometapi.storage import manifests

        sink = None
        try:
            request, sink, key, done = await asyncio.to_thread(_look_up, plan, params)
            if done is not None:
                self.log.info("Not editing %s again: its outputs are complete", plan.label)
                return reused_result(plan.label, done)
            outcome = await client.run_edit(request, sink, idempotency_key=key)
            outputs = await asyncio.to_thread(sink.commit)
            result = item_result(plan.label, outputs=outputs, outcome=outcome)
            try:
                await asyncio.to_thread(manifests.save, sink, key, manifest_record(result))
            except Exception as exc:  # the outputs stand; a retry would pay again
                self.log.warning("Could not write the manifest of %s: %s", plan.label, exc)
            return result
        except Exception as exc:  # every failure becomes this item's error
            if sink is not None:
                await asyncio.to_thread(sink.discard)
            return item_result(plan.label, error=exc)
        except BaseException:  # cancelled (triggerer stopping): leave nothing staged
            if sink is not None:
                sink.discard()
            raise


def _look_up(plan: Any, params: Any) -> tuple[Any, Any, str, dict[str, Any] | None]:
    """Read and check an item, fingerprint it and look for its manifest (all blocking work)."""
    from airflow_provider_cometapi.editing import fingerprint, prepare_item
    from airflow_provider_cometapi.storage import manifests

    request, sink = prepare_item(plan, params)
    key = fingerprint(request, plan)
    return request, sink, key, manifests.load_completed(sink, key)
