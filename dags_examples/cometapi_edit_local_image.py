"""Edit the packaged paper-boat sample, mask included, into a local folder."""

from __future__ import annotations

from airflow.sdk import DAG, Param

from airflow_provider_cometapi.operators.image_edit import CometImageEditOperator
from airflow_provider_cometapi.samples import PAPER_BOAT, PAPER_BOAT_MASK

with DAG(
    dag_id="cometapi_edit_local_image",
    schedule=None,
    catchup=False,
    tags=["cometapi", "example"],
    params={
        "output_dir": Param(
            "/tmp/cometapi-examples",  # fixed: every process parsing this file must agree
            type="string",
            description="Folder (or object-storage prefix) the edited images go to.",
        ),
    },
) as dag:
    CometImageEditOperator(
        task_id="add_ribbon",
        image=str(PAPER_BOAT),
        mask=str(PAPER_BOAT_MASK),
        prompt="Add a small red ribbon to the tip of the paper boat.",
        n=2,
        output_path="{{ params.output_dir }}/local-edit/",
    )
