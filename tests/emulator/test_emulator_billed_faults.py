"""The ``reset`` fault, and ``billed`` faults: the edit is done and billed, then its answer lost."""

from __future__ import annotations

import time

import pytest
import requests

from airflow_provider_cometapi.emulator import EmulatorServer
from airflow_provider_cometapi.emulator.faults import parse_fault
from tests.emulator.helpers import KEY, emulator_cli, png_part, truncated_answer

FAULT = "x-emulator-fault"
HONOURING = {"honour_idempotency": True}


def lost(post_edit, spec, key="k-1", timeout=10):
    """Send an edit with a fault and key; the response, or the exception the client raised."""
    try:
        return post_edit(headers={FAULT: spec, "Idempotency-Key": key}, timeout=timeout)
    except requests.RequestException as exc:
        return exc


def settled_statuses(emulator, count):
    """The request statuses once ``count`` requests are answered (the server ends a hang late)."""
    deadline = time.monotonic() + 10
    statuses = [r["status"] for r in emulator.requests]
    while (len(statuses) < count or None in statuses) and time.monotonic() < deadline:
        time.sleep(0.02)
        statuses = [r["status"] for r in emulator.requests]
    return statuses


def test_reset_closes_the_connection_without_an_answer(post_edit, cometapi_emulator):
    outcome = lost(post_edit, "reset")

    assert isinstance(outcome, requests.ConnectionError)
    assert "reset by peer" in str(outcome)
    assert [r["status"] for r in cometapi_emulator.requests] == [444]
    assert [r["fault"] for r in cometapi_emulator.requests] == ["reset"]
    assert cometapi_emulator.billed == []
    assert post_edit().status_code == 200  # the server goes on serving


LOSSES = {
    "truncate;billed": requests.exceptions.ChunkedEncodingError,
    "reset;billed": requests.ConnectionError,
    "malformed_json;billed": 200,
    "status=502;billed": 502,
    "html;status=503;billed": 503,
    "hang=0.2;billed": 504,
}


@pytest.mark.parametrize(("spec", "seen"), LOSSES.items(), ids=LOSSES)
def test_a_billed_fault_bills_the_edit_then_loses_the_answer(
    post_edit, cometapi_emulator, spec, seen
):
    outcome = lost(post_edit, spec)

    if isinstance(seen, int):
        assert outcome.status_code == seen
        assert "usage" not in outcome.text
    else:
        assert isinstance(outcome, seen)
    [record] = cometapi_emulator.requests
    [bill] = cometapi_emulator.billed
    assert (record["fault"], record["billed"]) == (spec, True)
    assert bill["request_id"] == record["request_id"]
    assert (bill["idempotency_key"], bill["model"], bill["images"]) == ("k-1", "gpt-image-2", 1)
    assert set(bill["usage"]) >= {"input_tokens", "output_tokens", "total_tokens"}


def test_a_billed_hang_bills_and_ends_when_the_client_leaves(post_edit, cometapi_emulator):
    outcome = lost(post_edit, "hang;billed", timeout=0.5)

    assert isinstance(outcome, requests.exceptions.ReadTimeout)
    assert settled_statuses(cometapi_emulator, 1) == [499]
    assert [b["idempotency_key"] for b in cometapi_emulator.billed] == ["k-1"]


@pytest.mark.parametrize("cometapi_emulator", [HONOURING], indirect=True)
def test_a_billed_truncation_cuts_the_real_answer_which_a_retry_gets_unbilled(
    cometapi_emulator, post_edit
):
    _, promised, partial = truncated_answer(
        cometapi_emulator.url, {FAULT: "truncate;billed", "Idempotency-Key": "k-1"}
    )

    replayed = post_edit(prompt="x", headers={"Idempotency-Key": "k-1"})

    assert replayed.status_code == 200
    assert len(replayed.content) == promised
    assert replayed.content.startswith(partial)
    assert len(partial) == promised // 2
    assert len(cometapi_emulator.billed) == 1
    assert replayed.json()["usage"] == cometapi_emulator.billed[0]["usage"]
    assert [r.get("replayed", False) for r in cometapi_emulator.requests] == [False, True]


@pytest.mark.parametrize("cometapi_emulator", [HONOURING], indirect=True)
@pytest.mark.parametrize("spec", ["reset;billed", "malformed_json;billed", "status=502;billed"])
def test_after_a_billed_loss_an_honouring_gateway_replays_the_edit_for_its_key(
    post_edit, cometapi_emulator, spec
):
    lost(post_edit, spec)
    again = post_edit(headers={FAULT: spec, "Idempotency-Key": "k-1"})
    fresh = post_edit(headers={"Idempotency-Key": "k-2"})

    assert again.status_code == 200
    assert [set(item) for item in again.json()["data"]] == [{"b64_json"}]
    assert again.json()["data"] == fresh.json()["data"]  # the same edit, replayed
    assert [b["idempotency_key"] for b in cometapi_emulator.billed] == ["k-1", "k-2"]
    assert [r.get("replayed", False) for r in cometapi_emulator.requests] == [False, True, False]


@pytest.mark.parametrize("spec", ["reset;billed;times=1", "status=502;billed;times=1"])
def test_after_a_billed_loss_a_gateway_without_idempotency_bills_again(
    post_edit, cometapi_emulator, spec
):
    lost(post_edit, spec)
    again = post_edit(headers={FAULT: spec, "Idempotency-Key": "k-1"})

    assert again.status_code == 200
    billed = cometapi_emulator.billed
    assert [b["idempotency_key"] for b in billed] == ["k-1", "k-1"]
    assert again.json()["usage"] == billed[1]["usage"]
    assert [r["billed"] for r in cometapi_emulator.requests] == [True, True]


def test_a_refused_request_with_a_billed_fault_is_refused_unbilled(post_edit, cometapi_emulator):
    response = post_edit(prompt=None, headers={FAULT: "truncate;billed"})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt"
    assert cometapi_emulator.billed == []


def test_a_server_wide_billed_fault_from_the_constructor():
    with EmulatorServer(fault="malformed_json;billed") as server:
        response = requests.post(
            f"{server.url}/v1/images/edits",
            files=[png_part()],
            data={"prompt": "x"},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=5,
        )
        billed = server.billed

    assert response.content == b'{"created": 1, "data": ['
    assert len(billed) == 1


def test_the_cli_takes_a_billed_fault():
    with emulator_cli("--fault", "status=502;billed") as url:
        edit = requests.post(
            f"{url}/v1/images/edits",
            files=[png_part()],
            data={"prompt": "x"},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=5,
        )
        records = requests.get(f"{url}/_emulator/records", timeout=5).json()

    assert edit.status_code == 502
    assert [b["request_id"] for b in records["billed"]] == [edit.headers["x-request-id"]]


@pytest.mark.parametrize(
    "spec",
    ["billed", "latency=1;billed", "after_requests=2;billed", "reset;truncate", "reset;status=500"],
)
def test_billed_needs_a_lost_answer_and_reset_stands_alone(spec):
    with pytest.raises(ValueError, match=r"billed needs|cannot be combined"):
        parse_fault(spec)


def test_billed_is_part_of_what_makes_specs_equal():
    assert parse_fault("truncate;billed") == parse_fault("billed ; truncate")
    assert parse_fault("truncate;billed") != parse_fault("truncate")
    assert parse_fault("truncate;billed=false") == parse_fault("truncate")
    assert parse_fault("reset").answers
