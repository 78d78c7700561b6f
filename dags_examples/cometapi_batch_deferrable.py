"""Edit a folder of images as one batch on the triggerer, and schedule a report on the result.

``cometapi_batch_deferrable`` holds no worker slot while its edits run; when it succeeds it
updates the ``cometapi_edited_images`` Asset, whose event carries the batch's summary (counts,
tokens, and the URI of its JSONL report, one line per source), and that starts
``cometapi_edited_images_report``.
"""

from __future__ import annotations

import json

from airflow.sdk import DAG, Asset, Param, task

from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator

EDITED_IMAGES = Asset("cometapi_edited_images")
EXAMPLES_ROOT = "/tmp/cometapi-examples"
"""Where the examples read and write by default: a fixed value, so that every process that
parses this file agrees; pass other locations in the run's params."""

with DAG(
    dag_id="cometapi_batch_deferrable",
    schedule=None,
    catchup=False,
    tags=["cometapi", "example"],
    params={
        "source_prefix": Param(f"file://{EXAMPLES_ROOT}/inbox/", type="string"),
        "output_prefix": Param(f"file://{EXAMPLES_ROOT}/batch-edited/", type="string"),
    },
) as edit_dag:
    CometImageEditBatchOperator(
        task_id="edit_folder",
        sources="{{ params.source_prefix }}",
        prompt="Give it a watercolour look.",
        output_path="{{ params.output_prefix }}",
        max_concurrency=8,
        on_item_failure="continue",
        deferrable=True,
        outlets=[EDITED_IMAGES],
    )

with DAG(
    dag_id="cometapi_edited_images_report",
    schedule=[EDITED_IMAGES],
    catchup=False,
    tags=["cometapi", "example"],
) as report_dag:

    @task
    def report_new_edits(triggering_asset_events=None) -> list[str]:
        """Collect the URIs the triggering batch wrote, from its report, and list them next to
        the images."""
        from airflow.sdk import ObjectStoragePath

        outputs = []
        for event in triggering_asset_events[EDITED_IMAGES]:
            with ObjectStoragePath(event.extra["report"]).open("r") as report:
                for line in report:
                    outputs.extend(json.loads(line)["outputs"])
        if outputs:
            folder = outputs[0].rpartition("/")[0]
            ObjectStoragePath(f"{folder}/new-edits.json").write_text(json.dumps(outputs))
        return outputs

    report_new_edits()
