"""Backoff without a Retry-After header: 0.5 s doubling per retry, capped at 8 s, with jitter."""

from __future__ import annotations

import random

import pytest

from airflow_provider_cometapi.api.retry import RetryPolicy

EXPECTED = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0]


@pytest.mark.parametrize(("jitter", "share"), [(0.0, 1.0), (1.0, 0.75)])
def test_backoff_doubles_from_half_a_second_up_to_8_s(jitter, share):
    policy = RetryPolicy(max_retries=20, random=lambda: jitter)

    waits = [policy.for_status(attempt, 503, {}).wait for attempt in range(11)]

    assert waits == [base * share for base in EXPECTED]


def test_jittered_backoff_never_exceeds_8_s():
    policy = RetryPolicy(max_retries=20, random=random.Random(7).random)

    for attempt in range(11):
        waits = [policy.for_status(attempt, 429, {}).wait for _ in range(200)]
        assert 0.75 * EXPECTED[attempt] <= min(waits)
        assert max(waits) <= EXPECTED[attempt] <= 8.0
