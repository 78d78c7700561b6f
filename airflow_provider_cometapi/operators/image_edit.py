"""Operators that read images, edit them with CometAPI and write the outputs back.

Each reads as arguments → plans → runner → XComs: the item pipeline (``pipeline/``) does the
reading, sending, writing and accounting, on the worker or, deferred, on the triggerer.
"""

from __future__ import annotations

import base64
from collections import Counter
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_cometapi.exceptions import CometAPIBatchError, CometAPIValidationError
from airflow_provider_cometapi.hooks.cometapi import CometApiHook

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_provider_cometapi.api.request import EditParams
    from airflow_provider_cometapi.pipeline.plans import ItemPlan
    from airflow_provider_cometapi.pipeline.records import ItemResult
    from airflow_provider_cometapi.pipeline.runners import Work
    from airflow_provider_cometapi.pipeline.scope import TaskScope
    from airflow_provider_cometapi.storage.sources import Source

ON_ITEM_FAILURE = ("fail", "continue")


def _default_deferrable() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("cometapi", "default_deferrable", fallback=False)


class _CometImageEditBase(BaseOperator):
    """What both operators share: edit parameters, connections, the hook, running, deferral."""

    template_fields: Sequence[str] = (
        "prompt",
        "mask",
        "output_path",
        "model",
        "size",
        "quality",
        "output_format",
        "extra_fields",
    )
    ui_color = "#e8d6f7"

    def __init__(
        self,
        *,
        prompt: str,
        mask: Any = None,
        output_path: str | None = None,
        model: str | None = None,
        n: int | None = None,
        quality: str | None = None,
        size: str | None = None,
        output_format: str | None = None,
        response_format: str | None = None,
        extra_fields: dict[str, Any] | None = None,
        cometapi_conn_id: str = CometApiHook.default_conn_name,
        source_conn_id: str | None = None,
        output_conn_id: str | None = None,
        reuse_outputs: bool = True,
        replace: bool = False,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.mask = mask
        self.output_path = output_path
        self.model = model
        self.n = n
        self.quality = quality
        self.size = size
        self.output_format = output_format
        self.response_format = response_format
        self.extra_fields = extra_fields
        self.cometapi_conn_id = cometapi_conn_id
        self.source_conn_id = source_conn_id
        self.output_conn_id = output_conn_id
        self.reuse_outputs = reuse_outputs
        self.replace = replace
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self._written: list[str] = []

    @cached_property
    def hook(self) -> CometApiHook:
        """The hook for ``cometapi_conn_id``."""
        return CometApiHook(cometapi_conn_id=self.cometapi_conn_id)

    def _edit_params(self) -> EditParams:
        """The checked edit parameters (cheap checks first, before reading any input)."""
        from airflow_provider_cometapi.api.request import EditParams

        return EditParams(
            prompt=self.prompt,
            model=self.model or self.hook.settings.default_model,
            n=self.n,
            quality=self.quality,
            size=self.size,
            output_format=self.output_format,
            response_format=self.response_format,
            extra_fields=self.extra_fields,
        ).checked()

    def _check_output_path(self, params: EditParams, *, mapped: bool, items: int = 1) -> str:
        from airflow_provider_cometapi.storage.outputs import check_output_path

        if not self.output_path:
            raise CometAPIValidationError(
                f"{type(self).__name__} needs output_path here: outputs are written to storage.",
                param="output_path",
            )
        check_output_path(self.output_path, n=params.n or 1, mapped=mapped, items=items)
        return self.output_path

    @cached_property
    def _mask_source(self) -> Source | None:
        """The mask, classified once (after templates are rendered)."""
        from airflow_provider_cometapi.storage.sources import classify

        return classify(self.mask, "mask", self.source_conn_id) if self.mask else None

    def _plan(
        self,
        sources: list[Source],
        mask: Source | None,
        *,
        map_index: int,
        output_path: str,
        item: str | None = None,
    ) -> ItemPlan:
        from airflow_provider_cometapi.pipeline.plans import ItemPlan
        from airflow_provider_cometapi.storage.sources import label_of

        return ItemPlan(
            sources=sources,
            mask=mask,
            output_path=output_path,
            output_conn_id=self.output_conn_id,
            map_index=map_index,
            label=label_of(sources),
            item=item,
        )

    def _edit(
        self,
        context: Context,
        plans: list[ItemPlan],
        params: EditParams,
        *,
        limit: int,
        on_item_failure: str,
    ) -> list[ItemResult]:
        """Run the items on this worker, or defer them; edits an earlier try paid for but
        could not deliver are delivered here, on the worker, which holds the ledger."""
        from airflow_provider_cometapi.pipeline import ledger
        from airflow_provider_cometapi.pipeline.scope import TaskScope

        scope = TaskScope.of(context, reuse_outputs=self.reuse_outputs, replace=self.replace)
        parked = ledger.parked(context)
        if self.deferrable:
            return self._defer(
                context,
                plans,
                params,
                scope,
                parked,
                limit=limit,
                on_item_failure=on_item_failure,
            )
        return self._run(plans, params, scope, parked, limit=limit, on_item_failure=on_item_failure)

    def _run(
        self,
        plans: list[ItemPlan],
        params: EditParams,
        scope: TaskScope,
        parked: Mapping[str, Any],
        *,
        limit: int,
        on_item_failure: str,
    ) -> list[ItemResult]:
        """Run the items on this worker."""
        from airflow_provider_cometapi.pipeline.runners import run_in_threads
        from airflow_provider_cometapi.storage.paths import warm_up

        warm_up(plans[0].output_path, self.output_conn_id)
        return run_in_threads(
            list(plans),
            params,
            scope,
            self.hook,
            limit=limit,
            on_item_failure=on_item_failure,
            log=self.log,
            parked=parked,
        )

    def _defer(
        self,
        context: Context,
        plans: list[ItemPlan],
        params: EditParams,
        scope: TaskScope,
        parked: Mapping[str, Any],
        *,
        limit: int,
        on_item_failure: str,
    ) -> list[ItemResult]:
        """Check every item here in order (delivering parked edits), stage in-memory inputs,
        and hand the edits to the triggerer. Under ``fail`` the first item that fails its
        checks settles every item after it as not started, as on the worker. Returns the
        results when none is left to defer."""
        from airflow_provider_cometapi.pipeline.records import ItemResult
        from airflow_provider_cometapi.pipeline.runners import check_in_order
        from airflow_provider_cometapi.storage.staging import stage_inputs
        from airflow_provider_cometapi.triggers.image_edit import CometImageEditTrigger

        work = check_in_order(
            plans, params, scope, on_item_failure=on_item_failure, log=self.log, parked=parked
        )
        settled = [item for item in work if isinstance(item, ItemResult)]
        if len(settled) == len(work):
            return settled
        placed, staged = stage_inputs(work, context, self.output_conn_id)
        self.defer(
            trigger=CometImageEditTrigger(
                items=[_as_trigger_item(item) for item in placed],
                staged=staged,
                params=params.to_dict(),
                scope=scope.to_json(),
                cometapi_conn_id=self.cometapi_conn_id,
                max_concurrency=limit,
                on_item_failure=on_item_failure,
            ),
            method_name="execute_complete",
        )
        raise AssertionError("defer() always raises")  # pragma: no cover

    def _resume(self, event: dict[str, Any]) -> list[ItemResult]:
        """The results the triggerer sent, once the staged inputs are removed."""
        from airflow_provider_cometapi.pipeline.records import ItemResult
        from airflow_provider_cometapi.storage.staging import remove_staged

        remove_staged(event.get("staged", []), self.output_conn_id)
        return [ItemResult.from_json(item) for item in event["items"]]

    def _report(self, context: Context, results: list[ItemResult], params: EditParams) -> None:
        """Push ``usage`` (paid apart from reused), log it, and announce the outputs: for
        lineage, and on each outlet Asset's event (with which of them were reused)."""
        from airflow.sdk import Asset

        from airflow_provider_cometapi.pipeline.records import usage_report

        usage = {**usage_report(results), "model": params.model}
        if len(results) == 1:
            usage["request_id"] = results[0].request_id
        context["ti"].xcom_push(key="usage", value=usage)
        _log_usage(self, usage)
        self._written = [uri for result in results for uri in result.outputs]
        outputs: list[Any] = list(self._written)
        reused: list[Any] = [uri for result in results if result.reused for uri in result.outputs]
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                extra = context["outlet_events"][outlet].extra
                extra["outputs"], extra["reused"] = outputs, reused

    @property
    def _given_sources(self) -> list[Source]:
        """The inputs as given (a prefix not listed yet), classified: lineage's inputs."""
        raise NotImplementedError

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Inputs read from storage and outputs written, as OpenLineage datasets."""
        from airflow_provider_cometapi.lineage import operator_lineage
        from airflow_provider_cometapi.storage.sources import stored_locations

        mask = self._mask_source
        inputs = stored_locations([*self._given_sources, *([mask] if mask else [])])
        return operator_lineage(inputs, self._written)


class CometImageEditOperator(_CometImageEditBase):
    """
    Edit an image (or up to 16 together) with a prompt, and write the edited images out.

    :param prompt: the edit instruction. (templated)
    :param image: the source: a path, an object-storage URI (``s3://bucket/key``,
        ``s3://conn_id@bucket/key``, ``gs://``, ``file://``…), an ``ObjectStoragePath``, base64
        text, a ``data:image/...;base64,`` URI, a dict with ``b64_json``, bytes, or a list of up
        to 16 of these; XCom values of any of these forms work too. (templated)
    :param mask: optional PNG mask, in any of the same forms. (templated)
    :param output_path: where outputs go: a folder ending in ``/``, a template using
        ``{stem}``, ``{index}``, ``{ext}``, ``{map_index}``, or one file. Without it, outputs
        return through XCom as base64 text. (templated)
    :param model: defaults to the connection's ``default_model``. (templated)
    :param n: number of outputs, 1-10.
    :param quality: ``high``, ``medium``, ``low``, ``auto`` or ``standard``. (templated)
    :param size: ``auto`` or ``WIDTHxHEIGHT``. (templated)
    :param output_format: ``png``, ``jpeg`` or ``webp``. (templated)
    :param response_format: ``b64_json`` or ``url``.
    :param extra_fields: further form fields sent unchanged. (templated)
    :param cometapi_conn_id: the ``cometapi`` connection.
    :param source_conn_id: connection for reading object-storage sources.
    :param output_conn_id: connection for writing to ``output_path``.
    :param max_xcom_bytes: largest total of base64 outputs returned through XCom, judged before
        paying: without ``output_path`` the edit is sent only when ``size`` is ``WIDTHxHEIGHT``
        and ``n`` such images fit even uncompressed (4 bytes a pixel), or when this is
        ``None`` (no cap).
    :param reuse_outputs: reuse outputs another task instance or an earlier run paid for, while
        they match their manifest; ``False`` pays for a fresh edit (a retry still never pays
        twice).
    :param replace: overwrite objects already at the output names; otherwise such an object
        fails the edit before anything is paid.
    :param deferrable: wait for the edit on the triggerer instead of holding a worker slot
        (needs ``output_path``); defaults to ``[cometapi] default_deferrable``.
    """

    template_fields: Sequence[str] = (*_CometImageEditBase.template_fields, "image")

    def __init__(
        self, *, image: Any, max_xcom_bytes: int | None = 1_048_576, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.image = image
        self.max_xcom_bytes = max_xcom_bytes

    def execute(self, context: Context) -> list[str]:
        """Read the sources, edit, write or return the outputs, and push ``usage``."""
        params = self._edit_params()
        if not self.output_path and not self.deferrable:
            return self._execute_in_memory(context, params)
        map_index = _map_index(context)
        output_path = self._check_output_path(params, mapped=map_index >= 0)
        plan = self._plan(
            self._given_sources, self._mask_source, map_index=map_index, output_path=output_path
        )
        (result,) = self._edit(context, [plan], params, limit=1, on_item_failure="fail")
        return self._finish(context, result, params)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[str]:
        """Resume after the triggerer: push the same XComs as a synchronous run."""
        (result,) = self._resume(event)
        return self._finish(context, result, self._edit_params())

    def _finish(self, context: Context, result: ItemResult, params: EditParams) -> list[str]:
        from airflow_provider_cometapi.pipeline import ledger

        (result,) = ledger.settle(context, [result], self.log)
        if result.error:
            if result.paid or result.earlier:  # the bill stands though the outputs did not arrive
                self._report(context, [result], params)
            raise result.exception()
        self._report(context, [result], params)
        return result.outputs

    @cached_property
    def _given_sources(self) -> list[Source]:
        """``image``, classified once: the plan, the in-memory path and lineage use it."""
        from airflow_provider_cometapi.storage.sources import classify_all

        return classify_all(self.image, "image", self.source_conn_id)

    def _execute_in_memory(self, context: Context, params: EditParams) -> list[str]:
        """No ``output_path``: return the outputs through XCom as base64, within the cap, which
        is judged before paying (see ``max_xcom_bytes``)."""
        from airflow_provider_cometapi.api.request import edit_request
        from airflow_provider_cometapi.pipeline.records import ItemResult
        from airflow_provider_cometapi.storage.sources import label_of, read_all

        self._check_xcom_room(params)
        sources = read_all(self._given_sources, "image")
        mask = self._mask_source
        request = edit_request(sources, params, mask=mask.read("mask") if mask else None)
        with self.hook:
            result = self.hook.edit(request)
        paid = ItemResult(
            label_of(self._given_sources),
            usage=result.usage,
            request_id=result.request_id,
            paid=True,
            images=len(result.images),
        )
        self._report(context, [paid], params)
        encoded_size = sum(_encoded_size(len(image.data)) for image in result.images)
        if self.max_xcom_bytes is not None and encoded_size > self.max_xcom_bytes:
            raise CometAPIValidationError(  # only when the server ignored the size asked for
                f"The {len(result.images)} edited image(s) are {encoded_size} bytes as base64, "
                f"over max_xcom_bytes={self.max_xcom_bytes}, though size={params.size} was asked "
                "for; set output_path to write the images to storage instead.",
                param="output_path",
            )
        return [base64.b64encode(image.data).decode("ascii") for image in result.images]

    def _check_xcom_room(self, params: EditParams) -> None:
        """Refuse, before paying, outputs that ``max_xcom_bytes`` might not hold."""
        if self.max_xcom_bytes is None:
            return
        width, _, height = (params.size or "auto").partition("x")
        n = params.n or 1
        if not height:
            needed = "an unknown number of"
        else:
            most = n * _encoded_size(4 * int(width) * int(height))
            if most <= self.max_xcom_bytes:
                return
            needed = f"up to {most}"
        raise CometAPIValidationError(
            f"Without output_path the outputs return through XCom, which holds "
            f"max_xcom_bytes={self.max_xcom_bytes}; {n} image(s) of size={params.size or 'auto'} "
            f"can take {needed} bytes as base64, so nothing was sent. Set output_path to write "
            "them to storage (recommended), or ask for a size WIDTHxHEIGHT that fits, or set "
            "max_xcom_bytes=None to accept any size in XCom.",
            param="output_path",
        )


class CometImageEditBatchOperator(_CometImageEditBase):
    """
    Edit many sources independently, with a bounded number of requests in flight.

    :param sources: a list of inputs in any form ``CometImageEditOperator`` accepts, or an
        object-storage prefix (``s3://bucket/inbox/``) or glob (``s3://bucket/inbox/*.png``).
        (templated)
    :param output_path: required; a folder (``…/``: files ``{stem}-{item}-{index}.{ext}``) or a
        template using ``{item}``: each source's short id, from its stored location or its
        content, never its position in the batch. (templated)
    :param max_concurrency: edits in flight at once.
    :param on_item_failure: ``fail`` stops starting new items after the first failure;
        ``continue`` edits every item. Either way every finished output is written and the task
        fails at the end when any item failed.

    The other parameters are those of ``CometImageEditOperator``. Returns the output URIs in
    source order; pushes ``usage`` (summed) and ``items`` (source, outputs, usage, request id,
    retries, error, reused).
    """

    template_fields: Sequence[str] = (*_CometImageEditBase.template_fields, "sources")

    def __init__(
        self,
        *,
        sources: Any,
        output_path: str,
        max_concurrency: int = 4,
        on_item_failure: str = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(output_path=output_path, **kwargs)
        self.sources = sources
        self.max_concurrency = max_concurrency
        self.on_item_failure = on_item_failure

    def execute(self, context: Context) -> list[str]:
        """Edit every source, push ``usage`` and ``items``, fail at the end if any failed."""
        if self.on_item_failure not in ON_ITEM_FAILURE:
            raise CometAPIValidationError(
                f"on_item_failure is {self.on_item_failure!r}; use 'fail' or 'continue'.",
                param="on_item_failure",
            )
        if not isinstance(self.max_concurrency, int) or self.max_concurrency < 1:
            raise CometAPIValidationError(
                f"max_concurrency is {self.max_concurrency!r}; use a whole number of 1 or more.",
                param="max_concurrency",
            )
        params = self._edit_params()
        plans = self._plans(params, _map_index(context))
        results = self._edit(
            context,
            plans,
            params,
            limit=self.max_concurrency,
            on_item_failure=self.on_item_failure,
        )
        return self._finish(context, results, params)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[str]:
        """Resume after the triggerer: push the same XComs as a synchronous run."""
        return self._finish(context, self._resume(event), self._edit_params())

    @cached_property
    def _given_sources(self) -> list[Source]:
        """``sources`` as given, classified (a prefix stays one location): lineage's inputs."""
        from airflow_provider_cometapi.storage.sources import classify_all

        return classify_all(self.sources, "sources", self.source_conn_id)

    def _plans(self, params: EditParams, map_index: int) -> list[ItemPlan]:
        """One plan per source, each named by its own id (see ``item_id``), never its place."""
        from airflow_provider_cometapi.pipeline.plans import item_id
        from airflow_provider_cometapi.storage.sources import (
            as_source_list,
            classify,
            expand_prefix,
        )

        listed = as_source_list(self.sources, "sources")
        if len(listed) == 1 and isinstance(listed[0], str):
            listed = expand_prefix(listed[0].strip(), self.source_conn_id)
        output_path = self._check_output_path(params, mapped=map_index >= 0, items=len(listed))
        sources = [
            classify(source, "image", self.source_conn_id, place=f"sources[{slot}]")
            for slot, source in enumerate(listed)
        ]
        seen: Counter[str] = Counter()
        plans = []
        for source in sources:  # an input listed twice is edited twice, under two names
            plans.append(
                self._plan(
                    [source],
                    self._mask_source,
                    map_index=map_index,
                    output_path=output_path,
                    item=item_id([source], occurrence=seen[source.identity]),
                )
            )
            seen[source.identity] += 1
        return plans

    def _finish(self, context: Context, results: list[ItemResult], params: EditParams) -> list[str]:
        from airflow_provider_cometapi.pipeline import ledger

        results = ledger.settle(context, results, self.log)
        outputs = [uri for result in results for uri in result.outputs]
        context["ti"].xcom_push(key="items", value=[result.to_json() for result in results])
        self._report(context, results, params)
        failed = [result for result in results if result.error]
        if failed:  # name a real failure, not an item that was never started because of it
            first = next((result for result in failed if result.started), failed[0])
            assert first.error is not None
            raise CometAPIBatchError(
                f"{len(failed)} of {len(results)} items failed (first: {first.source}: "
                f"{first.error['message']}); the outputs of the others were written. See "
                "the 'items' XCom for each item's error."
            )
        return outputs


def _as_trigger_item(item: Work) -> dict[str, Any]:
    """An item as trigger kwargs: its plan to run, or its settled result."""
    from airflow_provider_cometapi.pipeline.records import ItemResult

    if isinstance(item, ItemResult):
        return {"result": item.to_json()}
    return {"plan": item.to_json()}


def _log_usage(operator: BaseOperator, usage: dict[str, Any]) -> None:
    """One line for what was paid, one for what was reused (nothing paid for it now)."""
    reused = usage["reused"]
    if usage["requests"] or not reused["requests"]:
        operator.log.info(
            "Edited %d image(s) with %s: %s input + %s output = %s total tokens (request %s)",
            usage["images"],
            usage["model"],
            usage.get("input_tokens", "?"),
            usage.get("output_tokens", "?"),
            usage.get("total_tokens", "?"),
            usage.get("request_id", "several"),
        )
    if reused["requests"]:
        operator.log.info(
            "Reused %d image(s) from an earlier run (nothing paid): %s total tokens then",
            reused["images"],
            reused.get("total_tokens", "?"),
        )


def _encoded_size(raw_bytes: int) -> int:
    """Bytes of base64 text for ``raw_bytes`` bytes."""
    return (raw_bytes + 2) // 3 * 4


def _map_index(context: Context) -> int:
    map_index = getattr(context["ti"], "map_index", -1)
    return map_index if isinstance(map_index, int) else -1
