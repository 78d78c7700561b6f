"""Successful edits: real, deterministic Pillow output in the documented response shape."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.emulator.helpers import KEY, PROMPT, USAGE_KEYS, outputs, png_part
from tests.imaging import decode, image_bytes, mask_bytes


def test_single_image_edit_returns_a_tinted_png_of_the_same_size(post_edit):
    before = time.time()
    response = post_edit(files=[png_part(image_bytes((64, 48), color=(30, 120, 200)))])
    after = time.time()

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"created", "usage", "data"}
    assert int(before) <= body["created"] <= after  # when it answered, in whole seconds
    [image] = outputs(response)
    assert (image.format, image.size) == ("PNG", (64, 48))
    assert image.getpixel((10, 10)) != (30, 120, 200)


def test_usage_has_every_documented_key_and_counts_tiles_words_and_pixels(post_edit):
    response = post_edit(
        files=[png_part(image_bytes((1024, 600)))], prompt="make the sky pink", n="2"
    )

    usage = response.json()["usage"]
    assert set(usage) == USAGE_KEYS
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (0, 0)
    assert usage["input_tokens_details"] == {
        "image_tokens": 4 * 192,
        "text_tokens": 4,
        "cached_tokens_details": {},
    }
    assert usage["input_tokens"] == 4 * 192 + 4
    assert usage["output_tokens"] == 2 * (1024 * 600 // 4096)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens_details": {}}
    assert usage["claude_cache_creation_5_m_tokens"] == 0


def test_images_sent_as_image_array_are_all_read(post_edit, cometapi_emulator):
    files = [
        png_part(image_bytes((64, 48)), "a.png", "image[]"),
        png_part(image_bytes((600, 600)), "b.png", "image[]"),
        png_part(image_bytes((32, 32)), "c.png", "image[]"),
    ]
    response = post_edit(files=files)

    assert response.status_code == 200
    assert outputs(response)[0].size == (64, 48)
    assert response.json()["usage"]["input_tokens_details"]["image_tokens"] == 192 + 4 * 192 + 192
    recorded = cometapi_emulator.requests[0]["files"]
    assert [(f["field"], f["filename"]) for f in recorded] == [
        ("image[]", "a.png"),
        ("image[]", "b.png"),
        ("image[]", "c.png"),
    ]


def test_mask_limits_the_edit_to_its_transparent_region(post_edit):
    source = image_bytes((64, 48), color=(30, 120, 200))
    files = [png_part(source), png_part(mask_bytes((64, 48), hole=(8, 8, 24, 24)), "m.png", "mask")]

    [image] = outputs(post_edit(files=files))

    assert image.getpixel((10, 10)) != (30, 120, 200)
    assert image.getpixel((23, 23)) != (30, 120, 200)
    assert image.getpixel((40, 40)) == (30, 120, 200)
    assert image.getpixel((0, 0)) == (30, 120, 200)


def test_palette_mask_with_transparency_is_accepted(post_edit):
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("P", (64, 48), 0).save(buffer, format="PNG", transparency=0)
    response = post_edit(files=[png_part(), png_part(buffer.getvalue(), "m.png", "mask")])

    assert response.status_code == 200


def test_n_outputs_are_distinct_images(post_edit):
    images = outputs(post_edit(n="3"))

    assert len(images) == 3
    assert len({image.tobytes() for image in images}) == 3


def test_same_request_gives_the_same_bytes(post_edit):
    first = post_edit(n="2").json()["data"]
    second = post_edit(n="2").json()["data"]

    assert first == second


def test_another_prompt_gives_another_tint(post_edit):
    assert post_edit(prompt="one").json()["data"] != post_edit(prompt="two").json()["data"]


@pytest.mark.parametrize(
    ("size", "expected"), [("32x16", (32, 16)), ("1024x1536", (1024, 1536)), ("auto", (64, 48))]
)
def test_size_sets_the_output_size(post_edit, size, expected):
    [image] = outputs(post_edit(size=size))

    assert image.size == expected


@pytest.mark.parametrize(
    ("output_format", "pillow_format", "mode"),
    [("png", "PNG", "RGB"), ("jpeg", "JPEG", "RGB"), ("webp", "WEBP", "RGB")],
)
def test_output_format_sets_the_encoding(post_edit, output_format, pillow_format, mode):
    [image] = outputs(post_edit(output_format=output_format))

    assert (image.format, image.mode) == (pillow_format, mode)


def test_jpeg_output_of_a_transparent_source_drops_alpha(post_edit):
    source = image_bytes((32, 32), mode="RGBA", color=(10, 20, 30))
    [image] = outputs(post_edit(files=[png_part(source)], output_format="jpeg"))

    assert (image.format, image.mode) == ("JPEG", "RGB")


def test_transparent_source_keeps_its_alpha_in_png(post_edit):
    from io import BytesIO

    from PIL import Image

    source = Image.new("RGBA", (32, 32), (10, 20, 30, 255))
    source.putpixel((0, 0), (0, 0, 0, 0))
    buffer = BytesIO()
    source.save(buffer, format="PNG")

    [image] = outputs(post_edit(files=[png_part(buffer.getvalue())]))

    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0
    assert image.getpixel((5, 5))[3] == 255


def test_url_response_format_serves_the_images_from_memory(post_edit, session, cometapi_emulator):
    response = post_edit(response_format="url", output_format="jpeg", n="2")

    urls = [item["url"] for item in response.json()["data"]]
    assert len(urls) == 2
    for url in urls:
        assert url.startswith(f"{cometapi_emulator.url}/_emulator/files/")
        assert url.endswith(".jpeg")
        served = session.get(url, timeout=5)
        assert served.headers["content-type"] == "image/jpeg"
        assert decode(served.content).size == (64, 48)


def test_unknown_file_is_an_openai_style_404(session, cometapi_emulator):
    response = session.get(f"{cometapi_emulator.url}/_emulator/files/nothing.png", timeout=5)

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_successful_edit_is_billed_once_with_its_usage(post_edit, cometapi_emulator):
    response = post_edit(n="2", model="qwen-image-edit", headers={"Idempotency-Key": "call-1"})

    assert cometapi_emulator.billed == [
        {
            "request_id": response.headers["x-request-id"],
            "idempotency_key": "call-1",
            "model": "qwen-image-edit",
            "images": 2,
            "usage": response.json()["usage"],
        }
    ]
    assert cometapi_emulator.requests[0]["billed"] is True


def test_any_model_name_and_extra_fields_are_accepted_and_recorded(post_edit, cometapi_emulator):
    extra = {"background": "transparent", "input_fidelity": "high", "output_compression": "80"}
    response = post_edit(model="my-own-model", user="u-1", **extra)

    assert response.status_code == 200
    assert cometapi_emulator.requests[0]["fields"] == {
        "prompt": PROMPT,
        "model": "my-own-model",
        "user": "u-1",
        **extra,
    }
    assert cometapi_emulator.billed[0]["model"] == "my-own-model"


def test_every_response_carries_a_request_id(post_edit, session, cometapi_emulator):
    responses = [
        post_edit(),
        post_edit(prompt=None),
        post_edit(headers={"Authorization": ""}),
        session.get(f"{cometapi_emulator.url}/v1/models", timeout=5),
        session.get(f"{cometapi_emulator.url}/nowhere", timeout=5),
    ]

    assert [r.status_code for r in responses] == [200, 400, 401, 200, 404]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(i.startswith("req_") for i in ids)
    assert len(set(ids)) == len(ids)


def test_latency_delays_each_edit(post_edit, cometapi_emulator, latency_gate):
    cometapi_emulator.set_latency(0.3)
    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(post_edit)
        try:
            pauses = latency_gate.wait_for_pauses(1)
            held, billed = cometapi_emulator.requests, cometapi_emulator.billed
            answered_while_held = answer.done()
        finally:
            latency_gate.release()
        first = answer.result()
    second = post_edit()

    assert pauses == [0.3]
    assert not answered_while_held
    assert [r["status"] for r in held] == [None]  # received, unanswered while the pause lasted
    assert billed == []
    assert (first.status_code, second.status_code) == (200, 200)
    assert latency_gate.pauses == [0.3, 0.3]  # the next edit paused too
    assert len(cometapi_emulator.billed) == 2


def test_edits_with_latency_wait_concurrently(cometapi_emulator, latency_gate):
    import requests

    cometapi_emulator.set_latency(0.5)
    url = f"{cometapi_emulator.url}/v1/images/edits"
    image = image_bytes((16, 16))

    def one(_):
        files = [png_part(image)]
        headers = {"Authorization": f"Bearer {KEY}"}
        return requests.post(url, files=files, data={"prompt": "x"}, headers=headers, timeout=60)

    with ThreadPoolExecutor(max_workers=60) as pool:
        answers = [pool.submit(one, i) for i in range(60)]
        try:
            pauses = latency_gate.wait_for_pauses(60)
            held = cometapi_emulator.requests
        finally:
            latency_gate.release()
        statuses = [answer.result().status_code for answer in answers]

    assert pauses == [0.5] * 60  # all 60 pausing at once: none waits for another's to end
    assert [r["status"] for r in held] == [None] * 60
    assert cometapi_emulator.max_in_flight == 60
    assert statuses == [200] * 60
    assert len(cometapi_emulator.billed) == 60
