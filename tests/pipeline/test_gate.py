"""The request gate's rule, by position, and its waking of waiting items."""

from __future__ import annotations

import asyncio

from airflow_provider_cometapi.pipeline.gate import AsyncGate, OrderedGate


def test_items_take_their_turn_in_order():
    gate = OrderedGate(4, 2, stop_on_failure=True)
    assert gate.decide(1) is None  # item 0 has not taken its turn
    assert gate.decide(0) is True
    assert gate.decide(1) is True
    assert gate.decide(2) is None  # two in flight already
    gate.answered(ok=True)
    assert gate.decide(2) is True


def test_a_check_failure_refuses_every_later_item_and_none_before_it():
    gate = OrderedGate(7, 8, stop_on_failure=True)
    gate.check_failed(5)  # found first, but an earlier item fails too
    gate.check_failed(3)
    assert [gate.decide(position) for position in range(3)] == [True, True, True]
    assert gate.decide(3, sending=False) is True  # item 3 reports its own failure
    assert [gate.decide(position) for position in (4, 6)] == [False, False]
    assert gate.decide(5, sending=False) is False  # reported as not started, like item 4


def test_an_item_that_needs_no_request_waits_its_turn_but_not_for_a_slot():
    gate = OrderedGate(3, 1, stop_on_failure=True)
    assert gate.decide(1, sending=False) is None  # its turn has not come
    assert gate.decide(0) is True  # one request in flight: the limit is reached
    assert gate.decide(1, sending=False) is True  # reused: no slot needed
    assert gate.decide(2) is None


def test_a_failed_answer_starts_nothing_after_it():
    gate = OrderedGate(4, 2, stop_on_failure=True)
    assert [gate.decide(0), gate.decide(1)] == [True, True]
    gate.answered(ok=False)
    assert [gate.decide(2), gate.decide(3)] == [False, False]


def test_under_continue_a_failure_stops_nothing():
    gate = OrderedGate(4, 1, stop_on_failure=False)
    gate.check_failed(0)
    assert gate.decide(0, sending=False) is True  # it reports its own failure
    assert gate.decide(1) is True
    assert gate.decide(2) is None  # the one slot is taken
    gate.answered(ok=False)
    assert [gate.decide(2), gate.decide(3)] == [True, None]


def test_a_waiting_item_wakes_when_the_one_before_it_takes_its_turn():
    """The turn moving on is a change like any other: whoever waits for it is woken."""

    async def scenario() -> bool:
        gate = AsyncGate(2, 2, stop_on_failure=True)
        second = asyncio.ensure_future(gate.turn(1))
        await asyncio.sleep(0)  # item 1 waits: item 0 has not taken its turn
        assert not second.done()
        first = await gate.turn(0)  # nothing else will change: this alone must wake item 1
        for _ in range(5):
            await asyncio.sleep(0)
        return first and second.done() and second.result()

    assert asyncio.run(scenario()) is True
