"""Stage in-memory inputs in storage before deferring, so the triggerer reads paths, not bytes."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from airflow_provider_cometapi.storage.outputs import output_folder, safe_stem
from airflow_provider_cometapi.storage.paths import storage_path
from airflow_provider_cometapi.storage.sources import InlineSource, StoredSource, source_stem

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_cometapi.pipeline.plans import ItemPlan
    from airflow_provider_cometapi.pipeline.runners import Work
    from airflow_provider_cometapi.storage.sources import Source

STAGING_FOLDER = ".cometapi-staging"


def stage_inputs(
    work: list[Work], context: Context, conn_id: str | None
) -> tuple[list[Work], list[str]]:
    """The items with every inline input of their plans written to storage, and the URIs of
    what was staged. Settled items pass through; an input several plans share is staged once."""
    from airflow_provider_cometapi.pipeline.plans import ItemPlan

    plans = [item for item in work if isinstance(item, ItemPlan)]
    root = _staging_root(plans[0].output_path, context)
    staged: dict[tuple[str, str], StoredSource] = {}

    def place(source: Source, name: str) -> Source:
        if not isinstance(source, InlineSource):
            return source
        key = (source.name, source.identity)
        if key not in staged:
            base = f"{safe_stem(source_stem(source.name))}.staged"  # outputs keep the stem
            target = storage_path(f"{root}{safe_stem(name)}/{base}", conn_id)
            if target.protocol in ("", "file", "local"):
                target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.data)
            staged[key] = StoredSource(str(target), conn_id)
        return staged[key]

    def placed(plan: ItemPlan) -> ItemPlan:
        return replace(
            plan,
            mask=place(plan.mask, "mask") if plan.mask is not None else None,
            sources=[
                place(source, f"item-{plan.item or 'image'}-{i}")
                for i, source in enumerate(plan.sources)
            ],
        )

    return [placed(item) if isinstance(item, ItemPlan) else item for item in work], [
        source.location for source in staged.values()
    ]


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
