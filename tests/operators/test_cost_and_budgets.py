"""Cost by the user's prices, token and cost budgets (a task's own, and one a DAG run's mapped
tasks share), and dry runs; in ``dag.test()`` runs against the emulator."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.dagrun import batch_task
from tests.imaging import image_bytes

PRICES = {"input_text_per_1m": 5, "input_image_per_1m": 8, "output_per_1m": 30}
PRICING = {"currency": "USD", "models": {"gpt-image-2": PRICES}}


def inbox(tmp_path, count: int):
    folder = tmp_path / "inbox"
    folder.mkdir()
    for i in range(count):
        (folder / f"i{i:02d}.png").write_bytes(image_bytes((64, 48)))
    return folder


def expected_cost(usage: dict) -> float:
    """The cost of one emulator edit by ``PRICES``, worked out here from its usage."""
    details = usage["input_tokens_details"]
    million = Decimal(1_000_000)
    cost = (
        details["text_tokens"] * Decimal(PRICES["input_text_per_1m"])
        + details["image_tokens"] * Decimal(PRICES["input_image_per_1m"])
        + usage["output_tokens"] * Decimal(PRICES["output_per_1m"])
    ) / million
    return float(round(cost, 6))


@pytest.mark.parametrize("where", ["connection", "config"])
def test_a_priced_model_puts_cost_on_every_item_and_the_usage(
    run_dag, tmp_path, cometapi_conn, monkeypatch, where
):
    if where == "connection":
        emulator = cometapi_conn(pricing=json.dumps(PRICING))
    else:
        monkeypatch.setenv("AIRFLOW__COMETAPI__PRICING", json.dumps(PRICING))
        emulator = cometapi_conn()
    folder = inbox(tmp_path, 3)

    outcome = run_dag(batch_task(repr(f"{folder}/"), f"{tmp_path}/out/"))

    assert outcome.state == "success"
    billed = {b["request_id"]: b["usage"] for b in emulator.billed}
    lines = outcome.report("batch")
    assert [line["cost"] for line in lines] == [
        expected_cost(billed[line["request_id"]]) for line in lines
    ]
    usage = outcome.xcom("batch", "usage")
    assert usage["currency"] == "USD"
    assert usage["cost"] == pytest.approx(sum(line["cost"] for line in lines), abs=1e-6)
    assert usage["reused"]["cost"] == 0
    summary = outcome.xcom("batch", "summary")
    assert (summary["cost"], summary["currency"]) == (usage["cost"], "USD")


def test_a_model_without_a_price_has_no_cost_anywhere(run_dag, tmp_path, cometapi_conn):
    other = {"currency": "EUR", "models": {"some-other-model": PRICES}}
    cometapi_conn(pricing=json.dumps(other))
    folder = inbox(tmp_path, 2)

    outcome = run_dag(batch_task(repr(f"{folder}/"), f"{tmp_path}/out/"))

    assert outcome.state == "success"
    assert all("cost" not in line for line in outcome.report("batch"))
    usage = outcome.xcom("batch", "usage")
    assert "cost" not in usage  # never a guessed number
    assert usage["currency"] == "EUR"
    assert "cost" not in outcome.xcom("batch", "summary")


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_a_token_budget_stops_starting_items_and_fails_the_task(
    run_dag, tmp_path, cometapi_emulator, deferrable
):
    folder = inbox(tmp_path, 12)
    first = run_dag(batch_task(repr(f"{folder}/"), f"{tmp_path}/probe/", max_concurrency=1))
    per_edit = first.xcom("batch", "usage")["total_tokens"] // 12
    billed_before = len(cometapi_emulator.billed)

    outcome = run_dag(
        batch_task(
            repr(f"{folder}/"),
            f"{tmp_path}/out/",
            max_concurrency=1,
            max_total_tokens=int(per_edit * 5.5),
            deferrable=deferrable,
        )
    )

    # one request at a time: the k-th starts while (k - 1) x per_edit + per_edit <= 5.5 x per_edit
    assert outcome.state == "failed"
    assert len(cometapi_emulator.billed) - billed_before == 5
    lines = outcome.report("batch")
    assert [line["error"] is None for line in lines] == [True] * 5 + [False] * 7
    assert {line["error"]["type"] for line in lines[5:]} == {"CometAPIBudgetError"}
    summary = outcome.xcom("batch", "summary")
    assert (summary["edited"], summary["not_started"], summary["failed"]) == (5, 7, 0)
    assert outcome.xcom("batch", "usage")["total_tokens"] == 5 * per_edit


def test_a_cost_budget_needs_a_price_for_the_model_before_anything_is_sent(
    run_dag, tmp_path, cometapi_conn, capfd
):
    emulator = cometapi_conn(pricing=json.dumps({"currency": "USD", "models": {}}))
    folder = inbox(tmp_path, 2)

    outcome = run_dag(batch_task(repr(f"{folder}/"), f"{tmp_path}/out/", max_cost=1.0))

    assert outcome.state == "failed"
    assert emulator.requests == []
    assert "the pricing table has no price for gpt-image-2" in "".join(capfd.readouterr())


def test_a_run_wide_budget_is_shared_by_mapped_tasks(run_dag, tmp_path, cometapi_conn):
    emulator = cometapi_conn(pricing=json.dumps(PRICING))
    folders = []
    for index in range(3):
        folder = tmp_path / f"inbox{index}"
        folder.mkdir()
        for i in range(4):
            (folder / f"i{i}.png").write_bytes(image_bytes((64, 48)))
        folders.append(f"{folder}/")
    probe = run_dag(batch_task(repr(folders[0]), f"{tmp_path}/probe/", max_concurrency=1))
    per_edit = probe.xcom("batch", "usage")["cost"] / 4
    billed_before = len(emulator.billed)

    # the mapped tasks run one after another in dag.test(), in no fixed order: 3 x 4 items,
    # a budget for 6 edits
    outcome = run_dag(
        "from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator\n"
        "CometImageEditBatchOperator.partial(task_id='batch', prompt='Add a ribbon', "
        f"output_path='{tmp_path}/out/', max_concurrency=1, on_item_failure='continue', "
        f"max_cost={per_edit * 6.5!r}, budget_scope='dag_run').expand(sources={folders!r})"
    )

    paid = len(emulator.billed) - billed_before
    assert paid == 6
    # whichever runs first edits its 4; the second, 2 more; the third, none
    states = outcome.states()
    edited = {i: outcome.xcom("batch", "summary", i)["edited"] for i in range(3)}
    assert sorted(edited.values()) == [0, 2, 4]
    assert {i: states[("batch", i)] for i in range(3)} == {
        i: "success" if count == 4 else "failed" for i, count in edited.items()
    }
    records = list((tmp_path / "out" / ".cometapi-budget").rglob("*.json"))
    assert len(records) == 3
    assert sum(json.loads(r.read_text())["edits"] for r in records) == 6


def test_a_dry_run_counts_and_estimates_without_sending(run_dag, tmp_path, cometapi_conn):
    per_image = {"1024x1024": 1056}
    table = {
        "currency": "USD",
        "models": {"gpt-image-2": {"output_per_1m": 40, "output_tokens_per_image": per_image}},
    }
    emulator = cometapi_conn(pricing=json.dumps(table))
    folder = inbox(tmp_path, 4)
    (folder / "i03.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")

    outcome = run_dag(
        batch_task(repr(f"{folder}/"), f"{tmp_path}/out/", size="1024x1024", n=2, dry_run=True)
    )

    assert emulator.requests == []
    assert not (tmp_path / "out").exists()
    found = outcome.xcom("batch", "dry_run")
    assert {key: found[key] for key in ("items", "requests", "images", "reused", "invalid")} == {
        "items": 4,
        "requests": 3,
        "images": 6,
        "reused": 0,
        "invalid": 1,
    }
    assert found["estimated_output_tokens"] == 6 * 1056
    assert found["estimated_cost"] == pytest.approx(6 * 1056 * 40 / 1_000_000)
    assert outcome.state == "failed"  # an invalid item fails the dry run, as it would the run
