"""The official ``openai`` SDK works unchanged against the emulator."""

from __future__ import annotations

import base64

import pytest

from tests.emulator.helpers import KEY
from tests.imaging import decode, image_bytes, mask_bytes


@pytest.fixture
def client(cometapi_emulator):
    from openai import OpenAI

    with OpenAI(base_url=f"{cometapi_emulator.url}/v1", api_key=KEY, max_retries=0) as sdk:
        yield sdk


def write(path, data):
    path.write_bytes(data)
    return path


def test_sdk_single_image_edit_with_mask(client, cometapi_emulator, tmp_path):
    image = write(tmp_path / "boat.png", image_bytes((64, 48)))
    mask = write(tmp_path / "mask.png", mask_bytes((64, 48)))

    with image.open("rb") as image_file, mask.open("rb") as mask_file:
        result = client.images.edit(
            model="gpt-image-2", image=image_file, prompt="Add a red ribbon", mask=mask_file
        )

    assert decode(base64.b64decode(result.data[0].b64_json)).size == (64, 48)
    assert result.usage.input_tokens_details.image_tokens == 192
    files = cometapi_emulator.requests[0]["files"]
    assert [(f["field"], f["filename"], f["content_type"]) for f in files] == [
        ("image", "boat.png", "image/png"),
        ("mask", "mask.png", "image/png"),
    ]


def test_sdk_multi_image_edit_sends_image_array(client, cometapi_emulator, tmp_path):
    paths = [write(tmp_path / f"{i}.png", image_bytes((32 + i, 32))) for i in range(2)]

    with paths[0].open("rb") as first, paths[1].open("rb") as second:
        result = client.images.edit(
            model="gpt-image-2", image=[first, second], prompt="Combine them", n=2
        )

    assert [decode(base64.b64decode(d.b64_json)).size for d in result.data] == [(32, 32)] * 2
    files = cometapi_emulator.requests[0]["files"]
    assert [f["field"] for f in files] == ["image[]", "image[]"]
    assert cometapi_emulator.requests[0]["fields"]["n"] == "2"


def test_sdk_sees_a_rate_limit_error(client, tmp_path):
    import openai

    image = write(tmp_path / "boat.png", image_bytes())
    with image.open("rb") as image_file, pytest.raises(openai.RateLimitError) as info:
        client.images.edit(
            image=image_file,
            prompt="x",
            extra_headers={"x-emulator-fault": "status=429;retry_after=1"},
        )

    assert info.value.status_code == 429
    assert info.value.request_id.startswith("req_")


def test_sdk_lists_models(client):
    from airflow_provider_cometapi.emulator.families import LISTED_MODELS

    assert [model.id for model in client.models.list()] == list(LISTED_MODELS)
    assert "seedream-4-0-250828" in LISTED_MODELS
