"""One item's way through the pipeline, written once for worker threads and the triggerer.

``ItemJob`` holds the item's blocking steps; ``item_steps`` runs them in order around the
request gate and the transport, yielding each step for a runner to perform: the worker runs
them in its thread, the triggerer runs blocking ones with ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.request import edit_request
from airflow_provider_cometapi.exceptions import CometAPIAuthError
from airflow_provider_cometapi.pipeline.records import ItemResult
from airflow_provider_cometapi.storage import manifests
from airflow_provider_cometapi.storage.outputs import StagedOutputs
from airflow_provider_cometapi.storage.sources import read_all, source_stem

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from airflow_provider_cometapi.api.request import EditParams, EditRequest
    from airflow_provider_cometapi.api.results import EditOutcome
    from airflow_provider_cometapi.pipeline.gate import OrderedGate
    from airflow_provider_cometapi.pipeline.plans import ItemPlan


class ItemJob:
    """One item's steps but the gate: check, look up, send, commit, give up. Only ``send``
    raises: every other step turns a failure into the item's failed result.

    :param position: the item's place in the batch, for the request gate.
    """

    def __init__(self, position: int, plan: ItemPlan, params: EditParams, log: Any) -> None:
        self.position, self.plan, self.params, self.log = position, plan, params, log
        self.request: EditRequest | None = None
        self.sink: StagedOutputs | None = None
        self.key = ""

    @property
    def label(self) -> str:
        """The item's name in logs and records."""
        return self.plan.label

    def check(self) -> ItemResult | None:
        """Read and check the inputs and fingerprint the edit; the failed result, or ``None``."""
        plan = self.plan
        try:
            sources = read_all(plan.sources, "image")
            mask = plan.mask.read("mask") if plan.mask is not None else None
            self.request = edit_request(sources, self.params, mask=mask)
        except Exception as exc:
            return self.failed(exc)
        self.sink = StagedOutputs(
            plan.output_path,
            stem=source_stem(sources[0][0]),
            map_index=plan.map_index,
            conn_id=plan.output_conn_id,
        )
        self.key = fingerprint(self.request, plan)
        return None

    def prepare(self) -> ItemResult | None:
        """Check, then look for a manifest: a result when the item is settled (failed its
        checks, or done by an earlier run), ``None`` when its request is to be sent."""
        failed = self.check()
        if failed is not None:
            return failed
        assert self.sink is not None
        try:
            done = manifests.load_completed(self.sink, self.key)
        except Exception as exc:  # the output location itself cannot be used
            return self.failed(exc)
        if done is None:
            return None
        self.log.info(
            "Not editing %s again: its outputs are complete (request %s); reusing them",
            self.label,
            done.get("request_id"),
        )
        return ItemResult.reused_from(self.label, done)

    def send(self, run_edit: Callable[..., Any]) -> Any:
        """The item's request, sent by a transport's ``run_edit`` (an outcome, or awaitable)."""
        assert self.request is not None
        assert self.sink is not None
        return run_edit(self.request, self.sink, idempotency_key=self.key, label=self.label)

    def finish(self, outcome: EditOutcome) -> ItemResult:
        """Commit the streamed outputs, then save the manifest that proves them paid for."""
        assert self.sink is not None
        try:
            outputs = self.sink.commit()
        except Exception as exc:  # commit() has removed what it staged or moved
            return self.failed(exc)
        for uri in outputs:
            self.log.info("Wrote %s", uri)
        result = ItemResult.edited(self.label, outputs, outcome)
        try:
            manifests.save(self.sink, self.key, result.manifest_record())
        except Exception as exc:  # the outputs stand; only a retry would pay again
            self.log.warning("Could not write the manifest of %s: %s", self.label, exc)
        return result

    def failed(self, error: BaseException) -> ItemResult:
        """Leave nothing staged, log the failure, and record it."""
        self.abandon()
        self.log.warning("Edit of %s failed: %s", self.label, error)
        return ItemResult.failed(self.label, error)

    def abandon(self) -> None:
        """Remove whatever was staged (best effort)."""
        if self.sink is not None:
            self.sink.discard()


@dataclass(frozen=True)
class Blocking:
    """A step that blocks: storage or CPU work, run in a thread off the triggerer's loop."""

    call: Callable[[], Any]


@dataclass(frozen=True)
class Turn:
    """The step that waits for the item's turn at the gate; answers whether it may go on.

    :param sending: the item will send a request (counted against the limit).
    """

    sending: bool


class Send:
    """The step that sends the item's request; answers the ``EditOutcome``."""


Step = Blocking | Turn | Send
SEND = Send()


def item_steps(job: ItemJob, gate: OrderedGate) -> Generator[Step, Any, ItemResult | None]:
    """The item's steps in order; a runner performs each and sends back its answer (or throws
    its error). Returns the item's result, or ``None`` when it was never started."""
    settled = yield Blocking(job.prepare)
    if settled is not None and settled.error is not None:
        gate.check_failed(job.position)
    if not (yield Turn(sending=settled is None)):
        yield Blocking(job.abandon)
        return None
    if settled is not None:
        return settled
    try:
        outcome = yield SEND
    except Exception as exc:  # refused, or failed for good: the gate stops under 'fail'
        gate.answered(ok=False)
        if isinstance(exc, CometAPIAuthError):  # no other request could succeed either
            gate.stop()
        return (yield Blocking(partial(job.failed, exc)))
    gate.answered(ok=True)
    result = yield Blocking(partial(job.finish, outcome))
    if result.error is not None:
        gate.commit_failed()
    return result


class ItemSteps:
    """Iterate it for an item's steps; tell it each step's answer or error.

    What both runners share of driving ``item_steps``: the result when the steps end, and,
    when the runner itself is stopped, a gate that starts nothing more and nothing left staged.
    """

    def __init__(self, job: ItemJob, gate: OrderedGate) -> None:
        self._job, self._gate = job, gate
        self._steps = item_steps(job, gate)
        self._answer: Any = None
        self._error: Exception | None = None
        self.result: ItemResult | None = None

    def __iter__(self) -> ItemSteps:
        return self

    def __next__(self) -> Step:
        answer, error = self._answer, self._error
        self._answer, self._error = None, None
        try:
            return self._steps.throw(error) if error is not None else self._steps.send(answer)
        except StopIteration as done:
            self.result = done.value
            raise StopIteration from None
        except Exception as exc:  # a step failed that should not: this item fails, not the batch
            self._gate.check_failed(self._job.position)
            self._gate.leave(self._job.position)
            self.result = self._job.failed(exc)
            raise StopIteration from None

    def answer(self, value: Any) -> None:
        """The answer of the step just performed."""
        self._answer = value

    def fail(self, error: Exception) -> None:
        """The error of the step just performed."""
        self._error = error

    def stopped(self) -> None:
        """The runner is being stopped (a timeout, the task killed, the triggerer ending)."""
        self._gate.stop()
        self._job.abandon()


def fingerprint(request: EditRequest, plan: ItemPlan) -> str:
    """sha256 over the input bytes, the mask, every sent field and where the outputs go."""
    digest = hashlib.sha256()
    for part in [*request.images, *([request.mask] if request.mask else [])]:
        digest.update(len(part.data).to_bytes(8, "big"))
        digest.update(part.data)
    where = {"output_path": plan.output_path, "map_index": plan.map_index}
    digest.update(json.dumps([request.fields, where], sort_keys=True).encode())
    return digest.hexdigest()
