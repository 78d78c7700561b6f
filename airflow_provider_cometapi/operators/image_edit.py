"""CometImageEditOperator: read images, edit them with CometAPI, write the outputs back."""

from __future__ import annotations

import base64
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_cometapi.exceptions import CometAPIValidationError
from airflow_provider_cometapi.hooks.cometapi import CometApiHook

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_cometapi.api.results import ImageEditResult


class CometImageEditOperator(BaseOperator):
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
    """

    template_fields: Sequence[str] = (
        "prompt",
        "image",
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
        image: Any,
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
        max_xcom_bytes: int = 1_048_576,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.image = image
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
        self.max_xcom_bytes = max_xcom_bytes

    @cached_property
    def hook(self) -> CometApiHook:
        """The hook for ``cometapi_conn_id``."""
        return CometApiHook(cometapi_conn_id=self.cometapi_conn_id)

    def execute(self, context: Context) -> list[str]:
        """Read the sources, edit, write or return the outputs, and push ``usage``."""
        from airflow_provider_cometapi.api.request import check_n
        from airflow_provider_cometapi.storage.outputs import check_output_path
        from airflow_provider_cometapi.storage.sources import read_source, read_sources

        map_index = _map_index(context)
        if self.output_path:
            n = check_n(self.n) if self.n is not None else 1
            check_output_path(self.output_path, n=n, mapped=map_index >= 0)
        sources = read_sources(self.image, "image", self.source_conn_id)
        mask = read_source(self.mask, "mask", self.source_conn_id) if self.mask else None
        model = self.model or self.hook.settings.default_model
        with self.hook:
            result = self.hook.edit_image(
                sources[0] if len(sources) == 1 else sources,
                self.prompt,
                mask=mask,
                model=model,
                n=self.n,
                quality=self.quality,
                size=self.size,
                output_format=self.output_format,
                response_format=self.response_format,
                extra_fields=self.extra_fields,
            )
        outputs = self._deliver(result, sources[0][0], map_index)
        usage = {**result.usage, "model": model, "images": len(outputs)}
        usage["request_id"] = result.request_id
        context["ti"].xcom_push(key="usage", value=usage)
        self.log.info(
            "Edited %d image(s) with %s: %s input + %s output = %s total tokens (request %s)",
            len(outputs),
            model,
            usage.get("input_tokens", "?"),
            usage.get("output_tokens", "?"),
            usage.get("total_tokens", "?"),
            result.request_id,
        )
        return outputs

    def _deliver(self, result: ImageEditResult, source_name: str, map_index: int) -> list[str]:
        """Write the outputs to ``output_path``, or return them as base64 within the XCom cap."""
        from airflow_provider_cometapi.storage.outputs import output_targets, write_outputs
        from airflow_provider_cometapi.storage.sources import source_stem

        if self.output_path:
            targets = output_targets(
                self.output_path,
                stem=source_stem(source_name),
                extensions=[image.extension for image in result.images],
                map_index=map_index,
            )
            written = write_outputs(
                [image.data for image in result.images], targets, self.output_conn_id
            )
            for uri in written:
                self.log.info("Wrote %s", uri)
            return written
        encoded_size = sum((len(image.data) + 2) // 3 * 4 for image in result.images)
        if encoded_size > self.max_xcom_bytes:
            raise CometAPIValidationError(
                f"The {len(result.images)} edited image(s) are {encoded_size} bytes as base64, "
                f"over max_xcom_bytes={self.max_xcom_bytes}: XCom lives in the metadata "
                "database, so set output_path to write the images to storage instead.",
                param="output_path",
            )
        return [base64.b64encode(image.data).decode("ascii") for image in result.images]


def _map_index(context: Context) -> int:
    map_index = getattr(context["ti"], "map_index", -1)
    return map_index if isinstance(map_index, int) else -1
