"""CometImageEditTrigger: runs deferred edits on the triggerer, many in flight at once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_cometapi.pipeline.records import ItemResult


class CometImageEditTrigger(BaseTrigger):
    """
    Edit every item with an async HTTP client, write the outputs, then fire one small event.

    It runs the item pipeline the worker runs, under the same request gate. Its arguments and
    its event stay small whatever the number of items: the items' plans are a file in storage,
    and each item's line goes to the batch report's parts as it finishes. The event carries the
    ``summary`` and, when there is no report (a single edit) or a part could not be written,
    the lines themselves; and the images of edits paid for but not written (``parked``).

    :param plan: the URI of the plan file (``storage/staging.py``): per item, its plan to run, or
        its result when the worker settled it (it failed its checks, or never started).
    :param conn_id: the connection for the plan file and the report (the output connection).
    :param params: ``EditParams`` fields.
    :param scope: ``TaskScope`` fields: the task instance, ``reuse_outputs`` and ``replace``.
    :param cometapi_conn_id: the ``cometapi`` connection.
    :param max_concurrency: edits in flight at once.
    :param on_item_failure: ``fail`` starts no new item after a failure; ``continue`` goes on.
    :param report: the batch report's URI (``None``: no report).
    :param budget: ``BudgetSpec`` fields, when the items are sent under a budget.
    """

    def __init__(
        self,
        *,
        plan: str,
        conn_id: str | None,
        params: dict[str, Any],
        scope: dict[str, Any],
        cometapi_conn_id: str,
        max_concurrency: int = 1,
        on_item_failure: str = "fail",
        report: str | None = None,
        budget: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.plan = plan
        self.conn_id = conn_id
        self.params = params
        self.scope = scope
        self.cometapi_conn_id = cometapi_conn_id
        self.max_concurrency = max_concurrency
        self.on_item_failure = on_item_failure
        self.report = report
        self.budget = budget

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and keyword arguments (JSON-friendly, no bytes, no per-item data)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "plan": self.plan,
                "conn_id": self.conn_id,
                "params": self.params,
                "scope": self.scope,
                "cometapi_conn_id": self.cometapi_conn_id,
                "max_concurrency": self.max_concurrency,
                "on_item_failure": self.on_item_failure,
                "report": self.report,
                "budget": self.budget,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Edit the items with at most ``max_concurrency`` in flight; yield one event."""
        from airflow_provider_cometapi.api.request import EditParams
        from airflow_provider_cometapi.hooks.cometapi_async import AsyncCometApiClient
        from airflow_provider_cometapi.pipeline.budget import BudgetSpec
        from airflow_provider_cometapi.pipeline.runners import run_in_tasks
        from airflow_provider_cometapi.pipeline.scope import TaskScope
        from airflow_provider_cometapi.storage.report import ReportParts
        from airflow_provider_cometapi.storage.staging import read_plan

        scope = TaskScope.from_json(self.scope)
        work = await asyncio.to_thread(read_plan, self.plan, self.conn_id)
        parts = ReportParts(self.report, self.conn_id, scope.try_number) if self.report else None
        client = await AsyncCometApiClient.connect(
            self.cometapi_conn_id, connections=self.max_concurrency
        )
        budget = (
            BudgetSpec(**self.budget).budget(
                pricing=client.settings.pricing, scope=scope, conn_id=self.conn_id
            )
            if self.budget
            else None
        )
        try:
            results = await run_in_tasks(
                work,
                EditParams(**self.params),
                scope,
                client,
                limit=self.max_concurrency,
                on_item_failure=self.on_item_failure,
                log=self.log,
                report=parts,
                budget=budget,
            )
        finally:
            await client.aclose()
        yield TriggerEvent(self._event(results, parts))

    def _event(self, results: list[ItemResult], parts: Any) -> dict[str, Any]:
        """The event: the summary, the lines no report part holds, the parked images."""
        from airflow_provider_cometapi.pipeline.records import summary, usage_report

        lines = (
            parts.unwritten()
            if parts is not None
            else [result.report_line(p) for p, result in enumerate(results)]
        )
        return {
            "summary": summary(results, usage_report(results)),
            "lines": lines,
            "parked": {str(p): result.parked for p, result in enumerate(results) if result.parked},
        }
