"""The operators report what they read and wrote as OpenLineage datasets."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap

import pytest

from airflow_provider_cometapi.lineage import dataset_name
from airflow_provider_cometapi.samples import PAPER_BOAT, PAPER_BOAT_MASK
from airflow_provider_cometapi.storage.sources import classify, stored_locations
from tests.dagrun import HEADER
from tests.naming import batch_output
from tests.settings import TEST_DAGS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def base64_of_boat() -> str:
    return base64.b64encode(PAPER_BOAT.read_bytes()).decode()


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("s3://bucket/edited/a-0.png", ("s3://bucket", "edited/a-0.png")),
        ("s3://aws_default@bucket/edited/a-0.png", ("s3://bucket", "edited/a-0.png")),
        ("gs://bucket/inbox/", ("gs://bucket", "inbox")),
        ("gs://bucket/inbox/*.png", ("gs://bucket", "inbox")),
        ("file:///data/boat.png", ("file", "/data/boat.png")),
        ("/data/boat.png", ("file", "/data/boat.png")),
        ("memory:///cometapi/x.png", ("memory", "/cometapi/x.png")),
    ],
)
def test_dataset_names_follow_openlineage_naming(location, expected):
    assert dataset_name(location) == expected


def test_in_memory_inputs_are_not_datasets():
    encoded = base64_of_boat()
    values = [b"\x89PNG", {"b64_json": encoded}, encoded, f"data:image/png;base64,{encoded}"]
    sources = [classify(value, "image", None) for value in [*values, "/a.png", "s3://b/k.png"]]
    assert stored_locations(sources) == ["/a.png", "s3://b/k.png"]


def run_with_openlineage(tmp_path, body: str) -> list[dict]:
    """``dag.test()`` a DAG in a fresh process with OpenLineage's file transport; the events."""
    events_file = tmp_path / "openlineage.jsonl"
    dag_file = TEST_DAGS / "lineage_probe.py"
    dag_file.write_text(
        HEADER.format(dag_id="lineage_probe", native=False)
        + textwrap.indent(textwrap.dedent(body).strip() + "\n", "    ")
    )
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from pathlib import Path\n"
        "from tests.dagrun import DagRunner\n"
        "outcome = DagRunner(Path(sys.argv[2])).run_file(Path(sys.argv[3]), 'lineage_probe')\n"
        "assert outcome.state == 'success', outcome.state\n"
    )
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "cometapi-tests",
    }
    done = subprocess.run(
        [sys.executable, "-c", script, REPO, str(TEST_DAGS), str(dag_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads(line) for line in events_file.read_text().splitlines()]


def datasets(events: list[dict], task_id: str, side: str) -> set[tuple[str, str]]:
    (complete,) = [
        e
        for e in events
        if e["eventType"] == "COMPLETE" and e["job"]["name"] == f"lineage_probe.{task_id}"
    ]
    return {(d["namespace"], d["name"]) for d in complete[side]}


def test_completed_edits_emit_their_inputs_and_outputs(airflow_db, cometapi_conn, s3, tmp_path):
    s3.create_bucket(Bucket="lineage")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.png").write_bytes(PAPER_BOAT.read_bytes())
    (inbox / "b.png").write_bytes(PAPER_BOAT.read_bytes())

    events = run_with_openlineage(
        tmp_path,
        f"""
        CometImageEditOperator(
            task_id="from_files",
            image={str(PAPER_BOAT)!r},
            mask={str(PAPER_BOAT_MASK)!r},
            prompt="Add a ribbon",
            n=2,
            output_path="s3://s3_test@lineage/edited/",
        )
        CometImageEditOperator(
            task_id="from_base64",
            image={base64_of_boat()!r},
            prompt="Add a ribbon",
            output_path="{tmp_path}/b64/",
        )
        from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator
        CometImageEditBatchOperator(
            task_id="batch",
            sources="file://{inbox}/",
            prompt="Add a ribbon",
            output_path="file://{tmp_path}/batch/",
        )
        """,
    )

    assert datasets(events, "from_files", "inputs") == {
        ("file", str(PAPER_BOAT)),
        ("file", str(PAPER_BOAT_MASK)),
    }
    assert datasets(events, "from_files", "outputs") == {
        ("s3://lineage", "edited/paper-boat-0.png"),
        ("s3://lineage", "edited/paper-boat-1.png"),
    }
    assert datasets(events, "from_base64", "inputs") == set()
    assert datasets(events, "from_base64", "outputs") == {("file", f"{tmp_path}/b64/image-0.png")}
    assert datasets(events, "batch", "inputs") == {("file", str(inbox))}
    assert datasets(events, "batch", "outputs") == {
        ("file", f"{tmp_path}/batch/{batch_output('a', f'file://{inbox}/a.png')}"),
        ("file", f"{tmp_path}/batch/{batch_output('b', f'file://{inbox}/b.png')}"),
    }
