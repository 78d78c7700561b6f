"""A planted API key never shows in a log record, an exception chain, a repr or XCom output."""

from __future__ import annotations

import json
import logging
import socket
import uuid

import pytest

from airflow_provider_cometapi.exceptions import CometAPIError
from airflow_provider_cometapi.hooks.cometapi import CometApiHook
from tests.imaging import image_bytes
from tests.settings import PLANTED_KEY

FAULTS = [
    None,
    "status=429;retry_after=0",
    "status=500",
    "status=400",
    "html;status=502",
    "malformed_json",
    "truncate",
    "hang",
]


class _Everything(logging.Handler):
    """Keeps every record, formatted with its arguments and traceback."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


@pytest.fixture
def all_logs():
    handler = _Everything()
    loggers = [logging.getLogger(), logging.getLogger("urllib3"), logging.getLogger("airflow")]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield handler
    for lg, level in saved:
        lg.removeHandler(handler)
        lg.setLevel(level)


def chain_texts(exc: BaseException) -> list[str]:
    """str, repr and args of an exception and everything it was raised from."""
    texts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts += [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
        exc = exc.__cause__ or exc.__context__
    return texts


def test_planted_key_appears_nowhere(
    cometapi_conn, cometapi_emulator, all_logs, capfd, monkeypatch
):
    monkeypatch.setattr(CometApiHook, "_sleep", staticmethod(lambda _: None))
    cometapi_conn(timeout=0.5)
    seen: list[str] = []
    with CometApiHook() as hook:
        seen += [repr(hook), repr(hook.settings), str(hook.settings)]
        for fault in FAULTS:
            if fault:
                hook.session.headers["x-emulator-fault"] = fault
            try:
                result = hook.edit_image(image_bytes(), "Add a ribbon", n=2)
                seen += [json.dumps(result.to_xcom()), repr(result)]
            except CometAPIError as exc:
                seen += chain_texts(exc)
            finally:
                hook.session.headers.pop("x-emulator-fault", None)
        result = hook.edit_image(image_bytes(), "x", response_format="url")
        seen += [json.dumps(result.to_xcom()), repr(result), str(hook.test_connection())]
        seen += [repr(hook.session.auth), repr(hook.session.headers)]

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cometapi_emulator_url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_COMETAPI_DEFAULT",
        json.dumps(
            {"conn_type": "cometapi", "host": cometapi_emulator_url, "password": PLANTED_KEY}
        ),
    )
    with pytest.raises(CometAPIError) as info:
        CometApiHook().edit_image(image_bytes(), "x")
    seen += chain_texts(info.value)

    stdout, stderr = capfd.readouterr()  # the hook logs through Airflow's structlog
    assert len(seen) > 40
    assert "CometAPI POST /v1/images/edits: HTTP" in stdout + stderr  # the retry lines
    assert "retrying in" in stdout + stderr
    assert any("urllib3" in line for line in all_logs.lines)
    printed = [stdout, stderr, json.dumps(cometapi_emulator.requests)]
    for text in seen + all_logs.lines + printed:
        assert PLANTED_KEY not in text


def test_reading_the_settings_registers_the_key_with_the_secrets_masker(monkeypatch):
    from airflow.sdk._shared.secrets_masker import redact

    key = f"sk-fresh-{uuid.uuid4().hex}"  # never seen before, so never masked before
    conn = {"conn_type": "cometapi", "password": f" {key} "}  # the stripped key is masked too
    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(conn))
    assert redact(f"Bearer {key}.") == f"Bearer {key}."

    assert CometApiHook().settings.api_key == key

    assert redact(f"Bearer {key}.") == "Bearer ***."
