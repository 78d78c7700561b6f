"""An edit billed whose answer was lost is paid again on retry only where the gateway ignores the
``Idempotency-Key``: a gateway that honours it replays the answer it kept, unbilled.

The emulator's ``billed`` faults do the edit, bill it, then lose the answer (cut off, reset,
malformed, a hang, or an error status from a proxy). The provider's real transports and operator
talk to it over loopback; only the retry sleeps are patched.
"""

from __future__ import annotations

import base64
import time

import pytest
import requests

from airflow_provider_cometapi.api.sinks import MemorySink
from airflow_provider_cometapi.exceptions import (
    CometAPIBadResponseError,
    CometAPIConnectionError,
    CometAPITimeoutError,
)
from tests.dagrun import files_in
from tests.faults.transports import TRANSPORTS, small_request
from tests.imaging import decode, image_bytes

HONOURS_KEY = pytest.param({"honour_idempotency": True}, id="gateway-honours-key")
IGNORES_KEY = pytest.param({"honour_idempotency": False}, id="gateway-ignores-key")
KEY = "fp-lost-answer"
LOST = {  # the fault, and the error the call that lost its answer ends with
    "truncate": ("truncate;billed;times=1", CometAPIBadResponseError),
    "reset": ("reset;billed;times=1", CometAPIConnectionError),
    "malformed_json": ("malformed_json;billed;times=1", CometAPIBadResponseError),
    "hang": ("hang;billed;times=1", CometAPITimeoutError),
}
HANG_TIMEOUT = 0.5
"""The read timeout of a call whose answer hangs: it must give up on it soon."""
TIMEOUT = 30.0
"""Every other call's read timeout: a loaded machine must not turn a cut-off, reset or malformed
answer, or the retry that follows, into a timeout."""


def timeout_for(spec: str) -> float:
    """The read timeout of the call that meets the fault ``spec``: short only for a hang."""
    return HANG_TIMEOUT if spec.startswith("hang") else TIMEOUT


def billed_for(emulator, key: str, count: int) -> list[dict]:
    """The billing records of ``key`` once there are ``count`` (a hang bills on its own time),
    or as they stand after 10 s."""
    deadline = time.monotonic() + 10
    billed = [b for b in emulator.billed if b["idempotency_key"] == key]
    while len(billed) < count and time.monotonic() < deadline:
        time.sleep(0.02)
        billed = [b for b in emulator.billed if b["idempotency_key"] == key]
    return billed


def replayed_images(emulator, key: str) -> list[bytes]:
    """Ask the gateway once more for ``key``: the images of the answer it keeps for it."""
    response = requests.post(
        f"{emulator.url}/v1/images/edits",
        files=[("image", ("image.png", image_bytes((64, 48)), "image/png"))],
        data={"prompt": "Add a ribbon"},
        headers={"Authorization": "Bearer k", "Idempotency-Key": key},
        timeout=10,
    )
    assert emulator.requests[-1]["replayed"] is True
    return [base64.b64decode(item["b64_json"]) for item in response.json()["data"]]


def lose_then_retry(configure, transport, emulator, spec, error):
    """One call whose edit is billed and answer lost, then the retry of it: its outcome and sink.

    :param configure: the ``cometapi_conn`` setter: the lost call's timeout is short only for a
        hang, and the retry's is never short.
    """
    configure(timeout=timeout_for(spec), max_retries=1)
    emulator.set_fault(spec)
    run = TRANSPORTS[transport]
    with pytest.raises(error):
        run(small_request(), MemorySink(), KEY)
    assert len(billed_for(emulator, KEY, 1)) == 1  # billed, though the caller got nothing
    configure(timeout=TIMEOUT, max_retries=1)
    sink = MemorySink()
    return run(small_request(), sink, KEY), sink


# --- the provider's transports, one call lost and one retried ---------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cometapi_emulator", [HONOURS_KEY], indirect=True)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("spec", "error"), LOST.values(), ids=LOST)
def test_a_retry_after_a_billed_lost_answer_is_free_where_the_gateway_honours_the_key(
    cometapi_conn, cometapi_emulator, no_sleeping, transport, spec, error
):
    outcome, sink = lose_then_retry(cometapi_conn, transport, cometapi_emulator, spec, error)

    [billed] = billed_for(cometapi_emulator, KEY, 1)
    assert outcome.usage == billed["usage"]
    assert [sink.data(image.slot) for image in outcome.images] == replayed_images(
        cometapi_emulator, KEY
    )
    assert [r.get("replayed", False) for r in cometapi_emulator.requests] == [False, True, True]
    assert cometapi_emulator.billed == [billed]  # asking again was free too


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cometapi_emulator", [IGNORES_KEY], indirect=True)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("spec", "error"), LOST.values(), ids=LOST)
def test_a_retry_after_a_billed_lost_answer_pays_once_more_where_the_gateway_ignores_the_key(
    cometapi_conn, cometapi_emulator, no_sleeping, transport, spec, error
):
    outcome, _ = lose_then_retry(cometapi_conn, transport, cometapi_emulator, spec, error)

    first, second = billed_for(cometapi_emulator, KEY, 2)
    assert cometapi_emulator.billed == [first, second]  # exactly one extra edit
    assert outcome.usage == second["usage"]  # the one it received is the one it reports
    assert outcome.request_id == second["request_id"]
    assert [r["billed"] for r in cometapi_emulator.requests] == [True, True]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("cometapi_emulator", "bills"),
    [
        pytest.param({"honour_idempotency": True}, 1, id="gateway-honours-key"),
        pytest.param({"honour_idempotency": False}, 2, id="gateway-ignores-key"),
    ],
    indirect=["cometapi_emulator"],
)
def test_a_proxy_error_after_a_billed_edit_is_retried_in_the_call_and_paid_per_the_gateway(
    cometapi_conn, cometapi_emulator, no_sleeping, transport, bills
):
    cometapi_emulator.set_fault("status=502;billed;times=1")

    outcome = TRANSPORTS[transport](small_request(), MemorySink(), KEY)

    billed = billed_for(cometapi_emulator, KEY, bills)
    assert len(billed) == len(cometapi_emulator.billed) == bills
    assert [r["status"] for r in cometapi_emulator.requests] == [502, 200]
    assert outcome.retries == 1
    assert outcome.usage == billed[-1]["usage"]


# --- the operator: the Airflow task retry sends the same key ------------------------------------

WAIT_FOR_THE_BILL = f"""
def wait_for_the_bill(context):  # between the tries: the first try's edit is billed (a hang
    import json, os, time, urllib.request  # bills on the emulator's time, not the client's)
    conn = json.loads(os.environ["AIRFLOW_CONN_COMETAPI_DEFAULT"])
    conn["extra"]["timeout"] = {TIMEOUT!r}  # the retry's timeout is never the hang's short one
    os.environ["AIRFLOW_CONN_COMETAPI_DEFAULT"] = json.dumps(conn)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{{conn['host']}}/_emulator/records") as answer:
            if json.load(answer)["billed"]:
                return
        time.sleep(0.02)
"""


def retried_edit(image, out) -> str:
    """A DAG body: one edit task retried once at once, after waiting for the first bill."""
    return WAIT_FOR_THE_BILL + (
        f'CometImageEditOperator(task_id="edit", prompt="Add a ribbon", image={str(image)!r}, '
        f'output_path="{out}/", retries=1, retry_delay=__import__("datetime").timedelta(0), '
        "on_retry_callback=wait_for_the_bill)"
    )


def try_number(outcome) -> int:
    """The try the run's ``edit`` task instance ended on."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(
            dag_id=outcome.dag_id, run_id=outcome.run_id, task_id="edit"
        )
        return ti.one().try_number


def lost_in_try_one(run_dag, tmp_path, cometapi_conn, emulator, spec):
    """Run the task with its first try's answer lost; return the outcome and its output bytes."""
    cometapi_conn(timeout=timeout_for(spec), max_retries=0)
    source = tmp_path / "boat.png"
    source.write_bytes(image_bytes((64, 48)))
    emulator.set_fault(spec)
    outcome = run_dag(retried_edit(source, tmp_path / "out"))
    assert outcome.state == "success"
    assert try_number(outcome) == 2  # the first try failed; the task retry delivered
    assert files_in(tmp_path / "out") == ["boat-0.png"]
    keys = {r["idempotency_key"] for r in emulator.requests}
    assert len(keys) == 1  # both tries of the task instance send the same key
    return outcome, keys.pop(), (tmp_path / "out" / "boat-0.png").read_bytes()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cometapi_emulator", [HONOURS_KEY], indirect=True)
@pytest.mark.parametrize("spec", [spec for spec, _ in LOST.values()], ids=LOST)
def test_a_task_retry_after_a_billed_lost_answer_is_free_where_the_gateway_honours_the_key(
    run_dag, tmp_path, cometapi_conn, cometapi_emulator, accounts, spec
):
    outcome, key, delivered = lost_in_try_one(
        run_dag, tmp_path, cometapi_conn, cometapi_emulator, spec
    )

    [billed] = billed_for(cometapi_emulator, key, 1)
    assert [r.get("replayed", False) for r in cometapi_emulator.requests] == [False, True]
    usage = outcome.xcom("edit", "usage")
    assert (usage["requests"], usage["images"]) == (1, 1)
    assert usage["total_tokens"] == billed["usage"]["total_tokens"]
    accounts.check(outcome)  # paid as reported: the one edit billed
    assert [delivered] == replayed_images(cometapi_emulator, key)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cometapi_emulator", [IGNORES_KEY], indirect=True)
@pytest.mark.parametrize("spec", [spec for spec, _ in LOST.values()], ids=LOST)
def test_a_task_retry_after_a_billed_lost_answer_pays_once_more_where_the_gateway_ignores_the_key(
    run_dag, tmp_path, cometapi_conn, cometapi_emulator, spec
):
    outcome, key, delivered = lost_in_try_one(
        run_dag, tmp_path, cometapi_conn, cometapi_emulator, spec
    )

    first, second = billed_for(cometapi_emulator, key, 2)
    assert cometapi_emulator.billed == [first, second]  # exactly one extra edit
    usage = outcome.xcom("edit", "usage")
    assert (usage["requests"], usage["images"]) == (1, 1)  # the edit it received, not the lost
    assert usage["request_id"] == second["request_id"]
    assert usage["total_tokens"] == second["usage"]["total_tokens"]
    assert decode(delivered).size == (64, 48)
