"""Request and billing records, in process and over ``/_emulator/*``."""

from __future__ import annotations

import json

from tests.emulator.helpers import PROMPT, png_part
from tests.imaging import decode, image_bytes, mask_bytes


def test_request_record_holds_fields_files_and_headers(post_edit, cometapi_emulator):
    mask = mask_bytes((64, 48))
    response = post_edit(
        files=[png_part(image_bytes((64, 48)), "boat.png"), png_part(mask, "m.png", "mask")],
        headers={"Idempotency-Key": "key-1", "X-Trace": "abc"},
        n="1",
    )

    [record] = cometapi_emulator.requests
    assert record["request_id"] == response.headers["x-request-id"]
    assert (record["path"], record["status"], record["fault"]) == ("/v1/images/edits", 200, None)
    assert record["fields"] == {"prompt": PROMPT, "n": "1"}
    assert record["files"] == [
        {
            "field": "image",
            "filename": "boat.png",
            "content_type": "image/png",
            "size": len(image_bytes((64, 48))),
        },
        {"field": "mask", "filename": "m.png", "content_type": "image/png", "size": len(mask)},
    ]
    assert record["headers"]["x-trace"] == "abc"
    assert record["headers"]["idempotency-key"] == "key-1"
    assert record["idempotency_key"] == "key-1"
    assert record["billed"] is True


def test_records_keep_arrival_order(post_edit, cometapi_emulator):
    ids = [post_edit(prompt=f"edit {i}").headers["x-request-id"] for i in range(4)]

    assert [r["request_id"] for r in cometapi_emulator.requests] == ids
    assert [r["request_id"] for r in cometapi_emulator.billed] == ids


def test_records_are_copies(post_edit, cometapi_emulator):
    post_edit()
    cometapi_emulator.requests[0]["fields"]["prompt"] = "changed"
    cometapi_emulator.billed.clear()

    assert cometapi_emulator.requests[0]["fields"]["prompt"] == PROMPT
    assert len(cometapi_emulator.billed) == 1


def test_records_endpoint_serves_the_same_records(post_edit, session, cometapi_emulator):
    post_edit()
    post_edit(n="0")

    served = session.get(f"{cometapi_emulator.url}/_emulator/records", timeout=5).json()

    assert served == {"requests": cometapi_emulator.requests, "billed": cometapi_emulator.billed}
    assert [r["status"] for r in served["requests"]] == [200, 400]


def test_reset_endpoint_clears_the_records(post_edit, session, cometapi_emulator):
    post_edit()

    response = session.post(f"{cometapi_emulator.url}/_emulator/reset", timeout=5)

    assert response.status_code == 200
    assert (cometapi_emulator.requests, cometapi_emulator.billed) == ([], [])


def test_reset_clears_the_records(post_edit, cometapi_emulator):
    post_edit()
    cometapi_emulator.reset()

    assert (cometapi_emulator.requests, cometapi_emulator.billed) == ([], [])


def test_connection_json_points_airflow_at_the_emulator(cometapi_emulator):
    conn = json.loads(cometapi_emulator.connection_json(api_key="k-1", timeout=30))

    assert conn == {
        "conn_type": "cometapi",
        "host": cometapi_emulator.url,
        "password": "k-1",
        "extra": {"timeout": 30},
    }
    assert json.loads(cometapi_emulator.connection_json())["password"] == "test-key"
    assert json.loads(cometapi_emulator.connection_json())["extra"] == {}


def test_connection_json_lets_url_outputs_download_from_the_emulator(
    cometapi_emulator, monkeypatch
):
    from airflow_provider_cometapi.hooks.cometapi import CometApiHook

    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", cometapi_emulator.connection_json())
    with CometApiHook() as hook:
        result = hook.edit_image(image_bytes(), "Add a flag", response_format="url")

    assert result.images[0].url.startswith(f"{cometapi_emulator.url}/_emulator/files/")
    assert decode(result.images[0].data).size == (64, 48)
