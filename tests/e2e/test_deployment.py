"""The example DAGs on a real deployment: scheduler, dag-processor, triggerer, API server."""

from __future__ import annotations

import json

import pytest

from airflow_provider_cometapi.samples import PAPER_BOAT
from tests.dagrun import report_lines
from tests.e2e.deployment import Deployment, group_alive
from tests.imaging import decode
from tests.naming import batch_output
from tests.settings import EXAMPLE_DAGS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]  # the first test starts it all


@pytest.fixture(scope="module")
def deployment():
    with Deployment(EXAMPLE_DAGS) as started:
        yield started


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e-out")


def billed_usage(deployment, request_id):
    (billed,) = [
        b for b in deployment.emulator_records()["billed"] if b["request_id"] == request_id
    ]
    return billed["usage"]


def test_local_image_example_succeeds_on_the_scheduler(deployment, out):
    dag_id = "cometapi_edit_local_image"
    run_id = deployment.trigger(dag_id, {"output_dir": str(out)})

    assert deployment.wait_for_run(dag_id, run_id) == "success", deployment.log_tail()
    outputs = deployment.xcom(dag_id, run_id, "add_ribbon", "return_value")
    assert outputs == [f"file://{out}/local-edit/paper-boat-{i}.png" for i in (0, 1)]
    assert decode((out / "local-edit" / "paper-boat-1.png").read_bytes()).size == (512, 384)
    usage = deployment.xcom(dag_id, run_id, "add_ribbon", "usage")
    assert usage["images"] == 2
    server_usage = billed_usage(deployment, usage["request_id"])
    assert {key: usage[key] for key in server_usage} == server_usage


def test_xcom_example_writes_its_token_report(deployment, out):
    dag_id = "cometapi_xcom_usage_report"
    run_id = deployment.trigger(dag_id, {"output_dir": str(out)})

    assert deployment.wait_for_run(dag_id, run_id) == "success", deployment.log_tail()
    report = json.loads((out / "xcom-edit" / "tokens.json").read_text())
    billed = billed_usage(deployment, report["request_id"])["total_tokens"]
    assert report["paid"]["total_tokens"] == billed
    assert report["reused"]["total_tokens"] == 0
    assert deployment.xcom(dag_id, run_id, "token_report", "return_value") == report


def test_prefix_example_maps_one_task_per_image(deployment, out):
    inbox = out / "prefix-inbox"
    inbox.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (inbox / name).write_bytes(PAPER_BOAT.read_bytes())
    dag_id = "cometapi_edit_storage_prefix"
    run_id = deployment.trigger(
        dag_id, {"source_prefix": f"file://{inbox}/", "output_prefix": f"file://{out}/mapped/"}
    )

    assert deployment.wait_for_run(dag_id, run_id) == "success", deployment.log_tail()
    assert sorted(p.name for p in (out / "mapped").glob("*.png")) == [
        "a-0-0.png",
        "b-1-0.png",
        "c-2-0.png",
    ]
    for map_index in range(3):
        assert deployment.xcom(dag_id, run_id, "edit", "usage", map_index)["images"] == 1


def test_deferrable_batch_runs_on_the_triggerer_and_schedules_the_report(deployment, out):
    inbox = out / "batch-inbox"
    inbox.mkdir()
    for name in ("a.png", "b.png"):
        (inbox / name).write_bytes(PAPER_BOAT.read_bytes())
    deployment.unpause("cometapi_edited_images_report")
    dag_id = "cometapi_batch_deferrable"
    run_id = deployment.trigger(
        dag_id, {"source_prefix": f"file://{inbox}/", "output_prefix": f"file://{out}/batch/"}
    )

    assert deployment.wait_for_run(dag_id, run_id) == "success", deployment.log_tail()
    outputs = [
        f"file://{out}/batch/{batch_output(name, f'file://{inbox}/{name}.png')}"
        for name in ("a", "b")
    ]
    report = deployment.xcom(dag_id, run_id, "edit_folder", "return_value")
    items = report_lines(report)
    assert [uri for item in items for uri in item["outputs"]] == outputs
    logs = deployment.task_logs(dag_id, run_id, "edit_folder")
    assert "Pausing task as DEFERRED" in logs["attempt=1.log"]
    (trigger_log,) = [text for name, text in logs.items() if ".trigger." in name]
    assert "Editing 2 item(s), up to 8 in flight" in trigger_log  # the batch's start line
    assert "2/2 done: 2 edited, 0 reused, 0 retried, 0 failed" in trigger_log  # and its end
    assert "Trigger fired event" in trigger_log
    for item in items:
        assert item["usage"] == billed_usage(deployment, item["request_id"])

    (lineage,) = deployment.openlineage_events(f"{dag_id}.edit_folder")
    assert [(d["namespace"], d["name"]) for d in lineage["inputs"]] == [("file", str(inbox))]
    assert sorted(d["name"] for d in lineage["outputs"]) == [
        uri[len("file://") :] for uri in outputs
    ]

    report_run = deployment.wait_for_scheduled_run("cometapi_edited_images_report")
    state = deployment.wait_for_run("cometapi_edited_images_report", report_run)
    assert state == "success", deployment.log_tail()
    assert json.loads((out / "batch" / "new-edits.json").read_text()) == outputs


def test_connections_test_cli_reaches_the_emulator(deployment):
    passed = deployment.cli("connections", "test", "cometapi_default")
    assert "Connection success!" in passed
    unreachable = json.dumps(
        {"conn_type": "cometapi", "host": "http://127.0.0.1:9", "password": "k"}
    )
    failed = deployment.cli(
        "connections",
        "test",
        "cometapi_down",
        env={"AIRFLOW_CONN_COMETAPI_DOWN": unreachable},
        check=False,
    )
    assert "Connection failed" in failed
    assert "Could not reach CometAPI at http://127.0.0.1:9 (" in failed


def test_every_started_process_stops(deployment):
    deployment.stop()

    assert all(p.returncode is not None for p in deployment.processes.values())
    assert not [name for name, p in deployment.processes.items() if group_alive(p.pid)]
