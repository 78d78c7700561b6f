"""Two images handed over through XCom, edited together, and a token report from the usage XCom."""

from __future__ import annotations

import base64
import json

from airflow.sdk import DAG, Param, task

from airflow_provider_cometapi.operators.image_edit import CometImageEditOperator

with DAG(
    dag_id="cometapi_xcom_usage_report",
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

    @task
    def collect_images() -> list[str]:
        """Hand two images downstream as base64 text (XCom cannot carry bytes): the sample
        photo and a mirrored copy, standing in for what an upstream step produced."""
        import io

        from PIL import Image, ImageOps

        from airflow_provider_cometapi.samples import PAPER_BOAT

        photo = PAPER_BOAT.read_bytes()
        mirrored = io.BytesIO()
        ImageOps.mirror(Image.open(io.BytesIO(photo))).save(mirrored, format="PNG")
        return [base64.b64encode(image).decode() for image in (photo, mirrored.getvalue())]

    edit = CometImageEditOperator(
        task_id="edit",
        image=collect_images(),
        prompt="Turn the scene into a sunset, keeping the boat.",
        output_path="{{ params.output_dir }}/xcom-edit/",
    )

    @task
    def token_report(outputs: list[str], params: dict | None = None, ti=None) -> dict:
        """Read the ``usage`` XCom and write a token report next to the outputs: what this
        task paid, apart from what it reused of an earlier run (paid then, not now)."""
        from airflow.sdk import ObjectStoragePath

        usage = ti.xcom_pull(task_ids="edit", key="usage")
        tokens = ("input_tokens", "output_tokens", "total_tokens")
        reused = usage["reused"]
        report = {
            "model": usage["model"],
            "request_id": usage["request_id"],
            "paid": {"images": usage["images"], **{key: usage.get(key) for key in tokens}},
            "reused": {"images": reused["images"], **{key: reused.get(key, 0) for key in tokens}},
            "outputs": outputs,
        }
        target = ObjectStoragePath(f"{params['output_dir'].rstrip('/')}/xcom-edit/tokens.json")
        target.write_text(json.dumps(report, indent=2))
        return report

    token_report(edit.output)
