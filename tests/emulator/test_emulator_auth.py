"""Bearer auth on the API routes, the model list, and API keys kept out of every record."""

from __future__ import annotations

import json

import pytest
import requests

from tests.emulator.helpers import KEY, png_part

RIGHT_KEY = "sk-right-key-abcdef123456"
UNAUTHORIZED = {
    "error": {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}


@pytest.fixture(scope="module")
def locked_emulator():
    from airflow_provider_cometapi.emulator import EmulatorServer

    with EmulatorServer(api_key=RIGHT_KEY) as server:
        yield server


def edit(url, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    return requests.post(
        f"{url}/v1/images/edits",
        files=[png_part()],
        data={"prompt": "x"},
        headers=headers,
        timeout=5,
    )


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer ", "Bearer wrong-key", f"Basic {RIGHT_KEY}", RIGHT_KEY],
    ids=["missing", "empty", "empty bearer", "wrong key", "basic scheme", "no scheme"],
)
def test_bad_key_is_refused_with_401_and_recorded(locked_emulator, authorization):
    locked_emulator.reset()
    response = edit(locked_emulator.url, authorization)

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert [r["status"] for r in locked_emulator.requests] == [401]
    assert locked_emulator.billed == []


def test_only_the_configured_key_is_accepted(locked_emulator):
    assert edit(locked_emulator.url, f"Bearer {RIGHT_KEY}").status_code == 200
    assert edit(locked_emulator.url, f"bearer {RIGHT_KEY}").status_code == 200


def test_without_a_configured_key_any_non_empty_key_is_accepted(cometapi_emulator):
    assert edit(cometapi_emulator.url, "Bearer anything-at-all").status_code == 200
    assert edit(cometapi_emulator.url, "Bearer ").status_code == 401


def test_models_lists_the_image_edit_models(session, cometapi_emulator):
    response = session.get(f"{cometapi_emulator.url}/v1/models", timeout=5)

    models = [
        "gpt-image-2",
        "gpt-image-1.5",
        "gpt-image-1",
        "bytedance-seedEdit-3.0-i2i",
        "doubao-seededit-3-0-i2i-250628",
        "seedream-4-0-250828",
        "qwen-image-edit",
    ]
    assert response.json() == {
        "object": "list",
        "data": [{"id": model, "object": "model", "owned_by": "cometapi"} for model in models],
    }
    assert cometapi_emulator.requests[0]["path"] == "/v1/models"
    assert cometapi_emulator.requests[0]["status"] == 200


def test_models_needs_the_key(locked_emulator):
    url = f"{locked_emulator.url}/v1/models"
    assert requests.get(url, timeout=5).json() == UNAUTHORIZED
    ok = requests.get(url, headers={"Authorization": f"Bearer {RIGHT_KEY}"}, timeout=5)
    assert ok.status_code == 200


def test_key_appears_in_no_record(locked_emulator):
    locked_emulator.reset()
    edit(locked_emulator.url, f"Bearer {RIGHT_KEY}")
    edit(locked_emulator.url, "Bearer sk-wrong-key-987")
    requests.get(
        f"{locked_emulator.url}/v1/models",
        headers={"Authorization": f"Bearer {RIGHT_KEY}", "Proxy-Authorization": RIGHT_KEY},
        timeout=5,
    )

    records = locked_emulator.requests
    assert [r["status"] for r in records] == [200, 401, 200]
    assert all("authorization" not in r["headers"] for r in records)
    assert all("proxy-authorization" not in r["headers"] for r in records)
    served = requests.get(f"{locked_emulator.url}/_emulator/records", timeout=5).text
    for text in (json.dumps(records), json.dumps(locked_emulator.billed), served):
        assert RIGHT_KEY not in text
        assert "sk-wrong-key-987" not in text
    assert KEY not in served
