"""One edit item from sources to written outputs: the parts the worker and the triggerer share."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.request import build_edit_request
from airflow_provider_cometapi.api.text import excerpt
from airflow_provider_cometapi.exceptions import CometAPIBatchError
from airflow_provider_cometapi.storage.outputs import StagedOutputs
from airflow_provider_cometapi.storage.sources import read_source, read_sources, source_stem

if TYPE_CHECKING:
    from airflow_provider_cometapi.api.request import EditRequest
    from airflow_provider_cometapi.api.results import EditOutcome


@dataclass(frozen=True)
class EditParams:
    """The edit's parameters, JSON-friendly so they can travel to the triggerer."""

    prompt: str
    model: str
    n: int | None = None
    quality: str | None = None
    size: str | None = None
    output_format: str | None = None
    response_format: str | None = None
    extra_fields: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict."""
        return asdict(self)

    def request(self, sources: list[tuple[str, bytes]], mask: Any) -> EditRequest:
        """The checked request for these sources (read already) and mask."""
        return build_edit_request(
            sources[0] if len(sources) == 1 else sources,
            self.prompt,
            model=self.model,
            mask=mask,
            n=self.n,
            quality=self.quality,
            size=self.size,
            output_format=self.output_format,
            response_format=self.response_format,
            extra_fields=self.extra_fields,
        )


@dataclass(frozen=True)
class ItemPlan:
    """Where one item's inputs come from and where its outputs go."""

    sources: list[Any]
    mask: Any
    source_conn_id: str | None
    output_path: str
    output_conn_id: str | None
    map_index: int
    label: str


def prepare_item(plan: ItemPlan, params: EditParams) -> tuple[EditRequest, StagedOutputs]:
    """Read and check an item's inputs, and open the staging sink for its outputs."""
    sources = read_sources(plan.sources, "image", plan.source_conn_id)
    mask = read_source(plan.mask, "mask", plan.source_conn_id) if plan.mask else None
    request = params.request(sources, mask)
    sink = StagedOutputs(
        plan.output_path,
        stem=source_stem(sources[0][0]),
        map_index=plan.map_index,
        conn_id=plan.output_conn_id,
    )
    return request, sink


def fingerprint(request: EditRequest, plan: ItemPlan) -> str:
    """sha256 over the input bytes, the mask, every sent field and where the outputs go."""
    digest = hashlib.sha256()
    for part in [*request.images, *([request.mask] if request.mask else [])]:
        digest.update(len(part.data).to_bytes(8, "big"))
        digest.update(part.data)
    where = {"output_path": plan.output_path, "map_index": plan.map_index}
    digest.update(json.dumps([request.fields, where], sort_keys=True).encode())
    return digest.hexdigest()


def item_result(
    label: str,
    *,
    outputs: list[str] | None = None,
    outcome: EditOutcome | None = None,
    error: Exception | None = None,
) -> dict[str, Any]:
    """The JSON-friendly record of one item: source, outputs, usage, request id, error."""
    return {
        "source": label,
        "outputs": outputs or [],
        "usage": outcome.usage if outcome else {},
        "request_id": outcome.request_id if outcome else getattr(error, "request_id", None),
        "retries": outcome.retries if outcome else 0,
        "error": describe_error(error) if error else None,
        "reused": False,
    }


def not_started(label: str) -> dict[str, Any]:
    """The record of an item never started because an earlier one failed under ``fail``."""
    error = CometAPIBatchError("not started: an earlier item failed and on_item_failure='fail'")
    return item_result(label, error=error)


def reused_result(label: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """The record of an item whose outputs a manifest proves complete: nothing is paid again."""
    return {
        "source": label,
        "outputs": list(manifest["outputs"]),
        "usage": manifest.get("usage") or {},
        "request_id": manifest.get("request_id"),
        "retries": 0,
        "error": None,
        "reused": True,
    }


def manifest_record(result: dict[str, Any]) -> dict[str, Any]:
    """What a manifest keeps of a finished item."""
    return {key: result[key] for key in ("source", "outputs", "usage", "request_id")}


def describe_error(error: Exception) -> dict[str, Any]:
    """An error as JSON: its class name, message and status."""
    return {
        "type": type(error).__name__,
        "message": getattr(error, "message", None) or str(error),
        "status": getattr(error, "status", None),
        "request_id": getattr(error, "request_id", None),
        "param": getattr(error, "param", None),
        "server_message": getattr(error, "server_message", None),
        "code": getattr(error, "code", None),
    }


def sum_usage(usages: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Add up usage dicts key by key, nested ones too; non-numbers keep the first value."""
    total: dict[str, Any] = {}
    for usage in usages:
        for key, value in usage.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, Mapping)):
                total.setdefault(key, value)
            elif isinstance(value, Mapping):
                total[key] = sum_usage([total.get(key) or {}, value])
            else:
                total[key] = total.get(key, 0) + value
    return total


class BatchProgress:
    """Counts finished items and logs ``37/200 edited, 2 retried, 0 failed`` on ``log``."""

    def __init__(self, log: Any, total: int) -> None:
        self.log, self.total = log, total
        self.edited = self.retried = self.failed = 0

    def add(self, result: dict[str, Any]) -> None:
        """Count one finished item and log the running totals."""
        self.failed += bool(result["error"])
        self.edited += not result["error"]
        self.retried += bool(result["retries"])
        self.log.info(
            "%d/%d edited, %d retried, %d failed",
            self.edited,
            self.total,
            self.retried,
            self.failed,
        )


def location_label(value: Any) -> str:
    """A short name for an input in logs and XCom: never its bytes, at most an excerpt."""
    from airflow_provider_cometapi.storage.sources import stored_location

    if isinstance(value, list):
        return excerpt(", ".join(location_label(item) for item in value))
    return excerpt(stored_location(value) or f"<{type(value).__name__} input>")
