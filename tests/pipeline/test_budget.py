"""Budgets: which requests may start, what is reported, and a run-wide budget on real storage."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from decimal import Decimal

import pytest

from airflow_provider_cometapi.exceptions import CometAPIValidationError
from airflow_provider_cometapi.pipeline import budget as budget_module
from airflow_provider_cometapi.pipeline.budget import Budget, SharedBudget
from airflow_provider_cometapi.storage.budget_ledger import BudgetRecord, RunLedger, Spending


def tokens(count):
    return {"total_tokens": count}


def run(budget, *, items, concurrency, tokens_of):
    """Drive items through the budget as the gate would: start while admitted (up to
    ``concurrency`` in flight), answer the oldest request, repeat. Returns the items started."""
    started = in_flight = answered = 0
    while True:
        while started < items and in_flight < concurrency and budget.admits(in_flight):
            started += 1
            in_flight += 1
        if not in_flight:
            return started
        budget.paid(tokens(tokens_of(answered)), None)
        answered += 1
        in_flight -= 1


def test_the_first_requests_always_start():
    budget = Budget(max_total_tokens=10, max_cost=None, currency=None)

    assert budget.admits(0)
    assert budget.admits(50)  # nothing paid yet: the mean is 0


def test_paid_plus_the_mean_for_each_request_in_flight_and_the_next_must_fit():
    budget = Budget(max_total_tokens=1000, max_cost=None, currency=None)
    budget.paid(tokens(400), None)

    assert budget.admits(0)  # 400 + 1 × 400
    assert not budget.admits(1)  # 400 + 2 × 400
    budget.paid(tokens(100), None)
    assert budget.admits(1)  # 500 + 2 × 250 = 1000: the limit itself is within
    assert not budget.admits(2)


def test_even_spending_stops_exactly_at_the_limit():
    budget = Budget(max_total_tokens=1000, max_cost=None, currency=None)

    started = run(budget, items=20, concurrency=4, tokens_of=lambda _: 100)

    assert started == 10
    assert budget.spent() == {"paid_edits": 10, "total_tokens": 1000}
    assert budget.error(not_started=20 - started) is not None


def test_the_overshoot_is_bounded_by_the_requests_in_flight():
    budget = Budget(max_total_tokens=1000, max_cost=None, currency=None)

    started = run(budget, items=20, concurrency=4, tokens_of=lambda _: 400)

    assert started == 4  # the first four started before any was paid; none after
    assert budget.spent()["total_tokens"] == 1600


def test_a_cost_limit_judges_costs():
    budget = Budget(max_total_tokens=None, max_cost="2.50", currency="USD")
    budget.paid(tokens(10**9), Decimal("1.00"))  # no token limit: tokens do not matter

    assert budget.admits(0)  # 1.00 + 1.00
    assert not budget.admits(1)  # 1.00 + 2 × 1.00
    assert budget.spent() == {
        "paid_edits": 1,
        "total_tokens": 10**9,
        "cost": 1.0,
        "currency": "USD",
    }


def test_an_edit_of_unknown_cost_stops_a_cost_budget_and_says_why():
    budget = Budget(max_total_tokens=None, max_cost=Decimal("2.50"), currency="USD")
    budget.paid(tokens(100), Decimal("0.10"))
    budget.paid(tokens(100), None)

    assert not budget.admits(0)
    assert "cost" not in budget.spent()
    error = budget.error(not_started=3)
    assert str(error) == (
        "Budget max_cost=2.50 USD cannot be judged. The cost of 1 paid edit was unknown: set a "
        "price for the model in the connection extra 'pricing' or [cometapi] pricing, with a "
        "rate for each token count its usage reports. This task instance spent at least 0.1 USD "
        "and 200 total tokens on 2 paid edits; 3 items were not started."
    )
    assert budget.error(not_started=0) is not None  # all started, but within is not known


def test_an_unknown_cost_does_not_matter_to_a_token_budget():
    budget = Budget(max_total_tokens=1000, max_cost=None, currency="USD")
    budget.paid(tokens(100), None)

    assert budget.admits(0)
    assert budget.spent() == {"paid_edits": 1, "total_tokens": 100, "currency": "USD"}


def test_tokens_are_input_plus_output_without_a_total_and_unknown_without_either():
    budget = Budget(max_total_tokens=1000, max_cost=None, currency=None)
    budget.paid({"input_tokens": 300, "output_tokens": 100}, None)

    assert budget.spent()["total_tokens"] == 400
    budget.paid({"generated_images": 1}, None)
    assert not budget.admits(0)
    assert "total_tokens" not in budget.spent()
    assert "1 paid edit reported no total_tokens" in str(budget.error(0))


def test_no_error_while_within_budget_and_nothing_was_refused():
    budget = Budget(max_total_tokens=1000, max_cost=None, currency=None)
    budget.paid(tokens(600), None)

    assert budget.error(not_started=0) is None
    assert str(budget.error(not_started=2)) == (
        "Budget max_total_tokens=1000 was reached. This task instance spent 600 total tokens on "
        "1 paid edit; 2 items were not started."
    )


def test_a_budget_passed_by_requests_in_flight_is_an_error_even_with_every_item_started():
    budget = Budget(max_total_tokens=1000, max_cost="5", currency="EUR")
    budget.paid(tokens(600), Decimal("0.5"))
    budget.paid(tokens(600), Decimal("0.5"))

    assert str(budget.error(not_started=0)) == (
        "Budget max_total_tokens=1000 was reached. This task instance spent 1.0 EUR and 1200 "
        "total tokens on 2 paid edits; 0 items were not started."
    )


@pytest.mark.parametrize(
    ("limits", "param"),
    [
        ({"max_total_tokens": 0}, "max_total_tokens"),
        ({"max_total_tokens": "1e3"}, "max_total_tokens"),
        ({"max_total_tokens": True}, "max_total_tokens"),
        ({"max_cost": "-1", "currency": "USD"}, "max_cost"),
        ({"max_cost": "lots", "currency": "USD"}, "max_cost"),
        ({"max_cost": float("nan"), "currency": "USD"}, "max_cost"),
        ({"max_cost": 1}, "max_cost"),  # no prices, so no currency
    ],
)
def test_bad_limits_are_refused(limits, param):
    arguments = {"max_total_tokens": None, "max_cost": None, "currency": None, **limits}

    with pytest.raises(CometAPIValidationError) as raised:
        Budget(**arguments)

    assert raised.value.param == param


def test_limits_from_templates_are_read_as_numbers():
    budget = Budget(max_total_tokens=" 1000 ", max_cost="2.50", currency="USD")

    assert (budget.max_total_tokens, budget.max_cost) == (1000, Decimal("2.50"))


def test_payments_from_many_threads_are_all_counted():
    budget = Budget(max_total_tokens=10**9, max_cost="1000", currency="USD")

    def pay():
        for _ in range(500):
            budget.paid(tokens(3), Decimal("0.001"))
            budget.admits(1)

    threads = [threading.Thread(target=pay) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert budget.spent() == {
        "paid_edits": 4000,
        "total_tokens": 12000,
        "cost": 4.0,
        "currency": "USD",
    }


# A run-wide budget, on a local folder and on a real S3-protocol server.


class Clock:
    """Stands in for the budget's clock: time moves only when a test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self):
        self.now += budget_module.REREAD_SECONDS


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(budget_module, "_now", clock)
    return clock


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    """``(output folder, write(relative key, bytes))`` on a local disk or the S3 server."""
    if request.param == "local":

        def write_local(key, body):
            (tmp_path / "out" / key).write_bytes(body)

        return f"{tmp_path}/out/", write_local
    s3 = request.getfixturevalue("s3")
    bucket = f"cometapi-budget-{uuid.uuid4().hex[:12]}"  # nothing left by another test
    s3.create_bucket(Bucket=bucket)

    def write_s3(key, body):
        s3.put_object(Bucket=bucket, Key=f"out/{key}", Body=body)

    return f"s3://s3_test@{bucket}/out/", write_s3


@pytest.fixture
def ledger(storage):
    folder, _ = storage
    return RunLedger(folder, None, dag_id="edits", run_id="manual__2026-11-26T16:13:41+00:00")


def shared(ledger, map_index, *, try_number=1, max_total_tokens=1000, **kwargs):
    arguments = {"max_cost": None, "currency": None, **kwargs}
    return SharedBudget(
        ledger,
        task_id="edit",
        map_index=map_index,
        try_number=try_number,
        max_total_tokens=max_total_tokens,
        **arguments,
    )


def test_one_task_instances_payments_stop_another_after_a_refresh(ledger, clock):
    first, second = shared(ledger, 0), shared(ledger, 1)
    second.refresh(0)
    first.paid(tokens(600), None)
    first.refresh(0)

    assert second.admits(0)  # read before the payment was published
    second.refresh(0)
    assert second.admits(0)  # read less than a second ago: not read again
    clock.advance()
    second.refresh(0)
    assert not second.admits(0)  # 600 + 1 × 600
    assert second.spent() == {"paid_edits": 1, "total_tokens": 600}
    assert str(second.error(not_started=4)) == (
        "Budget max_total_tokens=1000 was reached. The task instances of this DAG run spent "
        "600 total tokens on 1 paid edit; 4 items were not started."
    )


def test_three_task_instances_count_each_others_requests_in_flight(ledger, clock):
    first, second, third = shared(ledger, 0), shared(ledger, 1), shared(ledger, 2)
    first.refresh(2)  # two requests of the first in flight
    second.paid(tokens(200), None)
    second.refresh(0)
    third.refresh(0)

    assert third.admits(1)  # 200 + (2 + 1 + 1) × 200 = 1000
    assert not third.admits(2)
    first.publish(0)  # the first ended without paying
    clock.advance()
    third.refresh(0)
    assert third.admits(3)
    assert not third.admits(4)
    assert first.spent() == {"paid_edits": 0, "total_tokens": 0}  # read before second paid


def test_a_retry_keeps_what_earlier_tries_paid(ledger, clock):
    first_try = shared(ledger, 0, try_number=1)
    first_try.paid(tokens(300), None)
    first_try.refresh(1)  # then the worker died, its request in flight

    retry = shared(ledger, 0, try_number=2)
    retry.refresh(0)
    retry.paid(tokens(100), None)
    retry.refresh(0)

    record = ledger.read("edit", 0)
    assert (record.try_number, record.in_flight) == (2, 0)
    assert (record.spending.edits, record.spending.total_tokens) == (2, 400)
    assert retry.spent() == {"paid_edits": 2, "total_tokens": 400}
    other = shared(ledger, 1)
    other.refresh(0)
    assert other.spent() == {"paid_edits": 2, "total_tokens": 400}


def test_a_record_of_a_later_try_is_not_taken_as_an_earlier_one(ledger):
    later = shared(ledger, 0, try_number=3)
    later.paid(tokens(300), None)
    later.refresh(0)

    stale = shared(ledger, 0, try_number=2)
    stale.refresh(0)

    assert stale.spent() == {"paid_edits": 0, "total_tokens": 0}


def test_unreadable_records_are_skipped_with_a_warning(storage, ledger, clock, caplog):
    _, write = storage
    first, second = shared(ledger, 0), shared(ledger, 1)
    first.paid(tokens(250), None)
    first.refresh(0)
    folder = "/".join(ledger.location.split("/")[-4:-1])  # .cometapi-budget/<dag>/<run>
    write(f"{folder}/torn-3.json", b'{"task_id": "torn", "map_in')
    write(f"{folder}/list-4.json", b"[1, 2]")
    write(f"{folder}/bad-5.json", b'{"task_id": "bad", "map_index": 5, "edits": -1}')

    with caplog.at_level(logging.WARNING, logger=budget_module.__name__):
        second.refresh(0)

    assert second.spent() == {"paid_edits": 1, "total_tokens": 250}
    skipped = sorted(r.getMessage().split(": it")[0].rpartition("/")[2] for r in caplog.records)
    assert skipped == ["bad-5.json", "list-4.json", "torn-3.json"]
    assert [record.map_index for record in ledger.records()] == [0, 1]


def test_records_are_written_whole_with_nothing_left_beside_them(tmp_path):
    ledger = RunLedger(f"{tmp_path}/out", None, dag_id="a/../dag", run_id="r:1")
    budget = shared(ledger, -1)
    for in_flight in range(5):
        budget.refresh(in_flight)

    folder = tmp_path / "out" / ".cometapi-budget" / "dag" / "r_1"
    assert sorted(path.name for path in folder.iterdir()) == ["edit--1.json"]
    assert ledger.read("edit", -1).in_flight == 4


def test_task_instances_pricing_in_another_currency_leave_a_cost_budget_unjudged(ledger):
    in_usd = shared(ledger, 0, max_total_tokens=None, max_cost="10", currency="USD")
    in_eur = shared(ledger, 1, max_total_tokens=None, max_cost="10", currency="EUR")
    in_usd.paid(tokens(100), Decimal("0.50"))
    in_usd.refresh(0)
    in_eur.refresh(0)

    assert in_usd.admits(0)
    assert not in_eur.admits(0)
    assert "must price in one currency" in str(in_eur.error(0))


def test_the_ledger_lists_records_written_since_it_last_looked(storage, ledger):
    _, write = storage
    shared(ledger, 0).refresh(0)
    assert [record.map_index for record in ledger.records()] == [0]

    elsewhere = BudgetRecord("edit", 7, 1, None, 3, Spending(edits=1, total_tokens=50))
    folder = "/".join(ledger.location.split("/")[-4:-1])
    write(f"{folder}/edit-7.json", json.dumps(elsewhere.to_json()).encode())  # another process

    assert ledger.records()[1] == elsewhere
