"""Edit every image under an object-storage prefix, one mapped task instance per image."""

from __future__ import annotations

from airflow.sdk import DAG, Param, task

from airflow_provider_cometapi.operators.image_edit import CometImageEditOperator

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
EXAMPLES_ROOT = "/tmp/cometapi-examples"
"""Where the examples read and write by default: a fixed value, so that every process that
parses this file agrees; pass other locations in the run's params."""

with DAG(
    dag_id="cometapi_edit_storage_prefix",
    schedule=None,
    catchup=False,
    tags=["cometapi", "example"],
    params={
        "source_prefix": Param(f"file://{EXAMPLES_ROOT}/inbox/", type="string"),
        "output_prefix": Param(f"file://{EXAMPLES_ROOT}/edited/", type="string"),
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
