"""Injected faults: statuses with retry headers, times=N, hang, truncate, bad bodies, random."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime

import pytest
import requests

from airflow_provider_cometapi.emulator.faults import parse_fault, parse_random_faults
from tests.emulator.helpers import KEY, png_part, truncated_answer

FAULT = "x-emulator-fault"


def with_fault(post_edit, spec, **headers):
    return post_edit(headers={FAULT: spec, **headers})


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (429, "rate_limit_error"),
        (500, "server_error"),
        (503, "server_error"),
        (404, "invalid_request_error"),
    ],
)
def test_status_fault_answers_an_openai_style_error(
    post_edit, cometapi_emulator, status, error_type
):
    response = with_fault(post_edit, f"status={status}")

    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == error_type
    assert error["message"]
    assert cometapi_emulator.requests[0]["fault"] == f"status={status}"
    assert cometapi_emulator.requests[0]["status"] == status
    assert cometapi_emulator.billed == []


def test_retry_after_seconds_header(post_edit):
    response = with_fault(post_edit, "status=429;retry_after=2")

    assert response.headers["Retry-After"] == "2"
    assert "retry-after-ms" not in response.headers


def test_retry_after_ms_header(post_edit):
    response = with_fault(post_edit, "status=429;retry_after_ms=300")

    assert response.headers["retry-after-ms"] == "300"


def test_retry_after_date_is_an_http_date_ahead(post_edit):
    before = time.time()
    response = with_fault(post_edit, "status=503;retry_after_date=30")
    after = time.time()

    date = parsedate_to_datetime(response.headers["Retry-After"]).timestamp()
    assert int(before) + 30 <= date <= after + 30  # 30 s past when it answered, whole seconds


@pytest.mark.parametrize("value", ["true", "false"])
def test_should_retry_header(post_edit, value):
    response = with_fault(post_edit, f"status=500;should_retry={value}")

    assert response.headers["x-should-retry"] == value


def test_times_fails_the_first_calls_of_one_idempotency_key_then_succeeds(
    post_edit, cometapi_emulator
):
    statuses = [
        with_fault(post_edit, "status=503;times=2", **{"Idempotency-Key": "call-a"}).status_code
        for _ in range(3)
    ]
    other = with_fault(post_edit, "status=503;times=2", **{"Idempotency-Key": "call-b"})

    assert statuses == [503, 503, 200]
    assert other.status_code == 503
    assert [r["fault"] for r in cometapi_emulator.requests] == ["status=503;times=2"] * 2 + [
        None,
        "status=503;times=2",
    ]
    assert [b["idempotency_key"] for b in cometapi_emulator.billed] == ["call-a"]


def test_server_wide_fault_applies_until_cleared(post_edit, cometapi_emulator):
    cometapi_emulator.set_fault("status=500")
    assert post_edit().status_code == 500
    cometapi_emulator.set_fault(None)
    assert post_edit().status_code == 200


def test_request_fault_header_wins_over_the_server_fault(post_edit, cometapi_emulator):
    cometapi_emulator.set_fault("status=500")

    assert with_fault(post_edit, "status=429").status_code == 429


def test_hang_makes_the_client_time_out(post_edit, cometapi_emulator):
    with pytest.raises(requests.exceptions.ReadTimeout, match=r"read timeout=0\.5\b"):
        post_edit(headers={FAULT: "hang"}, timeout=0.5)

    deadline = time.monotonic() + 10
    while cometapi_emulator.requests[0]["status"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cometapi_emulator.requests[0]["status"] == 499  # the client left; no 504 "gave up"
    assert cometapi_emulator.billed == []


def test_short_hang_gives_up_with_504(post_edit):
    response = with_fault(post_edit, "hang=0.2")

    assert response.status_code == 504
    assert response.json()["error"]["type"] == "server_error"


def test_truncate_breaks_the_body_mid_way(post_edit, cometapi_emulator):
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        with_fault(post_edit, "truncate")

    assert cometapi_emulator.requests[0]["status"] == 200
    assert cometapi_emulator.billed == []


def test_truncate_sends_half_the_promised_body_then_closes(cometapi_emulator):
    status, promised, partial = truncated_answer(cometapi_emulator.url, {FAULT: "truncate"})

    assert status == 200
    assert len(partial) == promised // 2


def test_malformed_json_is_a_200_with_a_cut_json_body(post_edit, cometapi_emulator):
    response = with_fault(post_edit, "malformed_json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == b'{"created": 1, "data": ['
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert cometapi_emulator.billed == []


def test_html_fault_is_a_bad_gateway_page(post_edit):
    response = with_fault(post_edit, "html")

    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == "<html><body><h1>502 Bad Gateway</h1></body></html>"


def test_html_fault_takes_a_status(post_edit):
    response = with_fault(post_edit, "html;status=413")

    assert response.status_code == 413
    assert response.text.startswith("<html><body><h1>413 ")


def test_latency_fault_delays_then_answers_normally(post_edit, cometapi_emulator, latency_gate):
    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(with_fault, post_edit, "latency=0.3")
        try:
            pauses = latency_gate.wait_for_pauses(1)
            held = cometapi_emulator.requests
            answered_while_held = answer.done()
        finally:
            latency_gate.release()
        response = answer.result()

    assert pauses == [0.3]
    assert not answered_while_held
    assert [r["status"] for r in held] == [None]  # received, unanswered while the pause lasted
    assert response.status_code == 200
    assert cometapi_emulator.requests[0]["status"] == 200
    assert len(cometapi_emulator.billed) == 1


def test_bad_fault_header_is_refused_naming_it(post_edit):
    response = with_fault(post_edit, "explode")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == FAULT


def test_faults_apply_after_auth(cometapi_emulator):
    from airflow_provider_cometapi.emulator import EmulatorServer

    with EmulatorServer(api_key="right", fault="status=500") as server:
        response = requests.post(
            f"{server.url}/v1/images/edits",
            files=[png_part()],
            data={"prompt": "x"},
            headers={"Authorization": "Bearer wrong"},
            timeout=5,
        )
    assert response.status_code == 401


def random_statuses(url, count):
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {KEY}"
        responses = [
            http.post(
                f"{url}/v1/images/edits", files=[png_part(b"")], data={"prompt": "x"}, timeout=5
            )
            for _ in range(count)
        ]
    return [(r.status_code, r.headers.get("Retry-After")) for r in responses]


def test_random_faults_follow_their_rates_reproducibly():
    from airflow_provider_cometapi.emulator import EmulatorServer

    rates = {"429": 0.2, "500": 0.1}
    with EmulatorServer(random_faults=rates, seed=7) as server:
        first = random_statuses(server.url, 300)
        assert server.billed == []
        server.reset()
        again = random_statuses(server.url, 300)
    with EmulatorServer(random_faults="429=0.2,500=0.1", seed=7) as twin:
        twin_run = random_statuses(twin.url, 300)

    statuses = [status for status, _ in first]
    assert 40 <= statuses.count(429) <= 80
    assert 15 <= statuses.count(500) <= 45
    assert statuses.count(400) == 300 - statuses.count(429) - statuses.count(500)
    assert {after for status, after in first if status == 429} == {"1"}
    assert first == again == twin_run


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "explode",
        "status",
        "status=200",
        "status=abc",
        "times=0",
        "latency=-1",
        "truncate;status=500",
        "hang;truncate",
        "retry_after=2",
        "should_retry=maybe;status=500",
    ],
)
def test_invalid_fault_spec_is_a_value_error(spec):
    with pytest.raises(ValueError, match=r"\S"):
        parse_fault(spec)


def test_equal_specs_parse_equal_whatever_their_spelling():
    assert parse_fault("status=503; times=2") == parse_fault("times=2;status=503")
    assert parse_fault("hang").hang == 300.0
    assert parse_fault("html").answers
    assert not parse_fault("latency=1").answers


@pytest.mark.parametrize("value", ["429", "429=1.5", "200=0.1", "429=0.7,500=0.4"])
def test_invalid_random_faults_are_a_value_error(value):
    with pytest.raises(ValueError, match=r"\S"):
        parse_random_faults(value)


def test_after_requests_holds_the_answer_until_that_many_edits_arrived(
    cometapi_emulator, post_edit
):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        hold = {FAULT: "after_requests=3;status=400"}
        held = pool.submit(post_edit, headers=hold, timeout=60)
        while not cometapi_emulator.requests:  # it has arrived, and waits
            time.sleep(0.01)
        assert post_edit().status_code == 200  # the second edit: the first still waits
        assert not held.done()
        assert cometapi_emulator.requests[0]["status"] is None
        assert post_edit().status_code == 200  # the third: the first may answer now
        assert held.result().status_code == 400
    assert [r["status"] for r in cometapi_emulator.requests] == [400, 200, 200]


def test_after_requests_takes_a_whole_number():
    assert parse_fault("after_requests=2").after_requests == 2
    with pytest.raises(ValueError, match="after_requests"):
        parse_fault("after_requests=0")
