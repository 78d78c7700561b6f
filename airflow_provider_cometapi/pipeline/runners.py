"""The two runners of a batch: worker threads, and tasks on the triggerer's event loop.

Both take the items in order, keep twice ``limit`` items under way (reading and checking
ahead while ``limit`` requests are in flight), and run each item's ``item_steps`` against the
same gate rule; they differ only in how they wait and send.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.pipeline.gate import AsyncGate, OrderedGate, ThreadGate
from airflow_provider_cometapi.pipeline.item import ItemJob
from airflow_provider_cometapi.pipeline.plans import ItemPlan
from airflow_provider_cometapi.pipeline.records import BatchProgress, ItemResult
from airflow_provider_cometapi.pipeline.steps import Blocking, ItemSteps, Step, Turn
from airflow_provider_cometapi.storage.probe import ProbedFolders

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping

    from airflow_provider_cometapi.api.request import EditParams
    from airflow_provider_cometapi.hooks.cometapi import CometApiHook
    from airflow_provider_cometapi.hooks.cometapi_async import AsyncCometApiClient
    from airflow_provider_cometapi.pipeline.scope import TaskScope

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
    for position, plan in enumerate(plans):
        if stopped:
            work.append(ItemResult.not_started(plan.label))
            continue
        job = ItemJob(position, plan, params, scope, log, parked=parked)
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
) -> list[ItemResult]:
    """Run the items on worker threads, each with its own HTTP session; results in order.

    :param parked: edits earlier tries paid for but could not deliver, delivered instead of sent.
    """
    gate = ThreadGate(len(work), limit, stop_on_failure=on_item_failure == "fail")
    batch, probes = _Batch(work, gate, log), ProbedFolders()
    local, hooks = threading.local(), []

    def run(position: int, plan: ItemPlan) -> ItemResult | None:
        if gate.refuses(position):
            return None
        if not hasattr(local, "hook"):
            local.hook = hook.fork()
            hooks.append(local.hook)
        job = ItemJob(position, plan, params, scope, log, probes, parked)
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
    try:
        running = {pool.submit(run, p, plan): p for p, plan in batch.to_run()}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                batch.finished(running.pop(future), future.result())
    finally:  # stopped (a timeout, the task killed): no waiting item may send
        gate.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        for forked in hooks:
            forked.close()
    return batch.results()


async def run_in_tasks(
    work: list[Work],
    params: EditParams,
    scope: TaskScope,
    client: AsyncCometApiClient,
    *,
    limit: int,
    on_item_failure: str,
    log: Any,
) -> list[ItemResult]:
    """Run the items as tasks on the event loop, blocking steps in threads; results in order."""
    gate = AsyncGate(len(work), limit, stop_on_failure=on_item_failure == "fail")
    batch, probes = _Batch(work, gate, log), ProbedFolders()
    under_way = asyncio.Semaphore(2 * limit)

    async def run(position: int, plan: ItemPlan) -> ItemResult | None:
        async with under_way:
            if gate.refuses(position):
                return None
            job = ItemJob(position, plan, params, scope, log, probes)
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

    running = {asyncio.ensure_future(run(p, plan)): p for p, plan in batch.to_run()}
    try:
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                batch.finished(running.pop(task), task.result())
    finally:
        gate.stop()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    return batch.results()


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
    """What both runners keep: results by position, in order, whatever order items finish in,
    and the progress line."""

    def __init__(self, work: list[Work], gate: OrderedGate, log: Any) -> None:
        self.work, self.gate = work, gate
        self.progress = BatchProgress(log, len(work))
        self._results: list[ItemResult | None] = [None] * len(work)

    def to_run(self) -> Generator[tuple[int, ItemPlan], None, None]:
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
        """Record an item's result (``None``: never started) and count it if it started."""
        self._results[position] = result
        if result is not None and result.started:
            self.progress.add(result)

    def results(self) -> list[ItemResult]:
        """Every item's result in order; an item never started is recorded as such."""
        return [
            result if result is not None else ItemResult.not_started(_label(item))
            for item, result in zip(self.work, self._results, strict=True)
        ]


def _label(item: Work) -> str:
    return item.source if isinstance(item, ItemResult) else item.label
