"""Bad edit requests get the real service's 400 ``invalid_request_error``, naming the field."""

from __future__ import annotations

import pytest

from tests.emulator.helpers import assert_refused, png_part
from tests.imaging import image_bytes, mask_bytes

GOOD = image_bytes((64, 48))


def gif_bytes() -> bytes:
    return image_bytes((8, 8), fmt="GIF", mode="P", color=0)


FILE_CASES = {
    "no image": ([], "image", "missing_required_parameter"),
    "17 images": ([png_part(GOOD, field="image[]")] * 17, "image", "too_many_images"),
    "not an image": ([png_part(b"hello, not an image")], "image", "invalid_image_format"),
    "empty file": ([png_part(b"")], "image", "invalid_image_format"),
    "GIF sent as image/png": ([png_part(gif_bytes())], "image", "invalid_image_format"),
    "octet-stream content type": (
        [("image", ("image.png", GOOD, "application/octet-stream"))],
        "image",
        "invalid_image_format",
    ),
    "truncated PNG": ([png_part(GOOD[: len(GOOD) // 2])], "image", "invalid_image_format"),
    "mask without alpha": (
        [png_part(GOOD), png_part(image_bytes((64, 48)), "m.png", "mask")],
        "mask",
        "invalid_mask",
    ),
    "JPEG mask": (
        [png_part(GOOD), ("mask", ("m.jpg", image_bytes((64, 48), fmt="JPEG"), "image/jpeg"))],
        "mask",
        "invalid_mask",
    ),
    "mask of another size": (
        [png_part(GOOD), png_part(mask_bytes((32, 32)), "m.png", "mask")],
        "mask",
        "mask_size_mismatch",
    ),
}

FIELD_CASES = {
    "missing prompt": ({"prompt": None}, "prompt"),
    "blank prompt": ({"prompt": "  \n\t"}, "prompt"),
    "blank model": ({"model": " "}, "model"),
    "n=0": ({"n": "0"}, "n"),
    "n=11": ({"n": "11"}, "n"),
    "n not a number": ({"n": "two"}, "n"),
    "unknown quality": ({"quality": "ultra"}, "quality"),
    "unknown response_format": ({"response_format": "binary"}, "response_format"),
    "unknown output_format": ({"output_format": "gif"}, "output_format"),
    "malformed size": ({"size": "big"}, "size"),
    "size side under 16": ({"size": "8x8"}, "size"),
    "size side over 4096": ({"size": "5000x1024"}, "size"),
}


@pytest.mark.parametrize(("files", "param", "code"), FILE_CASES.values(), ids=FILE_CASES.keys())
def test_bad_file_is_refused_naming_the_field(post_edit, cometapi_emulator, files, param, code):
    assert_refused(post_edit(files=files), cometapi_emulator, param, code)


@pytest.mark.parametrize(("fields", "param"), FIELD_CASES.values(), ids=FIELD_CASES.keys())
def test_bad_field_is_refused_naming_it(post_edit, cometapi_emulator, fields, param):
    assert_refused(post_edit(**fields), cometapi_emulator, param)


def test_image_sent_as_a_text_field_is_refused(cometapi_emulator, session):
    response = session.post(
        f"{cometapi_emulator.url}/v1/images/edits",
        files={"image": (None, "not a file"), "prompt": (None, "x")},
        timeout=5,
    )

    assert_refused(response, cometapi_emulator, "image", "invalid_image_format")


def test_body_that_is_not_multipart_is_refused(cometapi_emulator, session):
    response = session.post(
        f"{cometapi_emulator.url}/v1/images/edits", json={"prompt": "x"}, timeout=5
    )

    assert_refused(response, cometapi_emulator, "image", "missing_required_parameter")


def test_broken_multipart_body_is_refused(cometapi_emulator, session):
    response = session.post(
        f"{cometapi_emulator.url}/v1/images/edits",
        data=b"--xyz\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n--xyz--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        timeout=5,
    )

    assert_refused(response, cometapi_emulator, None, "invalid_body")


@pytest.mark.parametrize("content_type", ["image/png", "image/jpeg", "image/webp"])
def test_each_supported_content_type_is_accepted(post_edit, content_type):
    fmt = content_type.split("/")[1].upper()
    files = [("image", ("source", image_bytes((32, 32), fmt=fmt), content_type))]

    assert post_edit(files=files).status_code == 200
