"""Edit every image under an object-storage prefix, one mapped task instance per image."""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param, task

from airflow_provider_cometapi.operators.image_edit import CometImageEditOperator

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
default_root = os.environ.get("COMETAPI_EXAMPLES_OUTPUT", "/tmp/cometapi-examples")

with DAG(
    dag_id="cometapi_edit_storage_prefix",
    schedule=None,
    catchup=False,
    tags=["cometapi", "example"],
    params={
        "source_prefix": Param(f"file://{default_root}/inbox/", type="string"),
        "output_prefix": Param(f"file://{default_root}/edited/", type="string"),
    },
) as dag:

    @task
    def list_images(params: dict | None = None) -> list[str]:
        """URIs of the images under ``source_prefix`` (``s3://conn_id@bucket/prefix/`` works)."""
        from airflow.sdk import ObjectStoragePath

        prefix = ObjectStoragePath(params["source_prefix"])
        return sorted(
            str(path)
            for path in prefix.iterdir()
            if path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)
        )

    CometImageEditOperator.partial(
        task_id="edit",
        prompt="Give it a watercolour look.",
        output_path="{{ params.output_prefix }}",
    ).expand(image=list_images())
