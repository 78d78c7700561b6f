"""A batch that runs on a Celery worker (not deferred), for the distributed end-to-end test.

Its folders come from the run's params, with fixed defaults, so every process that parses this
file (the dag-processor, each worker) agrees.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator

with DAG(
    dag_id="cometapi_e2e_batch_sync",
    schedule=None,
    catchup=False,
    tags=["cometapi", "e2e"],
    params={
        "source_prefix": Param("file:///tmp/cometapi-e2e/inbox/", type="string"),
        "output_prefix": Param("file:///tmp/cometapi-e2e/edited/", type="string"),
    },
) as dag:
    CometImageEditBatchOperator(
        task_id="edit_folder",
        sources="{{ params.source_prefix }}",
        prompt="Make it a pencil sketch.",
        output_path="{{ params.output_prefix }}",
        max_concurrency=2,
        deferrable=False,
    )
