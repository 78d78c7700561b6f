"""Operators that read images, edit them with CometAPI and write the outputs back."""

from __future__ import annotations

import base64
import contextlib
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_cometapi.exceptions import (
    CometAPIBatchError,
    CometAPIValidationError,
    rebuild_error,
)
from airflow_provider_cometapi.hooks.cometapi import CometApiHook

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractContextManager

    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_provider_cometapi.editing import BatchProgress, EditParams, ItemPlan

ON_ITEM_FAILURE = ("fail", "continue")


def _default_deferrable() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("cometapi", "default_deferrable", fallback=False)


class _CometImageEditBase(BaseOperator):
    """What both operators share: edit parameters, connections, the hook, deferral."""

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
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self._written: list[str] = []

    @cached_property
    def hook(self) -> CometApiHook:
        """The hook for ``cometapi_conn_id``."""
        return CometApiHook(cometapi_conn_id=self.cometapi_conn_id)

    def _edit_params(self) -> EditParams:
        """The checked edit parameters (cheap checks first, before reading any input)."""
        from airflow_provider_cometapi.api.request import (
            OUTPUT_FORMATS,
            QUALITIES,
            RESPONSE_FORMATS,
            check_choice,
            check_n,
            check_prompt,
            check_size,
        )
        from airflow_provider_cometapi.editing import EditParams

        check_prompt(self.prompt)
        for name, value, options in (
            ("quality", self.quality, QUALITIES),
            ("response_format", self.response_format, RESPONSE_FORMATS),
            ("output_format", self.output_format, OUTPUT_FORMATS),
        ):
            if value is not None:
                check_choice(name, value, options)
        return EditParams(
            prompt=self.prompt,
            model=self.model or self.hook.settings.default_model,
            n=check_n(self.n) if self.n is not None else None,
            quality=self.quality,
            size=check_size(self.size) if self.size is not None else None,
            output_format=self.output_format,
            response_format=self.response_format,
            extra_fields=dict(self.extra_fields) if self.extra_fields else None,
        )

    def _check_output_path(self, params: EditParams, *, several_names: bool) -> str:
        from airflow_provider_cometapi.storage.outputs import check_output_path

        if not self.output_path:
            raise CometAPIValidationError(
                f"{type(self).__name__} needs output_path here: outputs are written to storage.",
                param="output_path",
            )
        check_output_path(self.output_path, n=params.n or 1, mapped=several_names)
        return self.output_path

    def _plan(self, sources: list[Any], *, label: str, slot: int, output_path: str) -> ItemPlan:
        from airflow_provider_cometapi.editing import ItemPlan

        return ItemPlan(
            sources=sources,
            mask=self.mask,
            source_conn_id=self.source_conn_id,
            output_path=output_path,
            output_conn_id=self.output_conn_id,
            map_index=slot,
            label=label,
        )

    def _run_item(
        self,
        hook: CometApiHook,
        plan: ItemPlan,
        params: EditParams,
        in_flight: AbstractContextManager[object] | None = None,
    ) -> dict[str, Any]:
        """Edit one item and commit its outputs, unless a manifest proves it already done.

        Any failure leaves nothing behind and raises.

        :param in_flight: held while the request is on the wire (the batch's request gate).
        """
        from airflow_provider_cometapi.editing import (
            fingerprint,
            item_result,
            manifest_record,
            prepare_item,
            reused_result,
        )
        from airflow_provider_cometapi.storage import manifests

        request, sink = prepare_item(plan, params)
        key = fingerprint(request, plan)
        done = manifests.load_completed(sink, key)
        if done is not None:
            self.log.info(
                "Not editing %s again: its outputs are complete (request %s); reusing them",
                plan.label,
                done.get("request_id"),
            )
            return reused_result(plan.label, done)
        try:
            with in_flight or contextlib.nullcontext():
                outcome = hook.run_edit(request, sink, idempotency_key=key)
            outputs = sink.commit()
        except BaseException:
            sink.discard()
            raise
        for uri in outputs:
            self.log.info("Wrote %s", uri)
        result = item_result(plan.label, outputs=outputs, outcome=outcome)
        try:
            manifests.save(sink, key, manifest_record(result))
        except Exception as exc:  # the outputs stand; only a retry would pay again
            self.log.warning("Could not write the manifest of %s: %s", plan.label, exc)
        return result

    def _defer_items(
        self,
        context: Context,
        plans: list[ItemPlan],
        params: EditParams,
        *,
        max_concurrency: int,
        on_item_failure: str,
    ) -> None:
        """Check every item here, stage in-memory inputs, and hand the edits to the triggerer.

        An item that fails its checks fails the task at once with ``fail``; with ``continue`` it
        is recorded as failed and the others are deferred.
        """
        from airflow_provider_cometapi.editing import item_result, prepare_item
        from airflow_provider_cometapi.storage.staging import stage_inputs
        from airflow_provider_cometapi.triggers.image_edit import CometImageEditTrigger

        settled: list[dict[str, Any] | None] = []
        for plan in plans:
            try:
                prepare_item(plan, params)  # reads and checks; nothing is written yet
                settled.append(None)
            except CometAPIValidationError as exc:
                if on_item_failure == "fail":
                    raise
                settled.append(item_result(plan.label, error=exc))
        skip = [result is not None for result in settled]
        placed, staged = stage_inputs(plans, context, self.output_conn_id, skip)
        self.defer(
            trigger=CometImageEditTrigger(
                items=[
                    _json_plan(plan, skipped) for plan, skipped in zip(placed, skip, strict=True)
                ],
                settled=settled,
                staged=staged,
                params=params.to_dict(),
                cometapi_conn_id=self.cometapi_conn_id,
                max_concurrency=max_concurrency,
                on_item_failure=on_item_failure,
            ),
            method_name="execute_complete",
        )

    def _cleanup_staged(self, event: dict[str, Any]) -> None:
        from airflow_provider_cometapi.storage.staging import remove_staged

        remove_staged(event.get("staged", []), self.output_conn_id)

    def _announce(self, context: Context, outputs: list[str]) -> None:
        """Remember the outputs for lineage, and attach them to each outlet Asset's event."""
        from airflow.sdk import Asset

        self._written = outputs
        as_json: list[Any] = list(outputs)
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra["outputs"] = as_json

    def _read_locations(self) -> list[Any]:
        """The inputs as given (before reading), whose stored locations are lineage inputs."""
        raise NotImplementedError

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Inputs read from storage and outputs written, as OpenLineage datasets."""
        from airflow_provider_cometapi.lineage import operator_lineage, stored_locations

        inputs = stored_locations([*self._read_locations(), self.mask])
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
    :param max_xcom_bytes: largest total of base64 outputs returned through XCom.
    :param deferrable: wait for the edit on the triggerer instead of holding a worker slot
        (needs ``output_path``); defaults to ``[cometapi] default_deferrable``.
    """

    template_fields: Sequence[str] = (*_CometImageEditBase.template_fields, "image")

    def __init__(self, *, image: Any, max_xcom_bytes: int = 1_048_576, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image = image
        self.max_xcom_bytes = max_xcom_bytes

    def execute(self, context: Context) -> list[str]:
        """Read the sources, edit, write or return the outputs, and push ``usage``."""
        from airflow_provider_cometapi.storage.sources import as_source_list

        params = self._edit_params()
        if not self.output_path and not self.deferrable:
            return self._execute_in_memory(context, params)
        map_index = _map_index(context)
        output_path = self._check_output_path(params, several_names=map_index >= 0)
        plan = self._plan(
            as_source_list(self.image, "image"),
            label=_label(self.image),
            slot=map_index,
            output_path=output_path,
        )
        if self.deferrable:
            self._defer_items(context, [plan], params, max_concurrency=1, on_item_failure="fail")
        with self.hook:
            result = self._run_item(self.hook, plan, params)
        return self._finish(context, result, params)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[str]:
        """Resume after the triggerer: push the same XComs as a synchronous run."""
        self._cleanup_staged(event)
        (result,) = event["items"]
        if result["error"]:
            raise rebuild_error(result["error"])
        return self._finish(context, result, self._edit_params())

    def _finish(self, context: Context, result: dict[str, Any], params: EditParams) -> list[str]:
        outputs: list[str] = result["outputs"]
        self._push_usage(
            context,
            result["usage"],
            params,
            len(outputs),
            result["request_id"],
            reused=result["reused"],
        )
        self._announce(context, outputs)
        return outputs

    def _read_locations(self) -> list[Any]:
        from airflow_provider_cometapi.storage.sources import as_source_list

        return as_source_list(self.image, "image")

    def _push_usage(
        self,
        context: Context,
        server_usage: dict[str, Any],
        params: EditParams,
        images: int,
        request_id: str | None,
        *,
        reused: bool = False,
    ) -> None:
        """Push ``usage``: the server's keys plus model, images, request id and whether the
        outputs were reused from an earlier run (nothing paid now); log a summary."""
        usage = {
            **server_usage,
            "model": params.model,
            "images": images,
            "request_id": request_id,
            "reused": reused,
        }
        context["ti"].xcom_push(key="usage", value=usage)
        _log_usage(self, usage)

    def _execute_in_memory(self, context: Context, params: EditParams) -> list[str]:
        """No ``output_path``: return the outputs through XCom as base64, within the cap."""
        from airflow_provider_cometapi.storage.sources import read_source, read_sources

        sources = read_sources(self.image, "image", self.source_conn_id)
        mask = read_source(self.mask, "mask", self.source_conn_id) if self.mask else None
        with self.hook:
            result = self.hook.edit(params.request(sources, mask))
        encoded_size = sum((len(image.data) + 2) // 3 * 4 for image in result.images)
        if encoded_size > self.max_xcom_bytes:
            raise CometAPIValidationError(
                f"The {len(result.images)} edited image(s) are {encoded_size} bytes as base64, "
                f"over max_xcom_bytes={self.max_xcom_bytes}: XCom lives in the metadata "
                "database, so set output_path to write the images to storage instead.",
                param="output_path",
            )
        self._push_usage(context, result.usage, params, len(result.images), result.request_id)
        return [base64.b64encode(image.data).decode("ascii") for image in result.images]


class CometImageEditBatchOperator(_CometImageEditBase):
    """
    Edit many sources independently, with a bounded number of requests in flight.

    :param sources: a list of inputs in any form ``CometImageEditOperator`` accepts, or an
        object-storage prefix (``s3://bucket/inbox/``) or glob (``s3://bucket/inbox/*.png``).
        (templated)
    :param output_path: required; a folder (``…/``: files ``{stem}-{item}-{index}.{ext}``) or a
        template where ``{map_index}`` is the item's position in the batch. (templated)
    :param max_concurrency: edits in flight at once.
    :param on_item_failure: ``fail`` stops starting new items after the first failure;
        ``continue`` edits every item. Either way every finished output is written and the task
        fails at the end when any item failed.

    The other parameters are those of ``CometImageEditOperator``. Returns the output URIs in
    source order; pushes ``usage`` (summed) and ``items`` (source, outputs, usage, error).
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
        plans = self._plans(params)
        if self.deferrable:
            self._defer_items(
                context,
                plans,
                params,
                max_concurrency=self.max_concurrency,
                on_item_failure=self.on_item_failure,
            )
        results = self._run_all(plans, params)
        return self._finish(context, results, params)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[str]:
        """Resume after the triggerer: push the same XComs as a synchronous run."""
        self._cleanup_staged(event)
        return self._finish(context, event["items"], self._edit_params())

    def _read_locations(self) -> list[Any]:
        from airflow_provider_cometapi.storage.sources import as_source_list

        return as_source_list(self.sources, "sources")

    def _plans(self, params: EditParams) -> list[ItemPlan]:
        from airflow_provider_cometapi.storage.sources import as_source_list, expand_prefix

        listed = as_source_list(self.sources, "sources")
        if len(listed) == 1 and isinstance(listed[0], str):
            listed = expand_prefix(listed[0].strip(), self.source_conn_id)
        output_path = self._check_output_path(params, several_names=len(listed) > 1)
        return [
            self._plan([source], label=_label(source), slot=slot, output_path=output_path)
            for slot, source in enumerate(listed)
        ]

    def _run_all(self, plans: list[ItemPlan], params: EditParams) -> list[dict[str, Any]]:
        """Edit the items with at most ``max_concurrency`` requests in flight.

        Twice as many threads as requests, each with its own HTTP session: while requests are
        on the wire, the next items are read and checked and finished ones are committed.
        """
        from airflow_provider_cometapi.editing import BatchProgress, item_result, not_started
        from airflow_provider_cometapi.storage.paths import warm_up

        hooks: list[CometApiHook] = []
        local = threading.local()
        gate = _RequestGate(self.max_concurrency, close_on_error=self.on_item_failure == "fail")

        def edit(plan: ItemPlan) -> dict[str, Any] | None:
            if not hasattr(local, "hook"):
                local.hook = self.hook.fork()
                hooks.append(local.hook)
            try:
                return self._run_item(local.hook, plan, params, gate)
            except _NotStarted:
                return None
            except Exception as exc:  # every failure becomes this item's error
                if self.on_item_failure == "fail":
                    gate.close()
                self.log.warning("Edit of %s failed: %s", plan.label, exc)
                return item_result(plan.label, error=exc)

        warm_up(plans[0].output_path, self.output_conn_id)
        import requests  # noqa: F401 - imported once here, not by every thread at once

        results: list[dict[str, Any] | None] = [None] * len(plans)
        progress = BatchProgress(self.log, len(plans))
        try:
            self._pump_items(plans, edit, results, progress, gate)
        finally:
            for hook in hooks:
                hook.close()
        return [
            result if result is not None else not_started(plan.label)
            for plan, result in zip(plans, results, strict=True)
        ]

    def _pump_items(
        self,
        plans: list[ItemPlan],
        edit: Callable[[ItemPlan], dict[str, Any] | None],
        results: list[dict[str, Any] | None],
        progress: BatchProgress,
        gate: _RequestGate,
    ) -> None:
        """Keep twice ``max_concurrency`` items under way, and submit no more once the gate is
        closed (an item failed under ``fail``), so that no waiting item sends its request."""
        workers = 2 * self.max_concurrency
        with ThreadPoolExecutor(max_workers=workers) as pool:
            waiting = iter(enumerate(plans))
            running: dict[Future[dict[str, Any] | None], int] = {}
            try:
                while True:
                    while not gate.closed and len(running) < workers:
                        slot, plan = next(waiting, (-1, None))
                        if plan is None:
                            break
                        running[pool.submit(edit, plan)] = slot
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        result = results[running.pop(future)] = future.result()
                        if result is None:  # not started: the gate closed while it waited
                            continue
                        progress.add(result)  # under 'fail', edit() closed the gate already
            finally:  # stopped (a timeout, the task killed): no waiting item may send
                gate.close()

    def _finish(
        self, context: Context, results: list[dict[str, Any]], params: EditParams
    ) -> list[str]:
        from airflow_provider_cometapi.editing import sum_usage

        outputs = [uri for result in results for uri in result["outputs"]]
        usage = sum_usage([result["usage"] for result in results])
        usage.update(model=params.model, images=len(outputs), requests=len(results))
        context["ti"].xcom_push(key="usage", value=usage)
        context["ti"].xcom_push(key="items", value=results)
        _log_usage(self, usage)
        self._announce(context, outputs)
        failed = [result for result in results if result["error"]]
        if failed:  # name a real failure, not an item that was never started because of it
            first = next(
                (r for r in failed if r["error"]["type"] != "CometAPIBatchError"), failed[0]
            )
            raise CometAPIBatchError(
                f"{len(failed)} of {len(results)} items failed (first: {first['source']}: "
                f"{first['error']['message']}); the outputs of the others were written. See "
                "the 'items' XCom for each item's error."
            )
        return outputs


class _NotStarted(Exception):
    """An item that was waiting for the request gate when the batch stopped starting items."""


class _RequestGate:
    """At most ``limit`` requests in flight; once ``closed``, a waiting request never starts.

    :param close_on_error: close as a failed request lets go of its slot, before anyone waiting
        can take it (``on_item_failure="fail"``).
    """

    def __init__(self, limit: int, *, close_on_error: bool) -> None:
        self._slots = threading.Semaphore(limit)
        self._close_on_error = close_on_error
        self.closed = False

    def __enter__(self) -> None:
        self._slots.acquire()
        if self.closed:
            self._slots.release()
            raise _NotStarted

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is not None and self._close_on_error:
            self.close()
        self._slots.release()

    def close(self) -> None:
        """Let no waiting request start from now on."""
        self.closed = True


def _json_plan(plan: ItemPlan, settled: bool) -> dict[str, Any]:
    """A plan as trigger kwargs; a settled plan's inputs are never read again, so drop them."""
    from dataclasses import asdict, replace

    return asdict(replace(plan, sources=[], mask=None) if settled else plan)


def _log_usage(operator: BaseOperator, usage: dict[str, Any]) -> None:
    operator.log.info(
        "Edited %d image(s) with %s: %s input + %s output = %s total tokens (request %s)",
        usage["images"],
        usage["model"],
        usage.get("input_tokens", "?"),
        usage.get("output_tokens", "?"),
        usage.get("total_tokens", "?"),
        usage.get("request_id", "several"),
    )


def _label(value: Any) -> str:
    from airflow_provider_cometapi.editing import location_label

    return location_label(value)


def _map_index(context: Context) -> int:
    map_index = getattr(context["ti"], "map_index", -1)
    return map_index if isinstance(map_index, int) else -1
