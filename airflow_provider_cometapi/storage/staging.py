"""Before deferring, put in storage what the triggerer needs: in-memory inputs, and the plan of
every item (one JSONL line each), so the trigger's arguments stay small whatever the count."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

from airflow_provider_cometapi.exceptions import CometAPIValidationError
from airflow_provider_cometapi.storage.outputs import output_folder, safe_stem
from airflow_provider_cometapi.storage.paths import (
    URI,
    remove_empty_folders,
    storage_path,
    write_in_shared_folder,
)
from airflow_provider_cometapi.storage.sources import InlineSource, StoredSource, source_stem

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_cometapi.pipeline.plans import ItemPlan
    from airflow_provider_cometapi.pipeline.runners import Work
    from airflow_provider_cometapi.storage.sources import Source

STAGING_FOLDER = ".cometapi-staging"
PLAN_FILE = "plan.jsonl"
PROCESS_LOCAL_SCHEMES = frozenset({"memory"})
"""Storage that lives inside one process, so the triggerer cannot read what a worker staged."""


def check_staging_location(output_path: str) -> None:
    """Refuse, before anything is sent, an ``output_path`` the triggerer cannot share."""
    scheme = output_path.partition("://")[0].lower() if URI.match(output_path) else "file"
    if scheme in PROCESS_LOCAL_SCHEMES:
        raise CometAPIValidationError(
            f"output_path {output_path!r} is on {scheme}://, which lives inside this worker's "
            "process; a deferred edit runs on the triggerer, another process, which cannot read "
            "the inputs and plan staged there. Use object storage (s3://, gs://, ...) or a "
            "file:// folder that worker and triggerer share, or deferrable=False; nothing was "
            "sent.",
            param="output_path",
        )


def staging_root(output_path: str, context: Context) -> str:
    """``<output folder>/.cometapi-staging/<dag>/<run>/<task>-<map index>/``."""
    folder = output_folder(output_path)
    ti = context["ti"]
    parts = [ti.dag_id, ti.run_id, f"{ti.task_id}-{getattr(ti, 'map_index', -1)}"]
    return folder + STAGING_FOLDER + "/" + "/".join(safe_stem(str(part)) for part in parts) + "/"


def stage_inputs(work: list[Work], root: str, conn_id: str | None) -> list[Work]:
    """The items with every inline input of their plans written under ``root``. Settled items
    pass through; an input several plans share is staged once."""
    from airflow_provider_cometapi.pipeline.plans import ItemPlan

    staged: dict[tuple[str, str], StoredSource] = {}

    def place(source: Source, name: str) -> Source:
        if not isinstance(source, InlineSource):
            return source
        key = (source.name, source.identity)
        if key not in staged:
            base = f"{safe_stem(source_stem(source.name))}.staged"  # outputs keep the stem
            target = storage_path(f"{root}{safe_stem(name)}/{base}", conn_id)
            write_in_shared_folder(target, lambda: target.write_bytes(source.data))
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

    return [placed(item) if isinstance(item, ItemPlan) else item for item in work]


def write_plan(work: list[Work], root: str, conn_id: str | None) -> str:
    """Write each item (its plan to run, or its settled result) as a line; the file's URI."""
    from airflow_provider_cometapi.pipeline.records import ItemResult

    path = storage_path(root + PLAN_FILE, conn_id)

    def write() -> None:
        with path.open("w") as handle:
            for item in work:
                line = (
                    {"result": item.to_json()}
                    if isinstance(item, ItemResult)
                    else {"plan": item.to_json()}
                )
                handle.write(json.dumps(line) + "\n")

    write_in_shared_folder(path, write)
    return str(path)


def read_plan(uri: str, conn_id: str | None) -> list[Work]:
    """The items ``write_plan`` wrote, in order."""
    from airflow_provider_cometapi.pipeline.plans import ItemPlan
    from airflow_provider_cometapi.pipeline.records import ItemResult

    work: list[Work] = []
    with storage_path(uri, conn_id).open("r") as handle:
        for text in handle:
            line = json.loads(text)
            work.append(
                ItemPlan.from_json(line["plan"])
                if "plan" in line
                else ItemResult.from_json(line["result"])
            )
    return work


def remove_staging(root: str, conn_id: str | None) -> None:
    """Delete the staged inputs and the plan, and on local disk the folders left empty up to
    the output folder (best effort: they are only copies)."""
    try:
        path = storage_path(root, conn_id)
        if path.exists():
            path.fs.rm(path.path, recursive=True)
        outputs = root.rpartition(f"/{STAGING_FOLDER}/")[0] + "/"
        remove_empty_folders(root, conn_id, below=outputs)
    except Exception:
        return
