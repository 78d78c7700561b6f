"""CometApiHook against the local emulator over loopback: success, validation, retries, errors."""

from __future__ import annotations

import io
import json
import socket

import pytest

from airflow_provider_cometapi.exceptions import (
    CometAPIAuthError,
    CometAPIBadRequestError,
    CometAPIBadResponseError,
    CometAPIConnectionError,
    CometAPIRateLimitError,
    CometAPIServerError,
    CometAPITimeoutError,
    CometAPIValidationError,
)
from airflow_provider_cometapi.hooks.cometapi import CometApiHook
from tests.imaging import decode, image_bytes, mask_bytes

FAULT = "x-emulator-fault"


@pytest.fixture
def hook(cometapi_conn):
    with CometApiHook() as hook:
        yield hook


def edit_with_fault(hook, fault, **kwargs):
    """An edit whose request carries an emulator fault header."""
    hook.session.headers[FAULT] = fault
    try:
        return hook.edit_image(image_bytes(), "Add a red ribbon", **kwargs)
    finally:
        del hook.session.headers[FAULT]


def test_identity_and_connection_form():
    assert CometApiHook.conn_name_attr == "cometapi_conn_id"
    assert CometApiHook.default_conn_name == "cometapi_default"
    assert CometApiHook.conn_type == "cometapi"
    assert CometApiHook.hook_name == "CometAPI"
    behaviour = CometApiHook.get_ui_field_behaviour()
    assert set(behaviour["hidden_fields"]) == {"schema", "login"}
    assert behaviour["relabeling"] == {"password": "API Key", "host": "Base URL"}
    assert behaviour["placeholders"]["host"] == "https://api.cometapi.com"


def test_init_reads_no_connection():
    hook = CometApiHook(cometapi_conn_id="does_not_exist")
    assert hook.cometapi_conn_id == "does_not_exist"
    assert "settings" not in hook.__dict__
    assert "session" not in hook.__dict__


def test_session_is_reused_and_closed_on_exit(cometapi_conn):
    with CometApiHook() as hook:
        first = hook.session
        hook.edit_image(image_bytes(), "one")
        hook.edit_image(image_bytes(), "two")
        assert hook.session is first
    assert "session" not in hook.__dict__
    assert len(first.adapters["http://"].poolmanager.pools) == 0


def test_get_conn_is_the_session_the_edits_go_through(hook, cometapi_emulator):
    from airflow_provider_cometapi.api.request import EDIT_PATH
    from airflow_provider_cometapi.hooks.cometapi import USER_AGENT

    session = hook.get_conn()
    assert session is hook.session
    assert session is hook.get_conn()
    assert session.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("airflow-provider-cometapi/")
    session.headers["x-set-on-get-conn"] = "yes"  # a header set there reaches the server
    hook.edit_image(image_bytes(), "Add a red ribbon")

    (sent,) = [record for record in cometapi_emulator.requests if record["path"] == EDIT_PATH]
    assert sent["headers"]["x-set-on-get-conn"] == "yes"
    assert sent["headers"]["user-agent"] == USER_AGENT


def test_single_edit_returns_decoded_image_usage_and_request_id(hook, cometapi_emulator):
    result = hook.edit_image(image_bytes((64, 48)), "Add a small red ribbon")

    assert len(result.images) == 1
    assert result.images[0].mime_type == "image/png"
    assert decode(result.images[0].data).size == (64, 48)
    billed = cometapi_emulator.billed
    assert len(billed) == 1
    assert result.usage == billed[0]["usage"]
    assert result.usage["input_tokens_details"]["image_tokens"] > 0
    assert result.request_id == billed[0]["request_id"]
    assert result.created > 0


def test_only_given_parameters_are_sent(hook, cometapi_emulator):
    hook.edit_image(image_bytes(), "Brighten it")

    record = cometapi_emulator.requests[0]
    assert record["fields"] == {"prompt": "Brighten it", "model": "gpt-image-2"}
    assert [(f["field"], f["filename"], f["content_type"]) for f in record["files"]] == [
        ("image", "image.png", "image/png")
    ]


def test_every_parameter_and_extra_field_is_sent(hook, cometapi_emulator):
    result = hook.edit_image(
        ("boat.png", image_bytes((32, 32))),
        "Make it dusk",
        model="qwen-image-edit",
        n=2,
        quality="low",
        size="16x16",
        output_format="jpeg",
        response_format="b64_json",
        extra_fields={"background": "transparent", "output_compression": 80, "stream": False},
    )

    fields = cometapi_emulator.requests[0]["fields"]
    assert fields == {
        "prompt": "Make it dusk",
        "model": "qwen-image-edit",
        "n": "2",
        "quality": "low",
        "size": "16x16",
        "output_format": "jpeg",
        "response_format": "b64_json",
        "background": "transparent",
        "output_compression": "80",
        "stream": "false",
    }
    assert [image.mime_type for image in result.images] == ["image/jpeg", "image/jpeg"]
    assert result.images[0].data != result.images[1].data
    assert decode(result.images[0].data).size == (16, 16)


def test_several_images_go_as_repeated_image_array_fields(hook, cometapi_emulator):
    hook.edit_image(
        [image_bytes(), ("second.jpg", image_bytes(fmt="JPEG")), image_bytes(fmt="WEBP")],
        "Combine them",
    )

    files = cometapi_emulator.requests[0]["files"]
    assert [(f["field"], f["filename"], f["content_type"]) for f in files] == [
        ("image[]", "image.png", "image/png"),
        ("image[]", "second.jpg", "image/jpeg"),
        ("image[]", "image.webp", "image/webp"),
    ]


def test_mask_is_sent_and_limits_the_edit(hook, cometapi_emulator):
    source = image_bytes((64, 48), color=(200, 200, 200))
    result = hook.edit_image(
        ("boat.png", source), "Paint the hole", mask=("mask.png", mask_bytes((64, 48)))
    )

    files = cometapi_emulator.requests[0]["files"]
    assert files[-1]["field"] == "mask"
    assert files[-1]["content_type"] == "image/png"
    edited = decode(result.images[0].data).convert("RGB")
    assert edited.getpixel((10, 10)) != (200, 200, 200)  # inside the transparent hole
    assert edited.getpixel((50, 40)) == (200, 200, 200)  # outside it


def test_local_path_input_keeps_its_name(hook, cometapi_emulator, tmp_path):
    path = tmp_path / "harbour.jpeg"
    path.write_bytes(image_bytes(fmt="JPEG"))

    hook.edit_image(str(path), "Add a lighthouse")
    hook.edit_image(path, "Add a lighthouse")

    names = [r["files"][0]["filename"] for r in cometapi_emulator.requests]
    assert names == ["harbour.jpg", "harbour.jpg"]
    assert cometapi_emulator.requests[0]["files"][0]["content_type"] == "image/jpeg"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_converted_to_png(hook, cometapi_emulator, fmt):
    hook.edit_image(("scan.dat", image_bytes(fmt=fmt)), "Clean it up")

    part = cometapi_emulator.requests[0]["files"][0]
    assert (part["filename"], part["content_type"]) == ("scan.png", "image/png")


@pytest.mark.parametrize(("mode", "color"), [("CMYK", (0, 50, 100, 0)), ("F", 123.5), ("I", 40000)])
def test_tiffs_in_modes_png_cannot_store_are_sent_as_png(hook, cometapi_emulator, mode, color):
    hook.edit_image(("scan.tif", image_bytes(fmt="TIFF", mode=mode, color=color)), "Clean it up")

    part = cometapi_emulator.requests[0]["files"][0]
    assert (part["filename"], part["content_type"]) == ("scan.png", "image/png")
    assert len(cometapi_emulator.billed) == 1


def test_a_16_bit_tiff_goes_out_as_a_16_bit_png():
    from PIL import Image

    from airflow_provider_cometapi.api.request import EditParams, edit_request

    buffer = io.BytesIO()
    Image.new("I;16B", (64, 48), 40000).save(buffer, format="TIFF")
    params = EditParams(prompt="x", model="gpt-image-2")
    request = edit_request(("scan.tif", buffer.getvalue()), params)

    sent = decode(request.images[0].data)
    assert (request.images[0].mime_type, sent.mode) == ("image/png", "I;16")
    assert sent.getpixel((0, 0)) == 40000


def test_url_outputs_are_downloaded_to_bytes(hook, cometapi_emulator):
    result = hook.edit_image(image_bytes(), "Add a flag", response_format="url", n=2)

    assert len(result.images) == 2
    for image in result.images:
        assert image.url.startswith(cometapi_emulator.url)
        assert decode(image.data).size == (64, 48)


def test_to_xcom_is_json_without_image_bytes(hook):
    result = hook.edit_image(image_bytes(), "Add a flag", n=2)

    payload = result.to_xcom()
    text = json.dumps(payload)
    assert payload["usage"] == result.usage
    assert payload["request_id"] == result.request_id
    assert [i["bytes"] for i in payload["images"]] == [len(i.data) for i in result.images]
    assert len(text) < 2000


def test_connection_test_succeeds_against_the_emulator(hook):
    ok, message = hook.test_connection()
    assert ok, message
    assert "models available" in message


def test_connection_test_reports_a_refused_key(monkeypatch):
    from airflow_provider_cometapi.emulator import EmulatorServer

    with EmulatorServer(api_key="the-right-key") as server:
        monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", server.connection_json("wrong-key-1"))
        ok, message = CometApiHook().test_connection()
        assert not ok
        assert message.startswith("GET /v1/models failed: ")
        assert "401" in message
        assert "wrong-key-1" not in message
        with pytest.raises(CometAPIAuthError) as info:
            CometApiHook().edit_image(image_bytes(), "x")
        assert info.value.status == 401
        assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("", "https://api.cometapi.com"),
        ("api.cometapi.com", "https://api.cometapi.com"),
        ("https://api.cometapi.com/v1", "https://api.cometapi.com"),
        ("https://api.cometapi.com/v1/", "https://api.cometapi.com"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("gateway.example/proxy/v1", "https://gateway.example/proxy"),
    ],
)
def test_base_url_forms(monkeypatch, host, expected):
    conn = {"conn_type": "cometapi", "host": host, "password": "key-12345"}
    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(conn))
    assert CometApiHook().settings.base_url == expected


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("gateway.example/proxy/v1", 8443, "https://gateway.example:8443/proxy"),
        ("http://[::1]", 8080, "http://[::1]:8080"),
        ("http://127.0.0.1:8080", 9090, "http://127.0.0.1:8080"),
    ],
)
def test_the_port_field_joins_the_base_url_unless_the_host_has_one(
    monkeypatch, host, port, expected
):
    conn = {"conn_type": "cometapi", "host": host, "port": port, "password": "key-12345"}
    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(conn))
    assert CometApiHook().settings.base_url == expected


def test_uri_connection_keeps_its_port(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", "cometapi://:key-12345@localhost:8080")
    assert CometApiHook().settings.base_url == "https://localhost:8080"


def test_uri_connection_with_a_protocol_reaches_the_emulator(cometapi_emulator, monkeypatch):
    port = cometapi_emulator.url.rpartition(":")[2]
    uri = f"cometapi://http://:key-12345@127.0.0.1:{port}"
    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", uri)

    with CometApiHook() as hook:
        ok, message = hook.test_connection()

    assert ok, message
    assert [r["path"] for r in cometapi_emulator.requests] == ["/v1/models"]


def test_a_bad_port_in_the_host_names_the_host(monkeypatch):
    conn = {"conn_type": "cometapi", "host": "http://127.0.0.1:http", "password": "key-12345"}
    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(conn))
    with pytest.raises(CometAPIValidationError, match="invalid port") as info:
        CometApiHook().settings  # noqa: B018
    assert info.value.param == "host"


def test_connection_extras_are_read(monkeypatch):
    extra = {
        "timeout": "30",
        "connect_timeout": 2,
        "max_retries": "5",
        "default_model": "qwen-image-edit",
        "verify": "false",
        "retry_on_read_timeout": True,
    }
    conn = {"conn_type": "cometapi", "password": "key-12345", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(conn))
    settings = CometApiHook().settings
    assert (settings.read_timeout, settings.connect_timeout, settings.max_retries) == (30, 2, 5)
    assert settings.default_model == "qwen-image-edit"
    assert settings.verify is False
    assert settings.retry_on_read_timeout is True
    defaults = {"conn_type": "cometapi", "password": "key-12345"}
    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(defaults))
    settings = CometApiHook().settings
    assert (settings.read_timeout, settings.connect_timeout, settings.max_retries) == (600, 10, 2)
    assert (settings.default_model, settings.verify) == ("gpt-image-2", True)


def test_extras_saved_by_the_connection_form_are_read(monkeypatch):
    extra = {"extra__cometapi__timeout": "45", "extra__cometapi__max_retries": "0"}
    conn = {"conn_type": "cometapi", "password": "key-12345", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(conn))
    settings = CometApiHook().settings
    assert (settings.read_timeout, settings.max_retries) == (45, 0)


def test_blank_key_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps({"conn_type": "cometapi"}))
    with pytest.raises(CometAPIAuthError, match="no API key"):
        CometApiHook().edit_image(image_bytes(), "x")


@pytest.mark.parametrize("value", [2, 2.0, "2.0", " 2 "])
def test_whole_numbers_may_be_written_with_a_decimal_point(monkeypatch, value):
    conn = {"conn_type": "cometapi", "password": "key-12345", "extra": {"max_retries": value}}
    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(conn))
    max_retries = CometApiHook().settings.max_retries
    assert (max_retries, type(max_retries)) == (2, int)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"timeout": "soon"}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 2.5}, "max_retries"),
        ({"max_retries": "2.5"}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
    ],
)
def test_bad_extra_names_the_field(monkeypatch, extra, field):
    conn = {"conn_type": "cometapi", "password": "key-12345", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(conn))
    with pytest.raises(CometAPIValidationError, match=field) as info:
        CometApiHook().settings  # noqa: B018
    assert info.value.param == field


# --- retries ---------------------------------------------------------------------------------


def test_429_waits_for_retry_after_then_succeeds(hook, cometapi_emulator, waits):
    result = edit_with_fault(hook, "status=429;retry_after=1.5;times=1")

    assert len(result.images) == 1
    assert waits == [1.5]
    keys = {r["idempotency_key"] for r in cometapi_emulator.requests}
    assert len(cometapi_emulator.requests) == 2
    assert len(keys) == 1
    assert keys.pop().startswith("airflow-cometapi-")
    assert len(cometapi_emulator.billed) == 1


def test_retry_after_ms_wins_over_backoff(hook, waits):
    edit_with_fault(hook, "status=429;retry_after_ms=250;times=1")
    assert waits == [0.25]


def test_retry_after_http_date_is_honoured(hook, waits):
    edit_with_fault(hook, "status=503;retry_after_date=3;times=1")
    assert len(waits) == 1
    assert 1.0 <= waits[0] <= 3.0


def test_5xx_backs_off_exponentially_then_succeeds(hook, cometapi_emulator, waits):
    result = edit_with_fault(hook, "status=503;times=2")

    assert len(result.images) == 1
    assert len(waits) == 2
    assert 0.375 <= waits[0] <= 0.5
    assert 0.75 <= waits[1] <= 1.0
    assert [r["status"] for r in cometapi_emulator.requests] == [503, 503, 200]


@pytest.mark.parametrize("status", [408, 409])
def test_408_and_409_are_retried_then_succeed(hook, cometapi_emulator, waits, status):
    result = edit_with_fault(hook, f"status={status};times=1")

    assert len(result.images) == 1
    assert [r["status"] for r in cometapi_emulator.requests] == [status, 200]
    assert len(waits) == 1
    assert 0.375 <= waits[0] <= 0.5
    assert len(cometapi_emulator.billed) == 1


def test_408_after_the_last_retry_is_a_timeout_error(hook, cometapi_emulator, waits):
    with pytest.raises(CometAPITimeoutError) as info:
        edit_with_fault(hook, "status=408")
    assert info.value.status == 408
    assert "Gave up after 2 retries" in str(info.value)
    assert [r["status"] for r in cometapi_emulator.requests] == [408, 408, 408]
    assert cometapi_emulator.billed == []


def test_retries_exhausted_raise_the_last_error(hook, cometapi_emulator, waits):
    with pytest.raises(CometAPIServerError) as info:
        edit_with_fault(hook, "status=500")
    assert info.value.status == 500
    assert "Gave up after 2 retries" in str(info.value)
    assert len(cometapi_emulator.requests) == 3
    assert cometapi_emulator.billed == []


def test_max_retries_extra_bounds_attempts(cometapi_conn, cometapi_emulator, waits):
    cometapi_conn(max_retries=4)
    with CometApiHook() as hook, pytest.raises(CometAPIRateLimitError):
        edit_with_fault(hook, "status=429;retry_after=0")
    assert len(cometapi_emulator.requests) == 5
    assert waits == [0.0] * 4


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_other_4xx_are_tried_exactly_once(hook, cometapi_emulator, waits, status):
    with pytest.raises(CometAPIBadRequestError) as info:
        edit_with_fault(hook, f"status={status}")
    assert info.value.status == status
    assert info.value.server_message
    assert len(cometapi_emulator.requests) == 1
    assert waits == []


def test_x_should_retry_false_stops_retries(hook, cometapi_emulator, waits):
    with pytest.raises(CometAPIServerError):
        edit_with_fault(hook, "status=503;should_retry=false")
    assert len(cometapi_emulator.requests) == 1


def test_x_should_retry_true_retries_a_4xx(hook, cometapi_emulator, waits):
    result = edit_with_fault(hook, "status=400;should_retry=true;times=1")
    assert len(result.images) == 1
    assert len(cometapi_emulator.requests) == 2


def test_retry_after_over_the_limit_fails_at_once(hook, cometapi_emulator, waits):
    with pytest.raises(CometAPIRateLimitError, match="wait 300 s"):
        edit_with_fault(hook, "status=429;retry_after=300")
    assert waits == []
    assert len(cometapi_emulator.requests) == 1


def test_hang_ends_in_a_timeout_without_a_retry(cometapi_conn, cometapi_emulator, waits):
    cometapi_conn(timeout=0.5)
    with CometApiHook() as hook, pytest.raises(CometAPITimeoutError, match="did not answer"):
        edit_with_fault(hook, "hang")
    assert len(cometapi_emulator.requests) == 1
    assert waits == []


def test_read_timeout_retries_when_the_extra_allows(cometapi_conn, cometapi_emulator, waits):
    cometapi_conn(timeout=0.5, retry_on_read_timeout=True, max_retries=1)
    with CometApiHook() as hook:
        result = edit_with_fault(hook, "hang;times=1")
    assert len(result.images) == 1
    assert len(waits) == 1


def test_per_call_timeout_overrides_the_connection(hook, cometapi_emulator):
    with pytest.raises(CometAPITimeoutError):
        edit_with_fault(hook, "hang", timeout=0.3)


def test_unreachable_server_is_retried_then_a_connection_error(monkeypatch, waits):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = {"conn_type": "cometapi", "host": f"http://127.0.0.1:{port}", "password": "key-12345"}
    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(conn))
    with pytest.raises(CometAPIConnectionError, match="base URL") as raised:
        CometApiHook().edit_image(image_bytes(), "x")
    assert len(waits) == 2
    assert f"Could not reach CometAPI at http://127.0.0.1:{port} (" in str(raised.value)


def test_errors_name_only_the_origin_of_a_url():
    from airflow_provider_cometapi.api.failures import Failure, failure_error

    error = failure_error(
        Failure.CONNECT, "refused", "https://user:pw@bucket.example:8443/img.png?X-Sig=abc"
    )
    assert "at https://bucket.example:8443 (" in str(error)
    assert "X-Sig" not in str(error)
    assert "pw" not in str(error)


# --- bad responses -----------------------------------------------------------------------------


def test_malformed_json_is_a_bad_response(hook, cometapi_emulator, waits):
    with pytest.raises(CometAPIBadResponseError, match="not valid JSON"):
        edit_with_fault(hook, "malformed_json")
    assert len(cometapi_emulator.requests) == 1


def test_html_error_page_is_named_not_dumped(hook, cometapi_emulator, waits):
    with pytest.raises(CometAPIServerError) as info:
        edit_with_fault(hook, "html;status=502")
    assert "HTML error page" in str(info.value)
    assert "<html" not in str(info.value)
    assert len(cometapi_emulator.requests) == 3


def test_truncated_body_is_not_retried(hook, cometapi_emulator, waits):
    with pytest.raises(CometAPIBadResponseError, match="cut off"):
        edit_with_fault(hook, "truncate")
    assert len(cometapi_emulator.requests) == 1
    assert waits == []
