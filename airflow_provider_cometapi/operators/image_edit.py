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

from airflow_provider_cometapi.exceptions import (
    CometAPIBatchError,
    CometAPIBudgetError,
    CometAPIValidationError,
)
from airflow_provider_cometapi.hooks.cometapi import CometApiHook

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    import jinja2
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_provider_cometapi.api.request import EditParams
    from airflow_provider_cometapi.pipeline.budget import Budget, BudgetSpec
    from airflow_provider_cometapi.pipeline.plans import ItemPlan
    from airflow_provider_cometapi.pipeline.records import ItemResult
    from airflow_provider_cometapi.pipeline.scope import TaskScope
    from airflow_provider_cometapi.storage.sources import Source

ON_ITEM_FAILURE = ("fail", "continue")
_Entry = tuple["Source", "Source | None", "EditParams | None", "str | None"]
"""A batch item before its plan: its image, its mask, a row's parameters and output name."""


def _default_deferrable() -> bool:
    """``[cometapi] default_deferrable`` when it is set, else ``[operators] default_deferrable``.

    The provider declares its option without a default, so that unset (``""``) and false differ.
    """
    from airflow.configuration import conf

    if conf.get("cometapi", "default_deferrable", fallback="").strip():
        return conf.getboolean("cometapi", "default_deferrable")
    return conf.getboolean("operators", "default_deferrable", fallback=False)


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
        prompt: str | None = None,
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
        max_total_tokens: int | None = None,
        max_cost: float | str | None = None,
        budget_scope: str = "task",
        dry_run: bool = False,
        preserve_unmasked: bool = False,
        feather: int = 0,
        max_outside_mask_drift: float | None = None,
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
        self.max_total_tokens = max_total_tokens
        self.max_cost = max_cost
        self.budget_scope = budget_scope
        self.dry_run_only = dry_run  # BaseOperator.dry_run() is a method
        self.preserve_unmasked = preserve_unmasked
        self.feather = feather
        self.max_outside_mask_drift = max_outside_mask_drift
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self._written: list[str] = []

    @cached_property
    def hook(self) -> CometApiHook:
        """The hook for ``cometapi_conn_id``."""
        return CometApiHook(cometapi_conn_id=self.cometapi_conn_id)

    def _edit_params(self, *, checked: bool = True) -> EditParams:
        """The edit parameters, checked (cheap checks first, before reading any input) unless
        they are rows' defaults, which each row checks with its own values over them."""
        from airflow_provider_cometapi.api.request import EditParams

        params = EditParams(
            prompt=self.prompt or "",
            model=self.model or self.hook.settings.default_model,
            n=self.n,
            quality=self.quality,
            size=self.size,
            output_format=self.output_format,
            response_format=self.response_format,
            extra_fields=self.extra_fields,
            preserve_unmasked=self.preserve_unmasked,
            feather=self.feather,
            max_outside_mask_drift=self.max_outside_mask_drift,
        )
        return params.checked() if checked else params

    def _check_output_path(self, params: EditParams, *, mapped: bool, items: int = 1) -> str:
        from airflow_provider_cometapi.storage.outputs import check_output_path
        from airflow_provider_cometapi.storage.staging import check_staging_location

        if not self.output_path:
            raise CometAPIValidationError(
                f"{type(self).__name__} needs output_path here: outputs are written to storage.",
                param="output_path",
            )
        check_output_path(self.output_path, n=params.n or 1, mapped=mapped, items=items)
        if self.deferrable:
            check_staging_location(self.output_path)
        return self.output_path

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        """Render as Airflow does (mapped or not), then label the in-memory images of
        ``image``, ``sources`` and ``mask`` for Rendered Templates; ``_input`` reads them whole."""
        from airflow_provider_cometapi.operators.rendered_inputs import INPUT_FIELDS, for_display

        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is self:
            for name in set(INPUT_FIELDS) & set(template_fields):
                setattr(self, name, for_display(getattr(self, name)))

    def _input(self, name: str) -> Any:
        """A rendered ``image``, ``sources`` or ``mask`` whole, as given."""
        from airflow_provider_cometapi.operators.rendered_inputs import as_given

        return as_given(getattr(self, name))

    @cached_property
    def _mask_source(self) -> Source | None:
        """The mask, classified once (after templates are rendered)."""
        from airflow_provider_cometapi.storage.sources import classify

        mask = self._input("mask")
        return classify(mask, "mask", self.source_conn_id) if mask else None

    def _plan(
        self,
        sources: list[Source],
        mask: Source | None,
        *,
        map_index: int,
        output_path: str,
        item: str | None = None,
        params: EditParams | None = None,
        stem: str | None = None,
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
            params=params,
            stem=stem,
        )

    def _edit(
        self,
        context: Context,
        plans: list[ItemPlan],
        params: EditParams,
        *,
        limit: int,
        on_item_failure: str,
        report: str | None = None,
    ) -> list[ItemResult]:
        """Run the items on this worker, or defer them; edits an earlier try paid for but
        could not deliver are delivered here, on the worker, which holds the ledger.

        :param report: the batch report's URI, where each item's line goes as it finishes.
        """
        from airflow_provider_cometapi.pipeline import ledger
        from airflow_provider_cometapi.pipeline.scope import TaskScope

        scope = TaskScope.of(context, reuse_outputs=self.reuse_outputs, replace=self.replace)
        budget = self._budget(plans, params, scope)
        self._note_service_defaults([plan.params or params for plan in plans])
        parked = ledger.parked(context)
        runner = self._defer if self.deferrable else self._run
        return runner(
            context,
            plans,
            params,
            scope,
            parked,
            limit=limit,
            on_item_failure=on_item_failure,
            report=report,
            budget=budget,
        )

    def _note_service_defaults(self, used: list[EditParams]) -> None:
        """Log once at INFO each surprising default the service applies to fields left unset
        (SeedEdit's watermark), over every set of parameters the items use."""
        from airflow_provider_cometapi.api.models import service_default_notes

        notes = dict.fromkeys(note for params in used for note in service_default_notes(params))
        for note in notes:
            self.log.info("%s", note)

    def _budget(
        self, plans: list[ItemPlan], params: EditParams, scope: TaskScope
    ) -> tuple[BudgetSpec, Budget] | None:
        """The budget of ``max_total_tokens`` and ``max_cost`` (and its spec, for the
        triggerer), checked before anything is sent: its limits, and a price for every model
        the items use when ``max_cost`` is set. A run-wide budget's ledger is in the folder of
        the outputs."""
        from airflow_provider_cometapi.pipeline.budget import BudgetSpec
        from airflow_provider_cometapi.storage.report import report_folder

        folder = report_folder(plans[0].output_path)
        spec = BudgetSpec.of(self.max_total_tokens, self.max_cost, self.budget_scope, folder)
        if spec is None:
            return None
        pricing = self.hook.settings.pricing
        budget = spec.budget(pricing=pricing, scope=scope, conn_id=self.output_conn_id)
        if spec.max_cost is not None and pricing is not None:
            models = sorted({(plan.params or params).model for plan in plans})
            unpriced = [model for model in models if pricing.price_of(model) is None]
            if unpriced:
                raise CometAPIValidationError(
                    f"max_cost is set, but the pricing table has no price for "
                    f"{', '.join(unpriced)}: add the model's rates to it, so that what each "
                    "edit costs is known; nothing was sent.",
                    param="max_cost",
                )
        return spec, budget

    def _run(
        self,
        context: Context,
        plans: list[ItemPlan],
        params: EditParams,
        scope: TaskScope,
        parked: Mapping[str, Any],
        *,
        limit: int,
        on_item_failure: str,
        report: str | None,
        budget: tuple[BudgetSpec, Budget] | None,
    ) -> list[ItemResult]:
        """Run the items on this worker."""
        from airflow_provider_cometapi.pipeline.runners import run_in_threads
        from airflow_provider_cometapi.storage.paths import warm_up
        from airflow_provider_cometapi.storage.report import ReportParts

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
            report=ReportParts(report, self.output_conn_id, scope.try_number) if report else None,
            budget=budget[1] if budget else None,
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
        report: str | None,
        budget: tuple[BudgetSpec, Budget] | None,
    ) -> list[ItemResult]:
        """Check every item here in order (delivering parked edits), stage in-memory inputs
        and the plan in storage, and hand the edits to the triggerer. Under ``fail`` the first
        item that fails its checks settles every item after it as not started, as on the
        worker. Returns the results when none is left to defer."""
        from airflow_provider_cometapi.pipeline.records import ItemResult
        from airflow_provider_cometapi.pipeline.runners import check_in_order
        from airflow_provider_cometapi.storage.staging import stage_inputs, write_plan
        from airflow_provider_cometapi.triggers.image_edit import CometImageEditTrigger

        work = check_in_order(
            plans, params, scope, on_item_failure=on_item_failure, log=self.log, parked=parked
        )
        settled = [item for item in work if isinstance(item, ItemResult)]
        if len(settled) == len(work):
            return settled
        root = self._staging_root(context)
        placed = stage_inputs(work, root, self.output_conn_id)
        self.defer(
            trigger=CometImageEditTrigger(
                plan=write_plan(placed, root, self.output_conn_id),
                conn_id=self.output_conn_id,
                params=params.to_dict(),
                scope=scope.to_json(),
                cometapi_conn_id=self.cometapi_conn_id,
                max_concurrency=limit,
                on_item_failure=on_item_failure,
                report=report,
                budget=budget[0].to_json() if budget else None,
            ),
            method_name="execute_complete",
        )
        raise AssertionError("defer() always raises")  # pragma: no cover

    def _resume(
        self, context: Context, event: dict[str, Any], report: str | None = None
    ) -> list[ItemResult]:
        """The results the triggerer left (in the report's parts and the event), with the
        images it could not write; the staged inputs and plan are removed.

        :param report: the batch report's URI the trigger was given.
        """
        from dataclasses import replace

        from airflow_provider_cometapi.pipeline.records import ItemResult
        from airflow_provider_cometapi.storage.report import read_parts
        from airflow_provider_cometapi.storage.staging import remove_staging

        lines = list(event["lines"])
        if report is not None:
            try_number = getattr(context["ti"], "try_number", 1) or 1
            lines += read_parts(report, self.output_conn_id, try_number)
        lines.sort(key=lambda line: line["position"])
        results = [ItemResult.from_report_line(line) for line in lines]
        for position, images in event.get("parked", {}).items():
            results[int(position)] = replace(results[int(position)], parked=images)
        remove_staging(self._staging_root(context), self.output_conn_id)
        return results

    def _staging_root(self, context: Context) -> str:
        from airflow_provider_cometapi.storage.staging import staging_root

        assert self.output_path is not None
        return staging_root(self.output_path, context)

    def _dry_run(
        self, context: Context, plans: list[ItemPlan], params: EditParams
    ) -> dict[str, Any]:
        """Read and check every item, count what a run would send and estimate its cost;
        nothing is sent or written. Pushes the result as the ``dry_run`` XCom, and fails the
        task when an item is invalid."""
        from airflow_provider_cometapi.pipeline.dry_run import dry_run
        from airflow_provider_cometapi.pipeline.scope import TaskScope

        scope = TaskScope.of(context, reuse_outputs=self.reuse_outputs, replace=self.replace)
        if plans[0].output_path:
            self._budget(plans, params, scope)
        found = dry_run(plans, params, scope, self.hook.settings.pricing, self.log)
        context["ti"].xcom_push(key="dry_run", value=found)
        cost = found.get("estimated_cost")
        self.log.info(
            "Dry run, nothing sent: %d item(s) would send %d request(s) for %d image(s); "
            "%d reused, %d invalid; estimated cost %s",
            found["items"],
            found["requests"],
            found["images"],
            found["reused"],
            found["invalid"],
            f"{cost} {found['currency']}" if cost is not None else "unknown",
        )
        if found["invalid"]:
            first = found["errors"][0]
            raise CometAPIValidationError(
                f"Dry run: {found['invalid']} of {found['items']} items are invalid (first: "
                f"{first['source']}: {first['error']}); fix them before a real run.",
                param="sources",
            )
        return found

    def _report(
        self, context: Context, results: list[ItemResult], params: EditParams
    ) -> dict[str, Any]:
        """Push ``usage`` (paid apart from reused) and log it; keep the outputs for lineage.
        Returns the usage."""
        from airflow_provider_cometapi.pipeline.records import usage_report

        pricing = self.hook.settings.pricing
        usage = {
            **usage_report(results, pricing.currency if pricing else None),
            "model": params.model,
        }
        if len(results) == 1:
            usage["request_id"] = results[0].request_id
        context["ti"].xcom_push(key="usage", value=usage)
        _log_usage(self, usage)
        self._written = [uri for result in results for uri in result.outputs]
        return usage

    def _announce(self, context: Context, extra: dict[str, Any]) -> None:
        """Put ``extra`` on each outlet Asset's event."""
        from airflow.sdk import Asset

        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(extra)

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
    :param n: number of outputs (1-10 for the GPT image models).
    :param quality: for the GPT image models ``high``, ``medium``, ``low``, ``auto`` or
        ``standard``. (templated)
    :param size: as the model's rules allow (README, "Models"), e.g. ``auto``,
        ``1024x1024``, or ``adaptive`` for SeedEdit. (templated)
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
    :param max_total_tokens: a token budget: no request starts once what was paid plus what is
        in flight (estimated from the edits paid so far) would pass it; items not started are
        reported, and the task fails at the end with ``CometAPIBudgetError``.
    :param max_cost: the same, in the currency of the pricing table (connection extra
        ``pricing`` or ``[cometapi] pricing``), which must price every model used.
    :param budget_scope: ``task`` (this task instance's own budget) or ``dag_run`` (one budget
        for every task instance of the DAG run, e.g. a mapped fan-out; its ledger is kept in the
        output folder, which they must share).
    :param dry_run: read and check everything, count the requests and images a run would send
        and estimate their cost where the prices make that computable; send and write nothing.
    :param preserve_unmasked: with a mask, composite each output over the first source image,
        so that every pixel the mask keeps (alpha 255) is exactly the source's and the model's
        pixels are used only where it is transparent (partial alpha blends). A JPEG output's
        composite is written as PNG, since JPEG cannot keep pixels exact.
    :param feather: pixels over which a composite's seam is softened, inside the edited area.
    :param max_outside_mask_drift: with a mask, the largest share (0-1) of kept pixels the
        model may change; an edit over it is not written to ``output_path`` but kept (it was
        paid for) under ``rejected/`` beside the outputs, and the item fails with
        ``CometAPIQualityError``. Every masked edit's drift is measured either way: the
        ``checks`` XCom, the report's lines, the batch ``summary``.
    :param deferrable: wait for the edit on the triggerer instead of holding a worker slot
        (needs ``output_path``); defaults to ``[cometapi] default_deferrable`` when it is set,
        else to Airflow's ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = (*_CometImageEditBase.template_fields, "image")

    def __init__(
        self, *, image: Any, max_xcom_bytes: int | None = 1_048_576, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.image = image
        self.max_xcom_bytes = max_xcom_bytes

    def execute(self, context: Context) -> list[str] | dict[str, Any]:
        """Read the sources, edit, write or return the outputs, and push ``usage``; with
        ``dry_run``, only check and count (see ``_dry_run``)."""
        params = self._edit_params()
        if self.dry_run_only:
            plan = self._plan(
                self._given_sources,
                self._mask_source,
                map_index=_map_index(context),
                output_path=self.output_path or "",
            )
            return self._dry_run(context, [plan], params)
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
        (result,) = self._resume(context, event)
        return self._finish(context, result, self._edit_params())

    def _finish(self, context: Context, result: ItemResult, params: EditParams) -> list[str]:
        from airflow_provider_cometapi.pipeline import ledger

        (result,) = ledger.settle(context, [result], self.log)
        if result.checks:
            context["ti"].xcom_push(key="checks", value=result.checks)
        if result.error:
            if result.paid or result.earlier:  # the bill stands though the outputs did not arrive
                self._report(context, [result], params)
            raise result.exception()
        self._report(context, [result], params)
        reused = result.outputs if result.reused else []
        self._announce(context, {"outputs": list(result.outputs), "reused": list(reused)})
        return result.outputs

    @cached_property
    def _given_sources(self) -> list[Source]:
        """``image``, classified once: the plan, the in-memory path and lineage use it."""
        from airflow_provider_cometapi.storage.sources import classify_all

        return classify_all(self._input("image"), "image", self.source_conn_id)

    def _execute_in_memory(self, context: Context, params: EditParams) -> list[str]:
        """No ``output_path``: return the outputs through XCom as base64, within the cap, which
        is judged before paying (see ``max_xcom_bytes``)."""
        from airflow_provider_cometapi.api.request import edit_request
        from airflow_provider_cometapi.pipeline.records import ItemResult, with_cost
        from airflow_provider_cometapi.storage.sources import label_of, read_all

        if self.budget_scope != "task":
            raise CometAPIValidationError(
                f"budget_scope={self.budget_scope!r} needs output_path: a run-wide budget's "
                "ledger is kept next to the outputs.",
                param="budget_scope",
            )
        if params.max_outside_mask_drift is not None:
            raise CometAPIValidationError(
                "max_outside_mask_drift needs output_path: an edit over it is kept under "
                "rejected/ beside the outputs, not returned through XCom; nothing was sent.",
                param="max_outside_mask_drift",
            )
        self._check_xcom_room(params)
        self._note_service_defaults([params])
        sources = read_all(self._given_sources, "image")
        mask = self._mask_source
        request = edit_request(sources, params, mask=mask.read("mask") if mask else None)
        with self.hook:
            result = self.hook.edit(
                request, preserve_unmasked=params.preserve_unmasked, feather=params.feather
            )
        if request.mask is not None:
            checks = [
                image.check.entry(f"return_value[{index}]")
                for index, image in enumerate(result.images)
                if image.check is not None
            ]
            context["ti"].xcom_push(key="checks", value=checks)
        paid = ItemResult(
            label_of(self._given_sources),
            usage=result.usage,
            request_id=result.request_id,
            paid=True,
            images=len(result.images),
        )
        self._report(context, [with_cost(paid, self.hook.settings.pricing, params.model)], params)
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

    The other parameters are those of ``CometImageEditOperator``. Returns the URI of the
    batch's report, a JSONL file next to the outputs with one line per source, in source
    order (outputs, usage, request id, retries, error, reused), written in parts as items
    finish; pushes ``usage`` (summed) and ``summary`` (counts of items by outcome, tokens, the
    report's URI), which outlet Assets' events carry too. XComs stay small whatever the count.
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

    def execute(self, context: Context) -> str | dict[str, Any]:
        """Edit every source, write the report, push ``usage`` and ``summary``; fail at the end
        if any item failed. Returns the report's URI (with ``dry_run``, what a run would do)."""
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
        params = self._edit_params(checked=not self._given_rows)
        plans = self._plans(params, _map_index(context))
        if self.dry_run_only:
            return self._dry_run(context, plans, params)
        results = self._edit(
            context,
            plans,
            params,
            limit=self.max_concurrency,
            on_item_failure=self.on_item_failure,
            report=self._report_location(context),
        )
        return self._finish(context, results, params)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        """Resume after the triggerer: push the same XComs as a synchronous run."""
        results = self._resume(context, event, self._report_location(context))
        return self._finish(context, results, self._edit_params(checked=not self._given_rows))

    def _report_location(self, context: Context) -> str:
        """Where this task instance's report goes, next to its outputs (as its URI)."""
        from airflow_provider_cometapi.pipeline.scope import TaskScope
        from airflow_provider_cometapi.storage.paths import storage_path
        from airflow_provider_cometapi.storage.report import report_location

        scope = TaskScope.of(context, reuse_outputs=self.reuse_outputs, replace=self.replace)
        location = report_location(self.output_path or "", scope)
        return str(storage_path(location, self.output_conn_id))

    @cached_property
    def _given_sources(self) -> list[Source]:
        """``sources`` as given, classified (a prefix or a rows file stays one location; of
        listed rows, their images): lineage's inputs."""
        from airflow_provider_cometapi.storage.sources import as_source_list, classify, classify_all

        given = self._input("sources")
        if self._given_rows and not isinstance(given, str):
            rows = as_source_list(given, "sources")
            images = [row["image"] for row in rows if isinstance(row, dict) and "image" in row]
            return [classify(image, "image", self.source_conn_id) for image in images]
        return classify_all(given, "sources", self.source_conn_id)

    def _plans(self, params: EditParams, map_index: int) -> list[ItemPlan]:
        """One plan per source or row, each named by its own id (see ``item_id``), never its
        place. Rows are all checked first: under ``fail`` a bad row stops the batch before
        anything is sent; under ``continue`` it is an item that fails."""
        from dataclasses import replace

        from airflow_provider_cometapi.pipeline.plans import item_id

        entries = self._row_entries(params) if self._given_rows else self._source_entries()
        most_n = max([(row_params or params).n or 1 for _, _, row_params, _ in entries] or [1])
        checked = replace(params, n=most_n)
        output_path = self._check_output_path(checked, mapped=map_index >= 0, items=len(entries))
        seen: Counter[str] = Counter()
        plans = []
        for source, mask, row_params, stem in entries:  # one input twice: two items, two names
            plans.append(
                self._plan(
                    [source],
                    mask,
                    map_index=map_index,
                    output_path=output_path,
                    item=item_id([source], occurrence=seen[source.identity]),
                    params=row_params,
                    stem=stem,
                )
            )
            seen[source.identity] += 1
        return plans

    def _source_entries(self) -> list[_Entry]:
        """Each source (a prefix listed), with the operator's mask and parameters."""
        from airflow_provider_cometapi.storage.sources import (
            as_source_list,
            classify,
            expand_prefix,
        )

        listed = as_source_list(self._input("sources"), "sources")
        if len(listed) == 1 and isinstance(listed[0], str):
            listed = expand_prefix(listed[0].strip(), self.source_conn_id)
        return [
            (
                classify(source, "image", self.source_conn_id, place=f"sources[{slot}]"),
                self._mask_source,
                None,
                None,
            )
            for slot, source in enumerate(listed)
        ]

    def _row_entries(self, params: EditParams) -> list[_Entry]:
        """Each row: its image, its mask (or the operator's), its parameters and output name;
        a bad row is an input that fails with its error, unless under ``fail``, where any bad
        row raises ``CometAPIRowsError`` naming them, before anything is sent."""
        from airflow_provider_cometapi.pipeline.rows import BadRow, read_rows, rows_error
        from airflow_provider_cometapi.storage.sources import BadSource, classify

        rows = read_rows(self._input("sources"), params, self.source_conn_id)
        bad = [row for row in rows if isinstance(row, BadRow)]
        if bad and self.on_item_failure == "fail":
            raise rows_error(bad, len(rows))
        entries: list[_Entry] = []
        for row in rows:
            if isinstance(row, BadRow):
                error = type(row.error)(f"{row.place}: {row.error.message}", param=row.error.param)
                entries.append((BadSource(row.place, error), None, None, None))
                continue
            conn = self.source_conn_id
            mask = (
                classify(row.mask, "mask", conn, place=row.place) if row.mask is not None else None
            )
            entries.append(
                (
                    classify(row.image, "image", conn, place=row.place),
                    mask or self._mask_source,
                    row.params,
                    row.output_name,
                )
            )
        return entries

    @cached_property
    def _given_rows(self) -> bool:
        """Whether ``sources`` are rows (a list of dicts with ``image``, or a rows file)."""
        from airflow_provider_cometapi.pipeline.rows import are_rows

        return are_rows(self._input("sources"))

    def _finish(self, context: Context, results: list[ItemResult], params: EditParams) -> str:
        from airflow_provider_cometapi.pipeline import ledger
        from airflow_provider_cometapi.pipeline.records import summary
        from airflow_provider_cometapi.storage.report import publish

        results = ledger.settle(context, results, self.log)
        usage = self._report(context, results, params)
        lines = (result.report_line(position) for position, result in enumerate(results))
        report = publish(self._report_location(context), self.output_conn_id, lines)
        counts = {**summary(results, usage), "report": report}
        context["ti"].xcom_push(key="report", value=report)
        context["ti"].xcom_push(key="summary", value=counts)
        self._announce(context, counts)
        self.log.info("Report: %s", report)
        over_budget = [r for r in results if r.error and r.error["type"] == "CometAPIBudgetError"]
        if over_budget:
            raise self._budget_reached(len(over_budget), len(results), usage, report)
        failed = [result for result in results if result.error]
        if failed:  # name a real failure, not an item that was never started because of it
            first = next((result for result in failed if result.started), failed[0])
            assert first.error is not None
            raise CometAPIBatchError(
                f"{len(failed)} of {len(results)} items failed (first: {first.source}: "
                f"{first.error['message']}); the outputs of the others were written. The "
                f"report {report} has each item's error."
            )
        return report

    def _budget_reached(
        self, not_started: int, total: int, usage: dict[str, Any], report: str
    ) -> CometAPIBudgetError:
        """The error of a batch the budget stopped: the limits, what was paid, what was not
        started."""
        limits = [
            f"{name}={value}"
            for name, value in (
                ("max_total_tokens", self.max_total_tokens),
                ("max_cost", self.max_cost),
            )
            if value not in (None, "")
        ]
        cost = f" ({usage['cost']} {usage['currency']})" if "cost" in usage else ""
        shared = (
            " (shared by the DAG run's task instances)" if self.budget_scope == "dag_run" else ""
        )
        return CometAPIBudgetError(
            f"Budget {', '.join(limits)}{shared} was reached: this task instance paid "
            f"{usage.get('total_tokens', 0)} total tokens{cost} for {usage['requests']} edit(s), "
            f"and {not_started} of {total} items were not started. The report {report} lists "
            "them; run again with a larger budget to edit them (finished items are reused)."
        )


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
