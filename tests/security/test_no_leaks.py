"""A planted API key never reaches a task log, an XCom, a rendered field, an exception or a repr.

Every ``dag.test()`` run below holds the key in ``cometapi_default`` and runs the single operator
(sync and deferrable) and the batch operator (sync and deferrable) against one emulator fault.
Airflow's secrets masker would hide the key in task logs and rendered fields, so the raw
exceptions (kept by a failure callback, before any masking) and every row of the metadata
database are checked too, and the logs must not show the masker's ``***`` either.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
from pathlib import Path

import pytest

from airflow_provider_cometapi.hooks.cometapi_async import AsyncCometApiClient
from airflow_provider_cometapi.operators.image_edit import (
    CometImageEditBatchOperator,
    CometImageEditOperator,
)
from airflow_provider_cometapi.samples import PAPER_BOAT
from airflow_provider_cometapi.triggers.image_edit import CometImageEditTrigger
from tests.dagrun import report_lines
from tests.settings import PLANTED_KEY

BOAT_B64 = base64.b64encode(PAPER_BOAT.read_bytes()).decode()
TASKS = ("single", "single_deferred", "batch", "batch_deferred")

# fault spec -> the error class every task fails with (None: every task succeeds)
FAULTS = {
    "success": (None, None),
    "401": ("status=401", "CometAPIAuthError"),
    "429": ("status=429;retry_after=0", "CometAPIRateLimitError"),
    "500": ("status=500", "CometAPIServerError"),
    "html 502": ("html;status=502", "CometAPIServerError"),
    "malformed json": ("malformed_json", "CometAPIBadResponseError"),
    "truncated": ("truncate", "CometAPIBadResponseError"),
    "hang": ("hang", "CometAPITimeoutError"),
}

DAG_BODY = """
import json
import traceback

from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator

def keep_raw_exception(context):
    # str, repr, args, attributes and traceback of the exception and all it was raised from
    exc, seen, texts = context["exception"], set(), []
    kind = type(exc).__name__
    texts += traceback.format_exception(exc)
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts += [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
        exc = exc.__cause__ or exc.__context__
    with open({raw!r}, "a") as out:
        out.write(json.dumps({{"task": context["ti"].task_id, "type": kind, "texts": texts}}))
        out.write("\\n")

def common(task_id):
    return dict(
        task_id=task_id,
        prompt="Add a ribbon",
        output_path={out!r} + task_id + "/",
        on_failure_callback=keep_raw_exception,
    )

CometImageEditOperator(image={boat!r}, **common("single"))
CometImageEditOperator(image={boat_b64!r}, deferrable=True, **common("single_deferred"))
CometImageEditBatchOperator(
    sources=[{boat!r}, {boat_b64!r}], max_concurrency=2, on_item_failure="continue",
    **common("batch"),
)
CometImageEditBatchOperator(
    sources=[{boat!r}, {boat_b64!r}], max_concurrency=2, on_item_failure="continue",
    deferrable=True, **common("batch_deferred"),
)
"""


def run_rows(dag_id: str, run_id: str) -> tuple[list, list]:
    """Every XCom row and every rendered-fields row of one DAG run."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = [
            (row.task_id, row.key, row.value)
            for row in session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id)
        ]
        rendered = [
            (row.task_id, row.rendered_fields)
            for row in session.query(RenderedTaskInstanceFields).filter_by(
                dag_id=dag_id, run_id=run_id
            )
        ]
    return xcoms, rendered


def metadata_db_rows() -> list[str]:
    """Every row of every table of Airflow's metadata database, as text."""
    from airflow import settings
    from sqlalchemy import MetaData, select

    meta = MetaData()
    meta.reflect(bind=settings.engine)
    with settings.engine.connect() as conn:
        return [
            f"{table.name}: {tuple(row)!r}"
            for table in meta.sorted_tables
            for row in conn.execute(select(table))
        ]


def log_files(dag_id: str) -> list[str]:
    """Text of the task log files Airflow wrote for ``dag_id`` under ``$AIRFLOW_HOME/logs``."""
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    if not logs.is_dir():
        return []
    return [
        path.read_text(errors="replace")
        for path in logs.rglob("*")
        if path.is_file() and f"dag_id={dag_id}" in str(path)
    ]


@pytest.mark.parametrize(("fault", "error"), FAULTS.values(), ids=FAULTS.keys())
def test_planted_key_is_absent_from_every_trace_of_a_run(
    run_dag,
    cometapi_conn,
    cometapi_emulator,
    edits_sent_by,
    tmp_path,
    capfd,
    caplog,
    no_sleeping,
    fault,
    error,
):
    caplog.set_level(logging.DEBUG)
    cometapi_conn(timeout=0.5 if fault == "hang" else 30, max_retries=1)
    cometapi_emulator.set_fault(fault)
    raw = tmp_path / "raw-exceptions.jsonl"
    body = DAG_BODY.format(
        raw=str(raw), out=f"{tmp_path}/out/", boat=str(PAPER_BOAT), boat_b64=BOAT_B64
    )

    outcome = run_dag(body)

    stdout, stderr = capfd.readouterr()
    logs = stdout + stderr + caplog.text
    xcoms, rendered = run_rows(outcome.dag_id, outcome.run_id)
    raised = [json.loads(line) for line in raw.read_text().splitlines()] if raw.exists() else []
    states = outcome.states()

    # the run really happened, and really left what is checked below
    assert edits_sent_by("requests")  # the sync hook
    assert edits_sent_by("httpx")  # the triggerer's async client
    attempts = re.findall(r"^.*CometAPI POST /v1/images/edits\b.*: attempt 1 of 2.*$", logs, re.M)
    assert attempts  # logged at DEBUG, which the log records capture
    assert sorted(task for task, _ in rendered) == sorted(TASKS)
    assert all(fields["prompt"] == "Add a ribbon" for _, fields in rendered)
    assert {(task, key) for task, key, _ in xcoms} >= {(task, "usage") for task in TASKS[2:]}
    if error is None:
        assert states == {(task, -1): "success" for task in TASKS}
        assert {task for task, key, _ in xcoms if key == "return_value"} == set(TASKS)
        assert raised == []
    else:
        assert states == {(task, -1): "failed" for task in TASKS}
        assert sorted(entry["task"] for entry in raised) == sorted(TASKS)
        for entry in raised:
            expected = "CometAPIBatchError" if entry["task"].startswith("batch") else error
            assert entry["type"] == expected
        items = [report_lines(value) for task, key, value in xcoms if key == "report"]
        types = [item["error"]["type"] for value in items for item in value]
        if fault == "status=401":  # a refused key stops the batch: an item that has not sent
            # by then never does, and is recorded as not started (which one varies by timing)
            assert [value[0]["error"]["type"] for value in items] == [error] * 2
            assert set(types) <= {error, "CometAPIBatchError"}
            assert len(cometapi_emulator.requests) == 2 + types.count(error)
        else:
            assert types == [error] * 4
        assert error in logs

    # and the key is nowhere in it
    texts = {
        "task output": [stdout, stderr],
        "log records": [caplog.text],
        "log files": log_files(outcome.dag_id),
        "XCom": [json.dumps(value, default=str) for _, _, value in xcoms],
        "rendered fields": [json.dumps(fields, default=str) for _, fields in rendered],
        "raw exceptions": [text for entry in raised for text in entry["texts"]],
        "metadata DB": metadata_db_rows(),
        "emulator records": [json.dumps(cometapi_emulator.requests)],
        "files written": [
            path.read_text(errors="replace") for path in tmp_path.rglob("*") if path.is_file()
        ],
    }
    leaking = [where for where, found in texts.items() if any(PLANTED_KEY in t for t in found)]
    assert leaking == []
    assert "***" not in logs, "something logged the key and only the secrets masker hid it"


def test_reprs_of_operators_hooks_triggers_and_clients_hide_the_key(cometapi_conn, tmp_path):
    single = CometImageEditOperator(
        task_id="single", prompt="x", image=str(PAPER_BOAT), output_path=f"{tmp_path}/"
    )
    batch = CometImageEditBatchOperator(
        task_id="batch", prompt="x", sources=[str(PAPER_BOAT)], output_path=f"{tmp_path}/"
    )
    hook = single.hook
    assert hook.settings.api_key == PLANTED_KEY  # loaded, so a careless repr would show it
    forked = batch.hook.fork()
    trigger = CometImageEditTrigger(
        plan=f"{tmp_path}/plan.jsonl",
        conn_id=None,
        params={"prompt": "x", "model": hook.settings.default_model},
        scope={"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1, "try_number": 1},
        cometapi_conn_id=hook.cometapi_conn_id,
    )

    async def client_texts() -> list[str]:
        client = await AsyncCometApiClient.connect(hook.cometapi_conn_id)
        try:
            assert client.settings.api_key == PLANTED_KEY
            return [repr(client), repr(vars(client)), repr(client.settings)]
        finally:
            await client.aclose()

    texts = [
        *(repr(obj) for obj in (single, batch, hook, forked, trigger)),
        *(str(obj) for obj in (single, batch, hook, trigger)),
        repr(vars(single)),
        repr(vars(batch)),
        repr(vars(hook)),
        repr(vars(forked)),
        repr(hook.settings),
        str(hook.settings),
        repr(hook.session.__dict__),
        json.dumps(trigger.serialize()),
        *asyncio.run(client_texts()),
    ]

    assert [text for text in texts if PLANTED_KEY in text] == []
