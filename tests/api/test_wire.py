"""The wire pieces both transports share: the User-Agent and the attempt and retry log lines."""

from __future__ import annotations

from airflow_provider_cometapi import __version__
from airflow_provider_cometapi.api.wire import CallLog, new_idempotency_key, user_agent

BASE = "https://api.cometapi.com"


def line(args: tuple[object, ...]) -> str:
    """The message ``log.info(*args)`` writes."""
    text, *values = args
    assert isinstance(text, str)
    return text % tuple(values)


def test_an_api_call_is_named_by_its_path_and_item():
    call = CallLog.of("POST", f"{BASE}/v1/images/edits", BASE, authenticated=True, label="b3.png")

    assert line(call.attempt(1, 3)) == "CometAPI POST /v1/images/edits for b3.png: attempt 1 of 3"
    assert line(call.retry("HTTP 429", 0.5)) == (
        "CometAPI POST /v1/images/edits for b3.png: HTTP 429; retrying in 0.50 s"
    )


def test_without_a_label_the_line_names_the_path_only():
    call = CallLog.of("GET", f"{BASE}/v1/models", BASE, authenticated=True, label=None)

    assert line(call.attempt(2, 2)) == "CometAPI GET /v1/models: attempt 2 of 2"


def test_a_download_is_never_named_by_its_url():
    url = f"{BASE}/files/out.png?signature=s3cr3t"
    call = CallLog.of("GET", url, BASE, authenticated=False, label="b3.png")

    assert line(call.attempt(1, 3)) == "CometAPI GET download for b3.png: attempt 1 of 3"


def test_a_long_label_is_shortened_to_one_line():
    call = CallLog("POST", "/v1/images/edits", "a\nb " + "x" * 500)

    message = line(call.attempt(1, 1))
    assert "\n" not in message
    assert len(message) < 200


def test_the_user_agent_starts_with_the_product_and_ends_with_the_client():
    agents = [user_agent("requests"), user_agent("httpx")]

    assert [agent.split() for agent in agents] == [
        [f"airflow-provider-cometapi/{__version__}", "requests"],
        [f"airflow-provider-cometapi/{__version__}", "httpx"],
    ]


def test_each_call_gets_a_fresh_idempotency_key():
    keys = {new_idempotency_key() for _ in range(100)}

    assert len(keys) == 100
    assert all(key.startswith("airflow-cometapi-") for key in keys)
