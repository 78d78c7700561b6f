"""The example DAGs on a real deployment: scheduler, dag-processor, triggerer, API server."""

from __future__ import annotations

import json
from urllib.parse import quote, urlsplit

import pytest

from airflow_provider_cometapi.samples import PAPER_BOAT
from tests.dagrun import report_lines
from tests.e2e.browser import browser_page
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


@pytest.fixture(scope="module")
def page(deployment):
    with browser_page(deployment.home / "screenshots") as opened:
        yield opened


def test_a_connection_made_in_the_form_passes_its_test_in_the_browser(deployment, page):
    emulator = urlsplit(deployment.emulator_url)
    shots = deployment.home / "screenshots"
    page.goto(f"{deployment.base_url}/connections", wait_until="networkidle")
    page.get_by_role("button", name="Add Connection").click()
    page.locator("input[name=connection_id]").fill("cometapi_browser")
    page.get_by_role("combobox").first.click()
    page.keyboard.type("CometAPI")
    page.get_by_role("option", name="CometAPI").click()
    page.locator("input[name=host]").fill(f"http://{emulator.hostname}")
    page.locator("input[name=password]").fill("browser-key")
    page.locator("input[name=port]").fill(str(emulator.port))  # 3.3.2's Test needs a port
    page.get_by_text("Extra Fields", exact=True).click()
    page.locator("input[name=element_timeout]").fill("120")
    page.screenshot(path=shots / "1-connection-form.png", full_page=True)
    page.get_by_role("button", name="Save").click()

    row = page.get_by_role("row").filter(has_text="cometapi_browser")
    with page.expect_response(lambda r: r.url.endswith("/api/v2/connections/test")) as tested:
        row.get_by_role("button", name="Test Connection").click()
    page.screenshot(path=shots / "2-connection-tested.png")

    result = tested.value.json()
    assert tested.value.status == 200, result
    assert result["status"] is True, result
    assert result["message"].startswith(f"Connected to http://{emulator.hostname}:{emulator.port}")
    stored = deployment.api("/api/v2/connections/cometapi_browser")
    assert (stored["conn_type"], stored["port"]) == ("cometapi", emulator.port)
    assert json.loads(stored["extra"])["timeout"] == 120
    assert "browser-key" not in json.dumps(stored)


def test_the_xcom_view_of_a_finished_edit_shows_its_outputs_and_usage(deployment, page, out):
    dag_id = "cometapi_edit_local_image"
    run_id = deployment.trigger(dag_id, {"output_dir": str(out / "browser")})
    assert deployment.wait_for_run(dag_id, run_id) == "success", deployment.log_tail()

    page.goto(
        f"{deployment.base_url}/dags/{dag_id}/runs/{quote(run_id)}/tasks/add_ribbon/xcom",
        wait_until="networkidle",
    )
    page.get_by_role("row").filter(has_text="usage").first.wait_for()
    page.get_by_role("button", name="Expand all").click()
    page.screenshot(path=deployment.home / "screenshots" / "3-xcom-view.png", full_page=True)

    shown = "".join(page.locator("body").inner_text().split())  # the view wraps long values
    for key in ("checks", "return_value", "usage", '"total_tokens"', '"changed_fraction"'):
        assert key in shown
    assert f'"file://{out}/browser/local-edit/paper-boat-0.png"' in shown


def test_every_started_process_stops(deployment):
    deployment.stop()

    assert all(p.returncode is not None for p in deployment.processes.values())
    assert not [name for name, p in deployment.processes.items() if group_alive(p.pid)]
