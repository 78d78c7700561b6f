"""CometImageEditTrigger: runs deferred edits on the triggerer, many in flight at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class CometImageEditTrigger(BaseTrigger):
    """
    Edit every item with an async HTTP client, write the outputs, then fire one small event.

    It runs the item pipeline the worker runs, under the same request gate. Its keyword
    arguments hold paths and parameters only, never image bytes; so does the event
    (``{"items": [ItemResult JSON, ...], "staged": [...]}``).

    :param items: per item, ``{"plan": ItemPlan JSON}`` to run it, or ``{"result": ItemResult
        JSON}`` when the worker already settled it (it failed its checks, or never started).
    :param params: ``EditParams`` fields.
    :param scope: ``TaskScope`` fields: the task instance, ``reuse_outputs`` and ``replace``.
    :param cometapi_conn_id: the ``cometapi`` connection.
    :param max_concurrency: edits in flight at once.
    :param on_item_failure: ``fail`` starts no new item after a failure; ``continue`` goes on.
    :param staged: inputs staged by the worker, echoed back for clean-up.
    """

    def __init__(
        self,
        *,
        items: list[dict[str, Any]],
        params: dict[str, Any],
        scope: dict[str, Any],
        cometapi_conn_id: str,
        max_concurrency: int = 1,
        on_item_failure: str = "fail",
        staged: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.items = items
        self.params = params
        self.scope = scope
        self.cometapi_conn_id = cometapi_conn_id
        self.max_concurrency = max_concurrency
        self.on_item_failure = on_item_failure
        self.staged = staged or []

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and keyword arguments (JSON-friendly, no bytes)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "items": self.items,
                "params": self.params,
                "scope": self.scope,
                "cometapi_conn_id": self.cometapi_conn_id,
                "max_concurrency": self.max_concurrency,
                "on_item_failure": self.on_item_failure,
                "staged": self.staged,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Edit the items with at most ``max_concurrency`` in flight; yield one event."""
        from airflow_provider_cometapi.api.request import EditParams
        from airflow_provider_cometapi.hooks.cometapi_async import AsyncCometApiClient
        from airflow_provider_cometapi.pipeline.plans import ItemPlan
        from airflow_provider_cometapi.pipeline.records import ItemResult
        from airflow_provider_cometapi.pipeline.runners import Work, run_in_tasks
        from airflow_provider_cometapi.pipeline.scope import TaskScope

        work: list[Work] = [
            ItemPlan.from_json(item["plan"])
            if "plan" in item
            else ItemResult.from_json(item["result"])
            for item in self.items
        ]
        client = await AsyncCometApiClient.connect(self.cometapi_conn_id)
        try:
            results = await run_in_tasks(
                work,
                EditParams(**self.params),
                TaskScope.from_json(self.scope),
                client,
                limit=self.max_concurrency,
                on_item_failure=self.on_item_failure,
                log=self.log,
            )
        finally:
            await client.aclose()
        yield TriggerEvent(
            {"items": [result.to_json() for result in results], "staged": self.staged}
        )
