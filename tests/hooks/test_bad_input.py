"""Every bad argument or file is refused before a request: fast, typed, naming the field."""

from __future__ import annotations

import base64
import functools
import gc
import io
import os
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
import zlib

import pytest

from airflow_provider_cometapi.api.images import MAX_IMAGE_BYTES
from airflow_provider_cometapi.exceptions import CometAPISourceError, CometAPIValidationError
from airflow_provider_cometapi.hooks.cometapi import CometApiHook
from airflow_provider_cometapi.storage.sources import classify, expand_prefix
from tests.imaging import declared_size_png, image_bytes, mask_bytes, png_chunk

GOOD = image_bytes((64, 48))
TRUNCATED_PNG = GOOD[: len(GOOD) // 2]
MAX_CPU_SECONDS = 2.0
"""CPU time of the calling thread, which runs every check (unaffected by other processes)."""
MAX_PEAK_BYTES = 20 * 1024 * 1024


@functools.cache
def _bomb_text() -> bytes:
    """64 MB of zeros, zlib-compressed to about 62 KB."""
    return zlib.compress(b"\0" * 64_000_000, 9)


def text_bomb_png(kind: bytes) -> bytes:
    """GOOD with a zTXt or iTXt chunk before IDAT whose text inflates to 64 MB."""
    if kind == b"zTXt":  # keyword, NUL, compression method 0, data
        payload = b"Comment\0\0" + _bomb_text()
    else:  # keyword, NUL, compressed flag 1, method 0, empty language and translated keyword
        payload = b"Comment\0\1\0\0\0" + _bomb_text()
    idat = GOOD.index(b"IDAT") - 4
    return GOOD[:idat] + png_chunk(kind, payload) + GOOD[idat:]


def sparse_file(tmp_path, name, size):
    """A file of ``size`` bytes that takes no disk space and is never held in memory."""
    path = tmp_path / name
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def written(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def case(build, field, advice, error=CometAPIValidationError):
    """Arguments built from ``tmp_path``; the field, error type and advice the error must carry."""
    return build, field, advice, error


CASES = {
    # the prompt
    "empty prompt": case(lambda _: {"prompt": ""}, "prompt", "describe the edit"),
    "whitespace prompt": case(lambda _: {"prompt": "  \n\t"}, "prompt", "describe the edit"),
    # parameters
    "n=0": case(lambda _: {"n": 0}, "n", "from 1 to 10"),
    "n=11": case(lambda _: {"n": 11}, "n", "from 1 to 10"),
    "n not a number": case(lambda _: {"n": "two"}, "n", "from 1 to 10"),
    "unknown quality": case(lambda _: {"quality": "ultra"}, "quality", "use one of: high"),
    "unknown response_format": case(
        lambda _: {"response_format": "binary"},
        "response_format",
        "use one of: url, b64_json",
    ),
    "unknown output_format": case(
        lambda _: {"output_format": "gif"},
        "output_format",
        "use one of: png, jpeg, webp",
    ),
    "malformed size": case(lambda _: {"size": "big"}, "size", "use 'auto' or WIDTHxHEIGHT"),
    "empty model": case(lambda _: {"model": " "}, "model", "name a model"),
    "extra field overriding a parameter": case(
        lambda _: {"extra_fields": {"prompt": "x"}},
        "extra_fields",
        "pass it as the prompt argument",
    ),
    "extra field of a bad type": case(
        lambda _: {"extra_fields": {"user": ["a"]}},
        "extra_fields",
        "use a string or number",
    ),
    # how many images
    "17 images": case(lambda _: {"image": [GOOD] * 17}, "image", "send at most 16"),
    "no images": case(lambda _: {"image": []}, "image", "give at least one image"),
    "image of a wrong type": case(lambda _: {"image": 42}, "image", "expected bytes"),
    # image bytes
    "zero-byte image": case(lambda _: {"image": b""}, "image", "check that the file"),
    "zero-byte file": case(
        lambda tmp: {"image": written(tmp, "empty.png", b"")},
        "image",
        "check that the file",
    ),
    "text bytes": case(lambda _: {"image": b"hello, not an image"}, "image", "send a PNG, JPEG"),
    "non-image bytes named .png": case(
        lambda _: {"image": ("photo.png", b"GIF89a-not-really")},
        "image",
        "send a PNG, JPEG",
    ),
    "non-image file named .jpg": case(
        lambda tmp: {"image": written(tmp, "photo.jpg", b"<html>not a photo</html>")},
        "image",
        "send a PNG, JPEG",
    ),
    "truncated PNG": case(lambda _: {"image": ("cut.png", TRUNCATED_PNG)}, "image", "send a PNG"),
    "image bytes over 50 MB": case(
        lambda _: {"image": bytes(MAX_IMAGE_BYTES + 1)},
        "image",
        "downscale or recompress",
    ),
    "file over 50 MB": case(
        lambda tmp: {"image": sparse_file(tmp, "huge.png", MAX_IMAGE_BYTES + 1)},
        "image",
        "downscale or recompress",
    ),
    "20000x20000 PNG": case(
        lambda _: {"image": declared_size_png(20_000, 20_000)},
        "image",
        "downscale it",
    ),
    "zTXt decompression bomb": case(
        lambda _: {"image": text_bomb_png(b"zTXt")},
        "image",
        "re-save it without metadata",
    ),
    "iTXt decompression bomb": case(
        lambda _: {"image": text_bomb_png(b"iTXt")},
        "image",
        "re-save it without metadata",
    ),
    "missing file": case(
        lambda tmp: {"image": tmp / "nowhere" / "boat.png"},
        "image",
        r"no file at '.*boat\.png'; check the path",
        CometAPISourceError,
    ),
    # the mask
    "mask without alpha": case(
        lambda _: {"mask": image_bytes((64, 48))},
        "mask",
        "save it as RGBA",
    ),
    "mask of another size": case(
        lambda _: {"mask": mask_bytes((32, 32))},
        "mask",
        "resize the mask to match",
    ),
    "JPEG mask": case(
        lambda _: {"mask": image_bytes((64, 48), fmt="JPEG")},
        "mask",
        "save the mask as a PNG",
    ),
    "WEBP mask": case(
        lambda _: {"mask": image_bytes((64, 48), fmt="WEBP", mode="RGBA")},
        "mask",
        "save the mask as a PNG",
    ),
    "zero-byte mask": case(lambda _: {"mask": b""}, "mask", "check that the file"),
    "mask file over 50 MB": case(
        lambda tmp: {"mask": sparse_file(tmp, "mask.png", MAX_IMAGE_BYTES + 1)},
        "mask",
        "downscale or recompress",
    ),
    "zTXt bomb as the mask": case(
        lambda _: {"mask": text_bomb_png(b"zTXt")},
        "mask",
        "re-save it without metadata",
    ),
}


@pytest.mark.parametrize(("build", "field", "advice", "error"), CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_fast_before_any_request(
    cometapi_conn, cometapi_emulator, tmp_path, build, field, advice, error
):
    kwargs = {"image": GOOD, "prompt": "Add a ribbon", **build(tmp_path)}
    with CometApiHook() as hook:
        hook.settings  # read the connection before measuring  # noqa: B018
        tracemalloc.start()
        gc.disable()  # a collection of Airflow's heap is not the check's own work
        started = time.thread_time()
        try:
            with pytest.raises(CometAPIValidationError) as info:
                hook.edit_image(kwargs.pop("image"), kwargs.pop("prompt"), **kwargs)
            cpu_seconds = time.thread_time() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            gc.enable()
            tracemalloc.stop()

    assert type(info.value) is error
    assert info.value.param == field
    assert str(info.value).startswith(field.split("_")[0])
    assert re.search(advice, str(info.value)), str(info.value)
    assert cometapi_emulator.requests == []
    assert cpu_seconds < MAX_CPU_SECONDS, f"{cpu_seconds:.2f} s of CPU"
    assert peak < MAX_PEAK_BYTES, f"peak {peak / 1048576:.1f} MiB"


BAD_BASE64 = {
    "data URI with non-base64 payload": "data:image/png;base64,@@@@",
    "b64_json that is not base64": {"b64_json": "not base64!!"},
    "b64_json with a bad length": {"b64_json": "QUJD" * 8 + "Q"},
    "data URI without base64 data": "data:image/png,rawbytes",
}


@pytest.mark.parametrize("value", BAD_BASE64.values(), ids=BAD_BASE64.keys())
def test_bad_base64_source_is_a_validation_error_naming_the_field(value):
    with pytest.raises(CometAPIValidationError, match=r"^image .*(base64|data URI)") as info:
        classify(value, "image", None).read("image")
    assert type(info.value) is CometAPIValidationError
    assert info.value.param == "image"


def test_missing_path_that_reads_as_base64_is_reported_as_missing():
    missing = "/data/inbox/scan0001/boatWithoutExtensionABC"  # 44 characters
    assert base64.b64decode(missing, validate=True)  # the text is valid base64 too
    with pytest.raises(CometAPISourceError, match=r"^image: nothing found at .*check the path"):
        classify(missing, "image", None).read("image")
    assert classify(missing, "image", None).label == missing  # labels and errors agree: a path


def test_base64_of_a_jpeg_starting_with_a_slash_is_read_as_an_image():
    encoded = base64.b64encode(image_bytes((64, 48), fmt="JPEG")).decode()
    assert encoded.startswith("/9j/")
    assert classify(encoded, "image", None).read("image")[1][:3] == b"\xff\xd8\xff"


def test_mask_with_palette_transparency_is_accepted(cometapi_conn, cometapi_emulator):
    from PIL import Image

    palette_mask = Image.new("P", (64, 48), 0)
    buffer = io.BytesIO()
    palette_mask.save(buffer, format="PNG", transparency=0)
    result = CometApiHook().edit_image(GOOD, "x", mask=buffer.getvalue())
    assert len(result.images) == 1
    assert len(cometapi_emulator.requests) == 1


def test_mask_sized_like_a_jpeg_image_is_accepted(cometapi_conn, cometapi_emulator):
    result = CometApiHook().edit_image(
        image_bytes((64, 48), fmt="JPEG"), "x", mask=mask_bytes((64, 48))
    )
    assert len(result.images) == 1
    assert len(cometapi_emulator.requests) == 1


def inbox(tmp_path):
    """A folder of two images and a text file, and an empty folder beside it."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(GOOD)
    (folder / "readme.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    return folder


BAD_PREFIXES = {
    "folder without its slash": ("{tmp}/inbox", "is a folder; end it with '/' to edit every image"),
    "missing folder": ("{tmp}/nowhere/", "nowhere/: no such folder or bucket; check the prefix"),
    "glob in a missing folder": ("{tmp}/nowhere/*.png", "no such folder or bucket; check the"),
    "a file as a folder": ("{tmp}/inbox/a.png/", "a file, not a folder; name a folder, ending in"),
    "folder without images": ("{tmp}/empty/", "no images found under {tmp}/empty/; check the"),
    "unknown scheme": ("nosuchfs://bucket/inbox/", "(ValueError: Unsupported filesystem"),
}


@pytest.mark.parametrize(("location", "advice"), BAD_PREFIXES.values(), ids=BAD_PREFIXES.keys())
def test_a_bad_prefix_is_a_typed_error_naming_sources_and_the_location(tmp_path, location, advice):
    inbox(tmp_path)
    location, advice = (text.format(tmp=tmp_path) for text in (location, advice))
    with pytest.raises(CometAPISourceError) as raised:
        expand_prefix(location, None)

    message = str(raised.value)
    assert message.startswith("sources: ")
    assert location in message
    assert advice in message
    assert "batch operator" not in message
    assert raised.value.param == "sources"


def test_a_prefix_lists_its_images_and_a_lone_file_or_base64_stays_one_source(tmp_path):
    folder = inbox(tmp_path)
    images = [f"file://{folder}/a.png", f"file://{folder}/b.png"]
    assert expand_prefix(f"{folder}/", None) == images
    assert expand_prefix(f"{folder}/*.png", None) == images
    assert expand_prefix(f"{folder}/a.png", None) == [f"{folder}/a.png"]
    encoded = base64.b64encode(GOOD).decode()
    assert expand_prefix(encoded, None) == [encoded]


def test_the_single_image_hint_for_a_folder_stays(tmp_path):
    folder = inbox(tmp_path)
    with pytest.raises(CometAPISourceError, match=r"is a folder; name a file \(or use the batch"):
        classify(str(folder), "image", None).read("image")


def test_object_storage_prefixes_say_what_is_wrong(s3):
    s3.create_bucket(Bucket="cometapi-sources")
    s3.put_object(Bucket="cometapi-sources", Key="inbox/a.png", Body=GOOD)
    s3.put_object(Bucket="cometapi-sources", Key="one.png", Body=GOOD)
    bucket = "s3://cometapi-sources"

    with pytest.raises(CometAPISourceError) as raised:
        expand_prefix(f"{bucket}/inbox", "s3_test")  # no such key, objects under inbox/
    assert str(raised.value) == (
        f"sources: {bucket}/inbox is a folder; end it with '/' to edit every image in it."
    )
    for missing in (f"{bucket}/nowhere/", "s3://cometapi-no-such-bucket/inbox/"):
        with pytest.raises(
            CometAPISourceError, match=f"^sources: cannot list {missing}: no such folder or bucket;"
        ):
            expand_prefix(missing, "s3_test")
    assert expand_prefix(f"{bucket}/one.png", "s3_test") == [f"{bucket}/one.png"]
    assert expand_prefix(f"{bucket}/inbox/", "s3_test") == [
        f"s3://s3_test@{bucket[5:]}/inbox/a.png"
    ]


def without_root_override() -> list[str]:
    """A command prefix under which file permissions apply, to root too."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("root, and no setpriv to give up overriding file permissions")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


PERMISSION_PROBE = """
import sys
from airflow_provider_cometapi.exceptions import CometAPISourceError
from airflow_provider_cometapi.storage.sources import classify, expand_prefix

folder = sys.argv[1]
for attempt in (
    lambda: expand_prefix(folder + "/", None),
    lambda: classify(folder + "/a.png", "image", None).read("image"),
):
    try:
        attempt()
    except CometAPISourceError as exc:
        print(f"{exc.param}|{exc}")
"""


def test_storage_permission_errors_are_typed_errors_saying_what_to_do(tmp_path):
    folder = inbox(tmp_path)
    folder.chmod(0)
    try:
        done = subprocess.run(
            [*without_root_override(), sys.executable, "-c", PERMISSION_PROBE, str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        folder.chmod(0o755)

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        f"sources|sources: cannot list {folder}/: no permission; let the source connection (or "
        "the worker's user) list and read it.",
        f"image|image: no permission to read file://{folder}/a.png; let the source connection "
        "(or the worker's user) read it.",
    ]


def test_a_batch_given_a_folder_without_its_slash_is_told_to_add_it(
    run_dag, tmp_path, cometapi_emulator, capfd
):
    folder = inbox(tmp_path)
    outcome = run_dag(
        "from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator\n"
        f'CometImageEditBatchOperator(task_id="batch", prompt="x", sources={str(folder)!r}, '
        f'output_path="{tmp_path}/out/")'
    )

    logs = "".join(capfd.readouterr())
    assert outcome.states() == {("batch", -1): "failed"}
    assert f"sources: {folder} is a folder; end it with '/' to edit every image in it." in logs
    assert "CometAPISourceError" in logs
    assert "use the batch operator" not in logs  # the single-image operator's advice
    assert cometapi_emulator.requests == []
