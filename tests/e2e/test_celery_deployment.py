"""The examples on production's shape: CeleryExecutor with two workers, PostgreSQL, Redis."""

from __future__ import annotations

import pytest

from airflow_provider_cometapi.samples import PAPER_BOAT
from tests.dagrun import report_lines
from tests.e2e.deployment import group_alive
from tests.e2e.distributed import WORKERS, CeleryDeployment
from tests.settings import EXAMPLE_DAGS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # the first test starts it all


@pytest.fixture(scope="module")
def deployment():
    with CeleryDeployment(EXAMPLE_DAGS) as started:
        yield started


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e-celery-out")


def billed(deployment):
    return len(deployment.emulator_records()["billed"])


def inbox(folder, names=("a.png", "b.png")):
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(PAPER_BOAT.read_bytes())
    return f"file://{folder}/"


def the_other(worker):
    (other,) = [name for name in WORKERS if name != worker]
    return other


def test_local_image_example_succeeds_on_a_celery_worker(deployment, out):
    dag_id = "cometapi_edit_local_image"
    run_id = deployment.trigger(dag_id, {"output_dir": str(out)})

    assert deployment.wait_for_run(dag_id, run_id) == "success", deployment.log_tail()
    assert deployment.task_instance(dag_id, run_id, "add_ribbon")["hostname"] in WORKERS
    outputs = deployment.xcom(dag_id, run_id, "add_ribbon", "return_value")
    assert outputs == [f"file://{out}/local-edit/paper-boat-{i}.png" for i in (0, 1)]
    assert deployment.xcom(dag_id, run_id, "add_ribbon", "usage")["images"] == 2


def test_a_cleared_batch_on_the_other_worker_pays_nothing(deployment, out):
    dag_id, task_id = "cometapi_e2e_batch_sync", "edit_folder"
    run_id = deployment.trigger(
        dag_id,
        {"source_prefix": inbox(out / "sync-inbox"), "output_prefix": f"file://{out}/sync/"},
    )
    assert deployment.wait_for_run(dag_id, run_id) == "success", deployment.log_tail()
    first = deployment.task_instance(dag_id, run_id, task_id)["hostname"]
    assert first in WORKERS
    first_usage = deployment.xcom(dag_id, run_id, task_id, "usage")
    assert first_usage["requests"] == 2
    paid = billed(deployment)

    deployment.stop_component(first)
    deployment.clear(dag_id, run_id, task_id)

    again = deployment.wait_for_state(dag_id, run_id, task_id, "success", try_number=2)
    assert again["hostname"] == the_other(first)
    assert deployment.wait_for_run(dag_id, run_id) == "success", deployment.log_tail()
    assert billed(deployment) == paid
    # The second try reused its first try's outputs: usage stays what this task instance paid
    # over its tries (nothing added), and every item counts as reused.
    assert deployment.xcom(dag_id, run_id, task_id, "usage") == first_usage
    summary = deployment.xcom(dag_id, run_id, task_id, "summary")
    assert (summary["edited"], summary["reused"]) == (0, 2), summary
    report = deployment.xcom(dag_id, run_id, task_id, "return_value")
    assert all(item["reused"] for item in report_lines(report))
    log = deployment.task_logs(dag_id, run_id, task_id)["attempt=2.log"]
    assert "2/2 done: 0 edited, 2 reused, 0 retried, 0 failed" in log


def test_a_deferred_batch_resumes_on_the_other_worker(deployment, out):
    for name in WORKERS:  # the previous test stopped one
        if name not in deployment.processes:
            deployment.restart_worker(name)
    deployment.stop_component("triggerer")  # the batch waits deferred until it starts again
    dag_id, task_id = "cometapi_batch_deferrable", "edit_folder"
    paid = billed(deployment)
    run_id = deployment.trigger(
        dag_id,
        {"source_prefix": inbox(out / "deferred-inbox"), "output_prefix": f"file://{out}/batch/"},
    )

    deferred_on = deployment.wait_for_state(dag_id, run_id, task_id, "deferred")["hostname"]
    assert deferred_on in WORKERS
    deployment.stop_component(deferred_on)
    deployment.start_component("triggerer")

    assert deployment.wait_for_run(dag_id, run_id) == "success", deployment.log_tail()
    assert deployment.task_instance(dag_id, run_id, task_id)["hostname"] == the_other(deferred_on)
    assert billed(deployment) == paid + 2
    items = report_lines(deployment.xcom(dag_id, run_id, task_id, "return_value"))
    outputs = [uri for item in items for uri in item["outputs"]]
    assert len(outputs) == len(set(outputs)) == 2
    assert sorted(p.name for p in (out / "batch").glob("*.png")) == sorted(
        uri.rsplit("/", 1)[1] for uri in outputs
    )
    assert deployment.xcom(dag_id, run_id, task_id, "usage")["requests"] == 2


def test_every_started_process_stops(deployment):
    deployment.stop()

    assert {"postgres", "redis", "scheduler", "triggerer"} <= set(deployment.processes)
    assert all(p.returncode is not None for p in deployment.processes.values())
    assert not [name for name, p in deployment.processes.items() if group_alive(p.pid)]
