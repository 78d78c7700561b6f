"""Each model family's rules are checked before sending, naming the model and the rule; a model
the table does not know gets only the shared checks, and its fields pass through unchanged."""

from __future__ import annotations

import functools
import io
import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from airflow_provider_cometapi.api.images import GENERAL_LIMITS, MIB, check_image, check_mask
from airflow_provider_cometapi.api.models import (
    GPT_IMAGE_1,
    GPT_IMAGE_2,
    MB,
    MODEL_RULES,
    SEEDEDIT,
    rules_for,
    rules_markdown,
    service_default_notes,
)
from airflow_provider_cometapi.api.request import EditParams, edit_request
from airflow_provider_cometapi.exceptions import CometAPIValidationError
from airflow_provider_cometapi.hooks.cometapi import CometApiHook
from tests.imaging import image_bytes, mask_bytes, png_chunk

README = Path(__file__).resolve().parents[2] / "README.md"
GPT2 = "gpt-image-2"
SEED = "bytedance-seedEdit-3.0-i2i"
UNKNOWN = "qwen-image-edit"
SEEDEDIT_MODELS = ("bytedance-seedEdit-3.0-i2i", "doubao-seededit-3-0-i2i-250628")
SEEDEDIT_MODELS += ("seedream-4-0-250828",)


def fields(model: str, **params) -> list[tuple[str, str]]:
    """The form fields ``EditParams`` sends for ``model`` (the prompt and model left out)."""
    return EditParams(**{"prompt": "Add a ribbon", "model": model, **params}).form_fields()[2:]


def refused(model: str, param: str, **params) -> str:
    """The message of the refusal of ``params`` for ``model``, which must name ``param``."""
    with pytest.raises(CometAPIValidationError) as raised:
        EditParams(**{"prompt": "Add a ribbon", "model": model, **params}).checked()
    assert raised.value.param == param
    return str(raised.value)


def noise(size: tuple[int, int], mode: str = "RGB", fmt: str = "PNG") -> bytes:
    """A real image of random pixels, which PNG cannot shrink: its size in bytes is its pixels'."""
    pixels = os.urandom(size[0] * size[1] * len(mode))
    buffer = io.BytesIO()
    Image.frombytes(mode, size, pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@functools.cache
def over_10_mb() -> bytes:
    data = noise((2000, 2000))
    assert 10 * MB < len(data) < 50 * MIB
    return data


def padded(png: bytes, total: int) -> bytes:
    """``png`` grown to exactly ``total`` bytes by a private ancillary chunk after IHDR, which
    readers skip: the same picture, as large a file as a test needs."""
    header_end = 8 + 12 + 13  # the signature, then IHDR's length, type, 13 bytes and CRC
    filler = total - len(png) - 12
    assert filler >= 0
    return png[:header_end] + png_chunk(b"prVt", b"\0" * filler) + png[header_end:]


# -- which rules a model gets


@pytest.mark.parametrize(
    ("model", "rules"),
    [
        (GPT2, GPT_IMAGE_2),
        ("gpt-image-1.5", GPT_IMAGE_1),
        ("gpt-image-1", GPT_IMAGE_1),
        *[(model, SEEDEDIT) for model in SEEDEDIT_MODELS],
    ],
)
def test_a_documented_model_gets_its_familys_rules(model, rules):
    assert rules_for(model) is rules


@pytest.mark.parametrize(
    "model",
    [
        *(UNKNOWN, "gpt-image-3", "gpt-image-2-mini", "gpt-image-1-mini", "gpt-image-20"),
        *("GPT-IMAGE-2", " gpt-image-2", "seedream-5-0-260101", "bytedance-seededit-3.0-i2i"),
    ],
)
def test_only_exact_documented_names_match(model):
    assert rules_for(model) is None


def test_every_model_is_in_one_family_only():
    names = [model for rules in MODEL_RULES for model in rules.models]
    assert len(names) == len(set(names)) == 6


# -- size


@pytest.mark.parametrize(
    "size", ["auto", "1024x1024", "3840x2160", "2160x3840", "16x16", "3072x1024", "1024x3072"]
)
def test_gpt_image_2_takes_auto_and_sizes_on_its_grid(size):
    assert fields(GPT2, size=size) == [("size", size)]


@pytest.mark.parametrize(
    ("size", "rule"),
    [
        ("10x10", "both sides must be multiples of 16"),
        ("1000x1000", "both sides must be multiples of 16"),
        ("3088x1024", "its ratio 3.02:1 is beyond 3:1"),
        ("1024x3088", "its ratio 3.02:1 is beyond 3:1"),
        ("3856x2160", "it does not fit in 3840x2160 either way"),
        ("2160x3856", "it does not fit in 3840x2160 either way"),
        ("2176x2176", "it does not fit in 3840x2160 either way"),
        ("big", "use 'auto' or WIDTHxHEIGHT with both sides multiples of 16"),
        ("adaptive", "use 'auto' or WIDTHxHEIGHT"),
        ("0x1024", "use 'auto' or WIDTHxHEIGHT"),
        ("1024X1024", "use 'auto' or WIDTHxHEIGHT"),
    ],
)
def test_gpt_image_2_refuses_sizes_off_its_grid_naming_model_and_rule(size, rule):
    message = refused(GPT2, "size", size=size)

    assert message.startswith(f"size is {size!r} for gpt-image-2: ")
    assert rule in message
    assert "use 'auto' or WIDTHxHEIGHT" in message


def test_gpt_image_2_size_10x10_is_refused_before_sending(cometapi_conn, cometapi_emulator):
    with pytest.raises(CometAPIValidationError, match=r"^size is '10x10' for gpt-image-2: both"):
        CometApiHook().edit_image(image_bytes(), "Add a ribbon", model=GPT2, size="10x10")
    assert cometapi_emulator.requests == []


@pytest.mark.parametrize("model", ["gpt-image-1.5", "gpt-image-1"])
def test_older_gpt_image_models_take_only_their_documented_sizes(model):
    for size in ("1024x1024", "1536x1024", "1024x1536", "auto"):
        assert fields(model, size=size) == [("size", size)]
    for size in ("512x512", "2048x2048", "1024x1024 ", "adaptive"):
        message = refused(model, "size", size=size)
        assert message == (
            f"size is {size!r} for {model}: use one of: "
            "'1024x1024', '1536x1024', '1024x1536', 'auto'."
        )


@pytest.mark.parametrize("model", SEEDEDIT_MODELS)
def test_seededit_takes_adaptive_and_leaves_other_sizes_to_the_server(model):
    assert fields(model, size="adaptive") == [("size", "adaptive")]
    assert fields(model, size="2048x2048") == [("size", "2048x2048")]
    assert f"size is 2048 for {model}: use 'adaptive'," in refused(model, "size", size=2048)


# -- a model the table does not know


@pytest.mark.parametrize("model", [UNKNOWN, "gpt-image-3"])
def test_an_unknown_model_passes_every_field_through_unchanged(model):
    sent = fields(
        model,
        n=12,
        quality="ultra",
        size="adaptive",
        extra_fields={
            "seed": 3.5,
            "guidance_scale": 99,
            "watermark": "yes",
            "background": "purple",
            "output_compression": 250,
            "flag": True,
        },
    )

    assert sent == [
        ("n", "12"),
        ("quality", "ultra"),
        ("size", "adaptive"),
        ("seed", "3.5"),
        ("guidance_scale", "99"),
        ("watermark", "yes"),
        ("background", "purple"),
        ("output_compression", "250"),
        ("flag", "true"),
    ]


def test_an_unknown_models_long_prompt_and_odd_size_are_sent():
    params = EditParams(prompt="x" * 40_000, model=UNKNOWN, size="10x10").checked()
    assert params.size == "10x10"
    assert edit_request(image_bytes(), params).fields[:1] == [("prompt", "x" * 40_000)]


@pytest.mark.parametrize(
    ("param", "params", "advice"),
    [
        ("size", {"size": 1024}, "size is 1024: use a non-blank string."),
        ("size", {"size": " "}, "size is ' ': use a non-blank string."),
        ("quality", {"quality": 3}, "quality is 3: use a non-blank string."),
        ("n", {"n": 0}, "n is 0: use a whole number, 1 or more."),
        ("n", {"n": "two"}, "n is 'two': use a whole number, 1 or more."),
        ("n", {"n": True}, "n is True: use a whole number, 1 or more."),
        ("output_format", {"output_format": "gif"}, "use one of: png, jpeg, webp."),
        ("response_format", {"response_format": "binary"}, "use one of: url, b64_json."),
        ("extra_fields", {"extra_fields": {"seed": [1]}}, "use a string or number."),
        (
            "extra_fields",
            {"extra_fields": {"size": "1x1"}},
            "pass it as the size argument instead.",
        ),
    ],
)
def test_an_unknown_model_still_gets_the_shared_checks(param, params, advice):
    message = refused(UNKNOWN, param, **params)

    assert message.startswith(param)
    assert message.endswith(advice)
    assert UNKNOWN not in message  # a shared rule is no model's own


def test_every_model_needs_a_prompt():
    for model in (GPT2, SEED, UNKNOWN):
        assert refused(model, "prompt", prompt=None).startswith("prompt is empty")


# -- GPT image fields


@pytest.mark.parametrize(
    ("field", "good", "bad", "allowed"),
    [
        ("n", [1, 10, "3"], [0, 11, "two", True, 2.5], "a whole number from 1 to 10"),
        (
            "quality",
            ["high", "medium", "low", "auto", "standard"],
            ["ultra", "HIGH", 1],
            "one of: high, medium, low, auto, standard",
        ),
    ],
)
@pytest.mark.parametrize("model", [GPT2, "gpt-image-1.5", "gpt-image-1"])
def test_gpt_image_parameters(model, field, good, bad, allowed):
    for value in good:
        assert fields(model, **{field: value}) == [(field, str(value))]
    for value in bad:
        message = refused(model, field, **{field: value})
        assert message == f"{field} is {value!r} for {model}: use {allowed}."


@pytest.mark.parametrize(
    ("field", "good", "bad", "allowed"),
    [
        ("background", ["transparent", "opaque", "auto"], ["white"], "one of: transparent, opaque"),
        ("input_fidelity", ["high", "low"], ["medium"], "one of: high, low"),
        ("output_compression", [0, 100, "85"], [-1, 101, "50.5"], "a whole number from 0 to 100"),
        ("user", ["user-1"], ["", 42], "a non-blank string"),
    ],
)
def test_gpt_image_extra_fields(field, good, bad, allowed):
    for value in good:
        assert fields(GPT2, extra_fields={field: value}) == [(field, str(value))]
    for value in bad:
        message = refused(GPT2, field, extra_fields={field: value})
        assert message.startswith(f"extra_fields[{field!r}] is {value!r} for gpt-image-2: use ")
        assert allowed in message


@pytest.mark.parametrize("model", [GPT2, "gpt-image-1", SEED, UNKNOWN])
def test_a_long_prompt_goes_to_the_server_as_it_is(model):
    """No model page documents a prompt length limit: only a blank prompt is refused."""
    prompt = "x" * 100_000
    assert EditParams(prompt=prompt, model=model).checked().prompt == prompt
    assert EditParams(prompt=prompt, model=model).form_fields()[0] == ("prompt", prompt)
    assert refused(model, "prompt", prompt=" \n").startswith("prompt is empty: ")


def test_seededit_fields_sent_to_a_gpt_model_pass_through():
    extra = {"seed": 3.5, "guidance_scale": 99, "watermark": "yes"}
    assert fields(GPT2, extra_fields=extra) == [(k, str(v)) for k, v in extra.items()]


# -- SeedEdit fields


@pytest.mark.parametrize(
    ("field", "good", "bad", "allowed"),
    [
        (
            "seed",
            [(-1, "-1"), (0, "0"), (2_147_483_647, "2147483647"), ("42", "42")],
            [-2, 2_147_483_648, 3.5, True, "x"],
            "a whole number from -1 to 2147483647",
        ),
        (
            "guidance_scale",
            [(1, "1"), (10.0, "10.0"), (5.5, "5.5"), ("7.5", "7.5")],
            [0.99, 10.01, "nan", "inf", True, "high"],
            "a number from 1.0 to 10.0",
        ),
        (
            "watermark",
            [(False, "false"), (True, "true"), ("false", "false"), ("TRUE", "true")],
            ["yes", 1, 0],
            "True or False",
        ),
    ],
)
@pytest.mark.parametrize("model", SEEDEDIT_MODELS)
def test_seededit_fields(model, field, good, bad, allowed):
    for value, sent in good:
        assert fields(model, extra_fields={field: value}) == [(field, sent)]
    for value in bad:
        message = refused(model, field, extra_fields={field: value})
        assert message == f"extra_fields[{field!r}] is {value!r} for {model}: use {allowed}."


# -- images


def sent(model: str, image, mask=None) -> str:
    """The MIME type ``image`` is sent as to ``model``."""
    params = EditParams(prompt="Add a ribbon", model=model)
    return edit_request(image, params, mask=mask).images[0].mime_type


def image_refused(model: str, image, mask=None, param: str = "image") -> str:
    params = EditParams(prompt="Add a ribbon", model=model)
    with pytest.raises(CometAPIValidationError) as raised:
        edit_request(image, params, mask=mask)
    assert raised.value.param == param
    return str(raised.value)


def test_seededit_sends_png_and_jpeg_as_they_are_and_converts_webp_to_png():
    assert sent(SEED, image_bytes(fmt="PNG")) == "image/png"
    assert sent(SEED, image_bytes(fmt="JPEG")) == "image/jpeg"
    assert sent(SEED, image_bytes(fmt="WEBP")) == "image/png"
    assert sent(GPT2, image_bytes(fmt="WEBP")) == "image/webp"
    assert sent(UNKNOWN, image_bytes(fmt="WEBP")) == "image/webp"


def test_seededit_refuses_an_image_over_10_mb_that_others_take():
    message = image_refused(SEED, ("noise.png", over_10_mb()))

    assert re.fullmatch(
        rf"image: image 'noise.png' is 1\d,\d{{3}},\d{{3}} bytes, over the 10 MB limit "
        rf"\(10,000,000 bytes\) for {SEED}: "
        "downscale or recompress it.",
        message,
    )
    assert sent(GPT2, over_10_mb()) == sent(UNKNOWN, over_10_mb()) == "image/png"


def test_seededit_images_stop_at_10_decimal_megabytes():
    """The page's "at most 10 MB" in decimal megabytes: 10,000,000 bytes are taken, one more is
    refused (not 10 MiB, 10,485,760)."""
    assert SEEDEDIT.images.max_bytes == 10_000_000
    assert sent(SEED, padded(image_bytes(), 10_000_000)) == "image/png"

    message = image_refused(SEED, ("big.png", padded(image_bytes(), 10_000_001)))
    assert message == (
        "image: image 'big.png' is 10,000,001 bytes, over the 10 MB limit (10,000,000 bytes) "
        f"for {SEED}: downscale or recompress it."
    )


def test_seededit_judges_a_converted_image_by_the_bytes_it_would_send():
    webp = noise((2400, 2400), fmt="WEBP")  # lossy WEBP, well under 10 MB; lossless PNG over it
    assert len(webp) < 10 * MB

    message = image_refused(SEED, ("noise.webp", webp))
    assert "'noise.webp' (converted to PNG) is " in message
    assert message.endswith(
        f"over the 10 MB limit (10,000,000 bytes) for {SEED}: downscale or recompress it."
    )


@pytest.mark.parametrize("size", [(63, 21), (21, 63), (15, 15), (15, 45)])
def test_seededit_takes_ratios_to_3_and_sides_of_15_px(size):
    assert sent(SEED, image_bytes(size)) == "image/png"


@pytest.mark.parametrize(
    ("size", "rule"),
    [
        ((64, 21), "64x21, a ratio of 3.05:1: the ratio must be within 3:1 either way"),
        ((21, 64), "21x64, a ratio of 3.05:1: the ratio must be within 3:1 either way"),
        ((14, 40), "14x40: each side must be at least 15 px"),
        ((40, 14), "40x14: each side must be at least 15 px"),
    ],
)
def test_seededit_refuses_images_of_other_shapes_which_others_take(size, rule):
    message = image_refused(SEED, image_bytes(size, fmt="JPEG"))

    assert message.startswith(f"image is {rule} for {SEED}; ")
    assert sent(GPT2, image_bytes(size)) == sent(UNKNOWN, image_bytes(size)) == "image/png"


def test_seededit_takes_a_mask_with_the_shared_checks():
    edit = edit_request(image_bytes(), EditParams(prompt="x", model=SEED), mask=mask_bytes())
    assert edit.mask is not None
    message = image_refused(SEED, image_bytes(), mask=mask_bytes((32, 32)), param="mask")
    assert "resize the mask to match" in message


@pytest.mark.parametrize("model", [GPT2, "gpt-image-1.5", "gpt-image-1"])
def test_gpt_image_masks_must_be_under_4_decimal_megabytes(model):
    """The page's "under 4 MB" in decimal megabytes: 3,999,999 bytes are taken, 4,000,000
    refused (not 4 MiB, 4,194,304); a model the table does not know takes it."""
    params = EditParams(prompt="x", model=model)
    assert edit_request(image_bytes(), params, mask=padded(mask_bytes(), 3_999_999)).mask

    at_4_mb = padded(mask_bytes(), 4_000_000)
    message = image_refused(model, image_bytes(), mask=("mask.png", at_4_mb), param="mask")
    assert message == (
        "mask: mask 'mask.png' is 4,000,000 bytes; it must be under 4 MB (4,000,000 bytes) "
        f"for {model}: downscale or recompress it."
    )
    edit = edit_request(image_bytes(), EditParams(prompt="x", model=UNKNOWN), mask=at_4_mb)
    assert edit.mask is not None


def test_a_model_that_takes_no_mask_is_told_so():
    first = check_image("a.png", image_bytes(), "image")
    no_mask = replace(GENERAL_LIMITS, takes_mask=False)
    with pytest.raises(CometAPIValidationError, match=r"^mask: some-model takes no mask; leave"):
        check_mask("m.png", mask_bytes(), first, no_mask, "some-model")


def test_too_many_images_names_the_model_whose_limit_it_is():
    assert image_refused(SEED, [image_bytes()] * 17).endswith(f"at most 16 in one edit for {SEED}.")
    assert image_refused(UNKNOWN, [image_bytes()] * 17).endswith("at most 16 in one edit.")


# -- what the operators call before paying, and what travels to the triggerer


def test_checked_params_are_json_friendly_and_keep_seededit_fields():
    params = EditParams(
        prompt="x", model=SEED, n="2", size="adaptive", extra_fields={"seed": 7, "watermark": False}
    ).checked()

    assert params.n == 2
    assert EditParams(**json.loads(json.dumps(params.to_dict()))) == params


def usage_keys(usage: dict, prefix: str = "") -> set[str]:
    """Every key of ``usage``, nested ones as ``outer.inner``."""
    keys = set()
    for key, value in usage.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= usage_keys(value, f"{prefix}{key}.")
    return keys


@pytest.mark.parametrize(
    ("model", "params"),
    [
        (GPT2, {"size": "1024x1536", "quality": "low"}),
        (SEED, {"size": "adaptive", "extra_fields": {"seed": 7, "guidance_scale": 5.5}}),
    ],
)
def test_the_emulator_takes_what_the_rules_let_through_and_answers_as_the_table_says(
    cometapi_conn, cometapi_emulator, model, params
):
    result = CometApiHook().edit_image(image_bytes(), "Add a ribbon", model=model, **params)

    rules = rules_for(model)
    assert [image.url is not None for image in result.images] == [rules.answer == "url"]
    assert usage_keys(result.usage) >= set(rules.usage_keys)
    [request] = cometapi_emulator.requests
    assert request["status"] == 200
    assert request["fields"] == dict(fields(model, **params), prompt="Add a ribbon", model=model)


# -- surprising service defaults


def test_seededit_without_watermark_gets_one_note_naming_the_model():
    for extra in (None, {}, {"seed": 1}, {"watermark": None}):
        notes = service_default_notes(EditParams(prompt="x", model=SEED, extra_fields=extra))
        assert notes == [
            f"{SEED}: the service adds a watermark unless watermark=False is set in extra_fields."
        ]


def test_no_note_when_the_user_set_the_field_or_the_model_has_no_such_default():
    for extra in ({"watermark": False}, {"watermark": True}, {"watermark": "false"}):
        assert service_default_notes(EditParams(prompt="x", model=SEED, extra_fields=extra)) == []
    for model in (GPT2, "gpt-image-1", UNKNOWN):
        assert service_default_notes(EditParams(prompt="x", model=model)) == []


# -- the README's table


def test_the_readmes_models_table_is_the_rules_table():
    section = README.read_text().split("\n## Models\n", 1)[1].split("\n## ", 1)[0]
    table = "".join(line + "\n" for line in section.splitlines() if line.startswith("|"))

    assert table == rules_markdown()


def test_the_rules_table_has_a_row_per_family_and_one_for_every_model():
    rows = rules_markdown().splitlines()[2:]

    assert len(rows) == len(MODEL_RULES) + 1
    for rules, row in zip(MODEL_RULES, rows[:-1], strict=True):
        assert all(f"`{model}`" in row for model in rules.models)
    assert rows[-1].startswith("| Every model (the only checks for a model not listed) |")
