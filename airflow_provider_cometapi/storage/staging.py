"""Stage in-memory inputs in storage before deferring, so the triggerer reads paths, not bytes."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.storage.outputs import output_folder, safe_stem
from airflow_provider_cometapi.storage.paths import storage_path
from airflow_provider_cometapi.storage.sources import read_source, source_stem, stored_location

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_cometapi.editing import ItemPlan

STAGING_FOLDER = ".cometapi-staging"


def stage_inputs(
    plans: list[ItemPlan], context: Context, conn_id: str | None, skip: list[bool]
) -> tuple[list[ItemPlan], list[str]]:
    """Plans whose inputs are all paths or URIs, and the URIs of what was staged for them.

    Plans marked in ``skip`` (already settled as failed) are passed through untouched.
    """
    root = _staging_root(plans[0].output_path, context)
    staged: list[str] = []

    def place(value: Any, name: str, source_conn_id: str | None) -> Any:
        if value is None or stored_location(value) is not None:
            return stored_location(value) if value is not None else None
        filename, data = read_source(value, name, source_conn_id)
        base = f"{safe_stem(source_stem(filename))}.staged"  # outputs keep the source's stem
        target = storage_path(f"{root}{safe_stem(name)}/{base}", conn_id)
        if target.protocol in ("", "file", "local"):
            target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        staged.append(str(target))
        return str(target)

    mask = place(plans[0].mask, "mask", plans[0].source_conn_id)
    placed = [
        plan
        if skipped
        else replace(
            plan,
            mask=mask,
            sources=[
                place(source, f"item{plan.map_index}-{i}", plan.source_conn_id)
                for i, source in enumerate(plan.sources)
            ],
        )
        for plan, skipped in zip(plans, skip, strict=True)
    ]
    return placed, staged


def remove_staged(uris: list[str], conn_id: str | None) -> None:
    """Delete staged inputs (best effort: they are only copies)."""
    for uri in uris:
        try:
            path = storage_path(uri, conn_id)
            if path.exists():
                path.unlink()
        except Exception:
            continue


def _staging_root(output_path: str, context: Context) -> str:
    """``<output folder>/.cometapi-staging/<dag>/<run>/<task>-<map index>/``."""
    folder = output_folder(output_path)
    ti = context["ti"]
    parts = [ti.dag_id, ti.run_id, f"{ti.task_id}-{getattr(ti, 'map_index', -1)}"]
    return folder + STAGING_FOLDER + "/" + "/".join(safe_stem(str(part)) for part in parts) + "/"
