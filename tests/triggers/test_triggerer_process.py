"""A deferred edit runs in a real ``airflow triggerer`` process and resumes the task instance."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from operator import itemgetter
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_cometapi.api.request import EditParams
from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator
from airflow_provider_cometapi.pipeline.plans import ItemPlan
from airflow_provider_cometapi.pipeline.scope import TaskScope
from airflow_provider_cometapi.samples import PAPER_BOAT
from airflow_provider_cometapi.storage.report import read_parts
from airflow_provider_cometapi.storage.sources import StoredSource
from airflow_provider_cometapi.storage.staging import write_plan
from airflow_provider_cometapi.triggers.image_edit import CometImageEditTrigger
from tests.imaging import decode


def defer_to(trigger, dag_id, run_id):
    """Put the run's task instance in the deferred state, waiting on ``trigger``."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    with create_session() as session:
        row = Trigger.from_object(trigger)
        session.add(row)
        session.flush()
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id).one()
        ti.state = TaskInstanceState.DEFERRED
        ti.trigger_id = row.id
        ti.next_method = "execute_complete"
        ti.next_kwargs = {}
        return ti.id


def wait_for_resume(ti_id, timeout=90):
    """The task instance once the triggerer has handed it back, or ``None``."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as session:
            ti = session.get(TaskInstance, ti_id)
            if ti.state != TaskInstanceState.DEFERRED:
                return ti.state, ti.next_kwargs
        time.sleep(0.5)
    return None


def run_triggerer(ti_id, log_path):
    """Run ``airflow triggerer`` until it hands ``ti_id`` back; (state, next kwargs), exit code."""
    log = log_path.open("w")
    triggerer = subprocess.Popen(
        [sys.executable, "-m", "airflow", "triggerer", "--skip-serve-logs"],
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        resumed = wait_for_resume(ti_id)
    finally:
        triggerer.terminate()  # SIGTERM: the triggerer stops its triggers and exits cleanly
        returncode = triggerer.wait(timeout=30)
        log.close()
    return resumed, returncode


def test_trigger_runs_in_a_real_triggerer(run_dag, tmp_path, cometapi_emulator):
    outcome = run_dag(  # a run and a task instance to defer
        """
        from airflow.providers.standard.operators.empty import EmptyOperator
        EmptyOperator(task_id="edit")
        """
    )
    plan = ItemPlan(
        sources=[StoredSource(str(PAPER_BOAT))],
        mask=None,
        output_path=f"{tmp_path}/out/",
        output_conn_id=None,
        map_index=-1,
        label=str(PAPER_BOAT),
    )
    trigger = CometImageEditTrigger(
        plan=write_plan([plan], f"{tmp_path}/staging/", None),
        conn_id=None,
        params=EditParams(prompt="Add a ribbon", model="gpt-image-2", n=2).to_dict(),
        scope=TaskScope(outcome.dag_id, outcome.run_id, "edit", -1, 1).to_json(),
        cometapi_conn_id="cometapi_default",
    )
    ti_id = defer_to(trigger, outcome.dag_id, outcome.run_id)

    resumed, returncode = run_triggerer(ti_id, tmp_path / "triggerer.log")

    assert resumed is not None, (tmp_path / "triggerer.log").read_text()[-3000:]
    state, next_kwargs = resumed
    assert str(state) == "scheduled"
    (item,) = next_kwargs["event"]["lines"]
    assert item["error"] is None
    assert item["outputs"] == [
        f"file://{tmp_path}/out/paper-boat-0.png",
        f"file://{tmp_path}/out/paper-boat-1.png",
    ]
    assert decode((tmp_path / "out" / "paper-boat-1.png").read_bytes()).size == (512, 384)
    (billed,) = [b for b in cometapi_emulator.billed if b["request_id"] == item["request_id"]]
    assert item["usage"] == billed["usage"]
    assert returncode == 0, (tmp_path / "triggerer.log").read_text()[-3000:]


def test_a_refused_item_stops_a_batch_in_a_real_triggerer_as_on_the_worker(
    run_dag, tmp_path, cometapi_emulator
):
    """The ordering rule, once more, in a real triggerer: 0-2 edited, 3 refused, 4-7 never sent."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    for i in range(8):
        (folder / f"b{i}.png").write_bytes(PAPER_BOAT.read_bytes())
    cometapi_emulator.set_file_faults({"b3.png": "status=400"})
    outcome = run_dag(
        """
        from airflow.providers.standard.operators.empty import EmptyOperator
        EmptyOperator(task_id="edit")
        """
    )
    operator = CometImageEditBatchOperator(
        task_id="edit",
        prompt="Add a ribbon",
        sources=f"{folder}/",
        output_path=f"{tmp_path}/out/",
        max_concurrency=1,
        deferrable=True,
    )
    ti = SimpleNamespace(dag_id=outcome.dag_id, run_id=outcome.run_id, task_id="edit", map_index=-1)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": ti})
    ti_id = defer_to(deferred.value.trigger, outcome.dag_id, outcome.run_id)

    resumed, returncode = run_triggerer(ti_id, tmp_path / "triggerer.log")

    assert resumed is not None, (tmp_path / "triggerer.log").read_text()[-3000:]
    event = resumed[1]["event"]
    assert event["lines"] == []  # each item's line went to the report's parts
    items = sorted(read_parts(deferred.value.trigger.report, None, 1), key=itemgetter("position"))
    errors = [item["error"]["type"] if item["error"] else None for item in items]
    assert errors == [None] * 3 + ["CometAPIBadRequestError"] + ["CometAPIBatchError"] * 4
    sent = sorted(r["files"][0]["filename"] for r in cometapi_emulator.requests if r["files"])
    assert sent == ["b0.png", "b1.png", "b2.png", "b3.png"]
    assert returncode == 0
