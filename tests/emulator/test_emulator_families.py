"""Model families: GPT-like models answer as before; SeedEdit/Seedream as ``models.md`` says."""

from __future__ import annotations

import pytest

from airflow_provider_cometapi.emulator.editing import WATERMARK_COLOUR
from airflow_provider_cometapi.emulator.families import SEEDEDIT_MODELS
from tests.emulator.helpers import USAGE_KEYS, assert_refused, outputs, png_part
from tests.imaging import decode, image_bytes, png_chunk

SEEDREAM = "seedream-4-0-250828"


def downloads(session, response):
    """Download and decode every ``data[].url`` image of an edit response."""
    return [decode(session.get(item["url"], timeout=5).content) for item in response.json()["data"]]


def corner_patch(image):
    """The pixels of the watermark's square (bottom-right, an eighth of the shorter side)."""
    side = max(1, min(image.size) // 8)
    width, height = image.size
    return {
        image.getpixel((x, y))
        for x in range(width - side, width)
        for y in range(height - side, height)
    }


@pytest.mark.parametrize("model", SEEDEDIT_MODELS)
def test_seededit_answers_urls_with_model_created_and_its_own_usage(
    post_edit, session, cometapi_emulator, model
):
    response = post_edit(files=[png_part(image_bytes((64, 48)))], model=model, n="2")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"model", "created", "usage", "data"}
    assert body["model"] == model
    assert body["usage"] == {
        "generated_images": 2,
        "output_tokens": 2 * 1,  # one per started 4096 output pixels of each 64x48 image
        "total_tokens": 2,
    }
    assert [set(item) for item in body["data"]] == [{"url"}, {"url"}]
    assert all(
        item["url"].startswith(f"{cometapi_emulator.url}/_emulator/files/") for item in body["data"]
    )
    assert [image.size for image in downloads(session, response)] == [(64, 48)] * 2
    assert cometapi_emulator.billed[0]["usage"] == body["usage"]
    assert cometapi_emulator.billed[0]["model"] == model


def test_seededit_answers_urls_even_when_asked_for_b64_json(post_edit):
    response = post_edit(model=SEEDREAM, response_format="b64_json")

    assert [set(item) for item in response.json()["data"]] == [{"url"}]


@pytest.mark.parametrize(
    "model", ["gpt-image-2", "gpt-image-1.5", "gpt-image-1", "qwen-image-edit"]
)
def test_gpt_and_unknown_models_answer_b64_json_with_the_documented_usage(post_edit, model):
    response = post_edit(model=model)

    body = response.json()
    assert set(body) == {"created", "usage", "data"}
    assert set(body["usage"]) == USAGE_KEYS
    assert [set(item) for item in body["data"]] == [{"b64_json"}]


def test_gpt_models_still_answer_urls_when_asked(post_edit):
    response = post_edit(model="gpt-image-1", response_format="url")

    assert set(response.json()) == {"created", "usage", "data"}
    assert [set(item) for item in response.json()["data"]] == [{"url"}]


def test_adaptive_size_keeps_the_input_size(post_edit, session):
    response = post_edit(files=[png_part(image_bytes((90, 40)))], model=SEEDREAM, size="adaptive")

    assert [image.size for image in downloads(session, response)] == [(90, 40)]


def test_adaptive_size_is_refused_for_a_gpt_model(post_edit, cometapi_emulator):
    assert_refused(post_edit(model="gpt-image-2", size="adaptive"), cometapi_emulator, "size")


def test_the_watermark_is_on_by_default_and_only_in_its_corner(post_edit, session):
    source = png_part(image_bytes((64, 48), color=(30, 120, 200)))
    [marked] = downloads(session, post_edit(files=[source], model=SEEDREAM))
    [unmarked] = downloads(session, post_edit(files=[source], model=SEEDREAM, watermark="false"))
    [explicit] = downloads(session, post_edit(files=[source], model=SEEDREAM, watermark="TRUE"))

    assert corner_patch(marked) == {WATERMARK_COLOUR}  # 6x6 px: 48 // 8
    assert WATERMARK_COLOUR not in corner_patch(unmarked)
    assert explicit.tobytes() == marked.tobytes()
    outside = [(x, y) for x in range(64) for y in range(48) if x < 58 or y < 42]
    assert all(marked.getpixel(xy) == unmarked.getpixel(xy) for xy in outside)


def test_gpt_models_add_no_watermark(post_edit):
    [image] = outputs(post_edit(model="gpt-image-2", watermark="true"))

    assert WATERMARK_COLOUR not in corner_patch(image)


def test_same_seededit_request_gives_the_same_bytes_and_a_seed_changes_them(post_edit, session):
    def edit(**fields):
        response = post_edit(model=SEEDREAM, **fields)
        [data] = [session.get(i["url"], timeout=5).content for i in response.json()["data"]]
        return data

    assert edit(seed="7") == edit(seed="7")
    assert edit(seed="7") != edit(seed="8")
    assert edit() == edit(seed="-1")


@pytest.mark.parametrize(
    "fields",
    [
        {"seed": "-1"},
        {"seed": "2147483647"},
        {"guidance_scale": "1.0"},
        {"guidance_scale": "10"},
        {"guidance_scale": "5.5", "seed": "0", "watermark": "false", "size": "adaptive"},
    ],
)
def test_seededit_fields_in_range_are_accepted(post_edit, cometapi_emulator, fields):
    response = post_edit(model=SEEDREAM, **fields)

    assert response.status_code == 200
    assert cometapi_emulator.requests[0]["fields"].items() >= fields.items()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"seed": "-2"}, "seed"),
        ({"seed": "2147483648"}, "seed"),
        ({"seed": "1.5"}, "seed"),
        ({"guidance_scale": "0.99"}, "guidance_scale"),
        ({"guidance_scale": "10.01"}, "guidance_scale"),
        ({"guidance_scale": "nan"}, "guidance_scale"),
        ({"watermark": "yes"}, "watermark"),
        ({"size": "huge"}, "size"),
    ],
)
def test_seededit_fields_out_of_range_are_refused_naming_them(
    post_edit, cometapi_emulator, fields, param
):
    assert_refused(post_edit(model=SEEDREAM, **fields), cometapi_emulator, param)


def test_gpt_models_accept_the_seededit_fields_as_unknown_fields(post_edit):
    response = post_edit(model="gpt-image-2", seed="-2", guidance_scale="99", watermark="maybe")

    assert response.status_code == 200


IMAGE_CASES = {
    "WEBP": (image_bytes((64, 48), fmt="WEBP"), "image/webp", "invalid_image_format"),
    "PNG sent as image/jpeg": (image_bytes((64, 48)), "image/jpeg", "invalid_image_format"),
    "14 px wide": (image_bytes((14, 30)), "image/png", "invalid_image_size"),
    "14 px high": (image_bytes((30, 14)), "image/png", "invalid_image_size"),
    "wider than 3:1": (image_bytes((91, 30)), "image/png", "invalid_image_size"),
    "taller than 1:3": (image_bytes((30, 91)), "image/png", "invalid_image_size"),
}


@pytest.mark.parametrize(("data", "content_type", "code"), IMAGE_CASES.values(), ids=IMAGE_CASES)
def test_seededit_refuses_images_it_does_not_take(
    post_edit, cometapi_emulator, data, content_type, code
):
    files = [("image", ("source", data, content_type))]

    assert_refused(post_edit(files=files, model=SEEDREAM), cometapi_emulator, "image", code)
    cometapi_emulator.reset()
    assert post_edit(files=files, model="gpt-image-2").status_code == 200  # as before


def padded(png: bytes, total: int) -> bytes:
    """``png`` grown to exactly ``total`` bytes by a private ancillary chunk after IHDR, which
    readers skip."""
    header_end = 8 + 12 + 13  # the signature, then IHDR's length, type, 13 bytes and CRC
    return png[:header_end] + png_chunk(b"prVt", b"\0" * (total - len(png) - 12)) + png[header_end:]


def test_seededit_takes_an_image_of_10_mb_and_refuses_one_byte_more(post_edit, cometapi_emulator):
    """The page's "at most 10 MB" is decimal: 10,000,000 bytes, not 10 MiB (10,485,760)."""
    at_limit = padded(image_bytes(), 10_000_000)
    assert len(at_limit) == 10_000_000
    assert post_edit(files=[png_part(at_limit)], model=SEEDREAM).status_code == 200
    cometapi_emulator.reset()

    response = post_edit(files=[png_part(padded(image_bytes(), 10_000_001))], model=SEEDREAM)

    assert_refused(response, cometapi_emulator, "image", "image_too_large")
    assert "10000001 bytes, over this model's 10 MB limit" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("size", "fmt", "content_type"),
    [
        ((15, 15), "PNG", "image/png"),
        ((30, 90), "PNG", "image/png"),
        ((90, 30), "JPEG", "image/jpeg"),
    ],
)
def test_seededit_takes_jpeg_and_png_at_the_limits(post_edit, session, size, fmt, content_type):
    files = [("image", ("source", image_bytes(size, fmt=fmt), content_type))]
    response = post_edit(files=files, model=SEEDREAM)

    assert response.status_code == 200
    assert [image.size for image in downloads(session, response)] == [size]


def test_the_hook_reads_a_seededit_answer(cometapi_emulator, monkeypatch):
    from airflow_provider_cometapi.hooks.cometapi import CometApiHook

    monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", cometapi_emulator.connection_json())
    with CometApiHook() as hook:
        result = hook.edit_image(
            image_bytes((64, 48)), "Add a flag", model=SEEDREAM, extra_fields={"watermark": False}
        )

    [image] = result.images
    assert image.url.startswith(f"{cometapi_emulator.url}/_emulator/files/")
    assert decode(image.data).size == (64, 48)
    assert WATERMARK_COLOUR not in corner_patch(decode(image.data))
    assert result.usage == cometapi_emulator.billed[0]["usage"]
    assert set(result.usage) == {"generated_images", "output_tokens", "total_tokens"}
