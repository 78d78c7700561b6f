"""Every bad argument or file is refused before a request, with a typed error naming the field."""

from __future__ import annotations

import pytest

from airflow_provider_cometapi.api.images import MAX_IMAGE_BYTES
from airflow_provider_cometapi.exceptions import CometAPISourceError, CometAPIValidationError
from airflow_provider_cometapi.hooks.cometapi import CometApiHook
from tests.imaging import declared_size_png, image_bytes, mask_bytes

GOOD = image_bytes((64, 48))
TRUNCATED_PNG = GOOD[: len(GOOD) // 2]

CASES = {
    "empty prompt": ({"prompt": ""}, "prompt"),
    "whitespace prompt": ({"prompt": "  \n\t"}, "prompt"),
    "prompt over 32000 chars": ({"prompt": "x" * 32_001}, "prompt"),
    "n=0": ({"n": 0}, "n"),
    "n=11": ({"n": 11}, "n"),
    "n not a number": ({"n": "two"}, "n"),
    "unknown quality": ({"quality": "ultra"}, "quality"),
    "unknown response_format": ({"response_format": "binary"}, "response_format"),
    "unknown output_format": ({"output_format": "gif"}, "output_format"),
    "malformed size": ({"size": "big"}, "size"),
    "empty model": ({"model": " "}, "model"),
    "extra field overriding a parameter": ({"extra_fields": {"prompt": "x"}}, "extra_fields"),
    "extra field of a bad type": ({"extra_fields": {"user": ["a"]}}, "extra_fields"),
    "zero-byte image": ({"image": b""}, "image"),
    "text bytes": ({"image": b"hello, not an image"}, "image"),
    "non-image bytes named .png": ({"image": ("photo.png", b"GIF89a-not-really")}, "image"),
    "truncated PNG": ({"image": ("cut.png", TRUNCATED_PNG)}, "image"),
    "image over 50 MB": ({"image": b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES)}, "image"),
    "20000x20000 PNG": ({"image": declared_size_png(20_000, 20_000)}, "image"),
    "17 images": ({"image": [GOOD] * 17}, "image"),
    "no images": ({"image": []}, "image"),
    "image of a wrong type": ({"image": 42}, "image"),
    "mask without alpha": ({"mask": image_bytes((64, 48))}, "mask"),
    "mask of another size": ({"mask": mask_bytes((32, 32))}, "mask"),
    "JPEG mask": ({"mask": image_bytes((64, 48), fmt="JPEG")}, "mask"),
    "zero-byte mask": ({"mask": b""}, "mask"),
}


@pytest.mark.parametrize(("overrides", "field"), CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_before_any_request(
    cometapi_conn, cometapi_emulator, overrides, field
):
    kwargs = {"image": GOOD, "prompt": "Add a ribbon", **overrides}
    with CometApiHook() as hook, pytest.raises(CometAPIValidationError) as info:
        hook.edit_image(kwargs.pop("image"), kwargs.pop("prompt"), **kwargs)

    assert info.value.param == field
    assert field.split("_")[0] in str(info.value)
    assert cometapi_emulator.requests == []


def test_missing_file_is_a_source_error_naming_it(cometapi_conn, cometapi_emulator, tmp_path):
    missing = tmp_path / "nowhere" / "boat.png"
    with pytest.raises(CometAPISourceError, match=r"boat\.png") as info:
        CometApiHook().edit_image(missing, "x")
    assert info.value.param == "image"
    assert cometapi_emulator.requests == []


def test_file_over_50_mb_is_refused_without_reading_it(cometapi_conn, cometapi_emulator, tmp_path):
    big = tmp_path / "huge.png"
    with big.open("wb") as handle:
        handle.truncate(MAX_IMAGE_BYTES + 1)
    with pytest.raises(CometAPIValidationError, match="50 MiB"):
        CometApiHook().edit_image(big, "x")
    assert cometapi_emulator.requests == []


def test_mask_with_palette_transparency_is_accepted(cometapi_conn, cometapi_emulator):
    import io

    from PIL import Image

    palette_mask = Image.new("P", (64, 48), 0)
    buffer = io.BytesIO()
    palette_mask.save(buffer, format="PNG", transparency=0)
    result = CometApiHook().edit_image(GOOD, "x", mask=buffer.getvalue())
    assert len(result.images) == 1
