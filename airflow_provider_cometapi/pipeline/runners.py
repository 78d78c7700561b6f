"""The two runners of a batch: worker threads, and tasks on the triggerer's event loop.

Both take the items in order, keep twice ``limit`` items under way (reading and checking
ahead while ``limit`` requests are in flight), and run each item's ``item_steps`` against the
same gate rule; they differ only in how they wait and send.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.exceptions import CometAPIBudgetError
from airflow_provider_cometapi.pipeline.gate import AsyncGate, OrderedGate, ThreadGate
from airflow_provider_cometapi.pipeline.item import ItemJob
from airflow_provider_cometapi.pipeline.plans import ItemPlan
from airflow_provider_cometapi.pipeline.progress import BatchLog
from airflow_provider_cometapi.pipeline.records import ItemResult, with_cost
from airflow_provider_cometapi.pipeline.steps import Blocking, ItemSteps, Step, Turn
from airflow_provider_cometapi.storage.probe import ProbedFolders

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping

    from airflow_provider_cometapi.api.pricing import Pricing
    from airflow_provider_cometapi.api.request import EditParams
    from airflow_provider_cometapi.hooks.cometapi import CometApiHook
    from airflow_provider_cometapi.hooks.cometapi_async import AsyncCometApiClient
    from airflow_provider_cometapi.pipeline.budget import Budget
    from airflow_provider_cometapi.pipeline.scope import TaskScope
    from airflow_provider_cometapi.storage.report import ReportParts

Work = ItemPlan | ItemResult
"""An item to run, or one already settled (it failed its checks before deferring)."""


def check_in_order(
    plans: list[ItemPlan],
    params: EditParams,
    scope: TaskScope,
    *,
    on_item_failure: str,
    log: Any,
    parked: Mapping[str, Any] | None = None,
) -> list[Work]:
    """Check the items in order on the worker before deferring, by the gate's rule: under
    ``fail`` the first item that fails its checks settles every item after it as not started.
    An item an earlier try paid for but could not deliver is delivered here (see ``parked``)."""
    work: list[Work] = []
    stopped = False
    batch_log = BatchLog(log, len(plans))
    for position, plan in enumerate(plans):
        if stopped:
            work.append(ItemResult.not_started(plan.label))
            continue
        job = ItemJob(position, plan, params, scope, batch_log, parked=parked)
        settled = job.check()
        if settled is None and job.key in job.parked:
            settled = job.prepare()
        work.append(settled or plan)
        stopped = settled is not None and settled.error is not None and on_item_failure == "fail"
    return work


def run_in_threads(
    work: list[Work],
    params: EditParams,
    scope: TaskScope,
    hook: CometApiHook,
    *,
    limit: int,
    on_item_failure: str,
    log: Any,
    parked: Mapping[str, Any] | None = None,
    report: ReportParts | None = None,
    budget: Budget | None = None,
) -> list[ItemResult]:
    """Run the items on worker threads, each with its own HTTP session; results in order.

    :param parked: edits earlier tries paid for but could not deliver, delivered instead of sent.
    :param report: where each item's line is written as it finishes.
    :param budget: the token or cost budget the items are sent under, if any.
    """
    gate = ThreadGate(len(work), limit, stop_on_failure=on_item_failure == "fail", budget=budget)
    batch = _Batch(work, gate, log, report, _Prices(params, hook.settings.pricing))
    probes = ProbedFolders()
    local, hooks = threading.local(), []

    def run(position: int, plan: ItemPlan) -> ItemResult | None:
        if gate.refuses(position):
            return None
        if not hasattr(local, "hook"):
            local.hook = hook.fork()
            hooks.append(local.hook)
        job = ItemJob(position, plan, params, scope, batch.log, probes, parked)
        steps = ItemSteps(job, gate)
        try:
            for step in steps:
                try:
                    steps.answer(_perform(step, job, gate, local.hook))
                except Exception as exc:
                    steps.fail(exc)
        except BaseException:
            steps.stopped()
            raise
        return steps.result

    import requests  # noqa: F401 - imported once here, not by every thread at once

    pool = ThreadPoolExecutor(max_workers=2 * limit)
    batch.log.start(limit, report.location if report else None)
    running: dict[Future[ItemResult | None], int] = {}
    try:
        while True:
            for position, plan in batch.more(2 * limit - len(running)):
                running[pool.submit(run, position, plan)] = position
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                batch.finished(running.pop(future), future.result())
            if batch.report_due:
                batch.write_report()
    finally:  # stopped (a timeout, the task killed): no waiting item may send
        gate.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        for forked in hooks:
            forked.close()
        batch.publish_budget()
    results = batch.results()
    batch.write_report()
    return results


async def run_in_tasks(
    work: list[Work],
    params: EditParams,
    scope: TaskScope,
    client: AsyncCometApiClient,
    *,
    limit: int,
    on_item_failure: str,
    log: Any,
    report: ReportParts | None = None,
    budget: Budget | None = None,
) -> list[ItemResult]:
    """Run the items as tasks on the event loop, blocking steps in threads; results in order.

    :param report: where each item's line is written as it finishes.
    :param budget: the token or cost budget the items are sent under, if any.
    """
    gate = AsyncGate(len(work), limit, stop_on_failure=on_item_failure == "fail", budget=budget)
    batch = _Batch(work, gate, log, report, _Prices(params, client.settings.pricing))
    probes = ProbedFolders()

    async def run(position: int, plan: ItemPlan) -> ItemResult | None:
        if gate.refuses(position):
            return None
        job = ItemJob(position, plan, params, scope, batch.log, probes)
        steps = ItemSteps(job, gate)
        try:
            for step in steps:
                try:
                    steps.answer(await _perform_async(step, job, gate, client))
                except Exception as exc:
                    steps.fail(exc)
        except BaseException:  # cancelled (the triggerer is stopping): leave nothing staged
            steps.stopped()
            raise
        return steps.result

    batch.log.start(limit, report.location if report else None)
    running: dict[asyncio.Future[ItemResult | None], int] = {}
    try:
        while True:
            for position, plan in batch.more(2 * limit - len(running)):
                running[asyncio.ensure_future(run(position, plan))] = position
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                batch.finished(running.pop(task), task.result())
            if batch.report_due:
                await asyncio.to_thread(batch.write_report)
    finally:
        gate.stop()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await asyncio.to_thread(batch.publish_budget)
    results = batch.results()
    await asyncio.to_thread(batch.write_report)
    return results


def _perform(step: Step, job: ItemJob, gate: ThreadGate, hook: CometApiHook) -> Any:
    """Do one step on this thread."""
    if isinstance(step, Blocking):
        return step.call()
    if isinstance(step, Turn):
        return gate.turn(job.position, sending=step.sending)
    return job.send(hook.run_edit)


async def _perform_async(
    step: Step, job: ItemJob, gate: AsyncGate, client: AsyncCometApiClient
) -> Any:
    """Do one step on the loop: blocking ones in a thread."""
    if isinstance(step, Blocking):
        return await asyncio.to_thread(step.call)
    if isinstance(step, Turn):
        return await gate.turn(job.position, sending=step.sending)
    return await job.send(client.run_edit)


class _Batch:
    """What both runners keep: results by position, in order, whatever order items finish in;
    the batch's log; and its report's lines, added as items finish."""

    def __init__(
        self,
        work: list[Work],
        gate: OrderedGate,
        log: Any,
        report: ReportParts | None,
        prices: _Prices,
    ) -> None:
        self.work, self.gate, self.report, self.prices = work, gate, report, prices
        self.log = BatchLog(log, len(work))
        self._results: list[ItemResult | None] = [None] * len(work)
        self._report_failed = False
        self._to_run = self._plans()

    def more(self, room: int) -> list[tuple[int, ItemPlan]]:
        """Up to ``room`` more plans to start, in order, with their positions: a runner keeps
        twice ``limit`` items under way, not the whole batch, so waiting on them stays cheap."""
        return list(itertools.islice(self._to_run, max(room, 0)))

    def _plans(self) -> Generator[tuple[int, ItemPlan], None, None]:
        """The plans to run with their positions; settled items are recorded on the way."""
        for position, item in enumerate(self.work):
            if isinstance(item, ItemResult):
                if item.error is not None:
                    self.gate.check_failed(position)
                self.gate.leave(position)
                self.finished(position, item)
            else:
                yield position, item

    def finished(self, position: int, result: ItemResult | None) -> None:
        """Record an item's result (``None``: never started) with its cost; count and report
        it if started."""
        if result is not None:
            result = self.prices.priced(self.work[position], result)
        self._results[position] = result
        if result is not None and result.started:
            self.log.add(result)
            if self.report is not None:
                self.report.add(result.report_line(position))

    def results(self) -> list[ItemResult]:
        """Every item's result in order (an item never started is recorded, and reported, as
        such), after the batch's end line."""
        self.log.finish()
        results = []
        for position, (item, result) in enumerate(zip(self.work, self._results, strict=True)):
            if result is None and position in self.gate.over_budget:
                result = ItemResult.not_started(_label(item), self._over_budget())
            if result is None or not result.started:
                result = result or ItemResult.not_started(_label(item))
                if self.report is not None:
                    self.report.add(result.report_line(position))
            results.append(result)
        return results

    def _over_budget(self) -> CometAPIBudgetError:
        assert self.gate.budget is not None
        return CometAPIBudgetError(
            f"not started: the budget ({self.gate.budget.label}) was reached"
        )

    def publish_budget(self) -> None:
        """Tell a run-wide budget that none of this batch's requests is in flight any more
        (blocking; a storage failure is logged, not raised over the batch's own outcome)."""
        if self.gate.budget is None:
            return
        try:
            self.gate.budget.publish(0)
        except Exception as exc:
            self.log.log.warning("Could not update the run's budget ledger: %s", exc)

    @property
    def report_due(self) -> bool:
        """Whether a part of the report is due."""
        return self.report is not None and self.report.due

    def write_report(self) -> None:
        """Write the report's waiting lines as a part (blocking); a storage failure is logged
        once, and the lines wait for the next part."""
        if self.report is None:
            return
        try:
            self.report.write()
        except Exception as exc:
            if not self._report_failed:
                self.log.log.warning("Could not write a part of the report: %s", exc)
            self._report_failed = True


class _Prices:
    """The cost of each item's usage by the user's prices, for its own model."""

    def __init__(self, params: EditParams, pricing: Pricing | None) -> None:
        self.params, self.pricing = params, pricing

    def priced(self, item: Work, result: ItemResult) -> ItemResult:
        """``result`` with its cost, when its model has a price."""
        params = item.params if isinstance(item, ItemPlan) and item.params else self.params
        return with_cost(result, self.pricing, params.model)


def _label(item: Work) -> str:
    return item.source if isinstance(item, ItemResult) else item.label
