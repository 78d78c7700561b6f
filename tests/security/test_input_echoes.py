"""No input string is ever echoed whole: labels, errors, logs and XComs show at most an excerpt."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest

from airflow_provider_cometapi.exceptions import CometAPISourceError, CometAPIValidationError
from airflow_provider_cometapi.samples import PAPER_BOAT
from airflow_provider_cometapi.storage.sources import classify, classify_all, label_of

LONG = "!" + base64.b64encode(bytes(range(256)) * 80).decode()  # 27 KB: no path, no base64
LONG_PATH = f"/data/{'a' * 300}.png"


def shown(text: str) -> str:
    """How a long input appears: its first 79 and last 40 characters around an ellipsis."""
    return f"{text[:79]}…{text[-40:]}"


@pytest.mark.parametrize("source", [LONG, LONG_PATH], ids=["unreadable text", "missing path"])
def test_a_source_error_names_an_excerpt_of_the_input(source):
    with pytest.raises(CometAPISourceError) as raised:
        classify(source, "image", None).read("image")

    message = str(raised.value)  # names the resolved location, e.g. file:///data/aaa…aaa.png
    assert source[-40:] in message
    assert source[:200] not in message
    assert source[-200:] not in message
    assert len(message) < 400


def test_a_label_is_an_excerpt_even_for_a_list():
    assert classify(LONG, "image", None).label == shown(LONG)
    assert classify(str(PAPER_BOAT), "image", None).label == str(PAPER_BOAT)
    labels = label_of(classify_all([LONG_PATH] * 16, "image", None))
    assert len(labels) == 120
    assert labels.startswith(shown(LONG_PATH)[:79])


def test_a_long_unreadable_batch_source_is_echoed_only_as_an_excerpt(
    run_dag, tmp_path, cometapi_emulator, capfd
):
    outcome = run_dag(
        "from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator\n"
        f'CometImageEditBatchOperator(task_id="batch", prompt="x", sources=[{LONG!r}, '
        f'{str(PAPER_BOAT)!r}], output_path="{tmp_path}/out/", on_item_failure="continue")'
    )

    logs = "".join(capfd.readouterr())
    assert outcome.states() == {("batch", -1): "failed"}
    bad, good = outcome.report("batch")
    assert bad["source"] == shown(LONG)
    assert bad["error"]["type"] == "CometAPISourceError"
    assert len(json.dumps(bad)) < 1024
    assert good["error"] is None
    assert len(cometapi_emulator.billed) == 1
    assert "CometAPIBatchError" in logs
    assert shown(LONG) in logs  # the excerpt is what the item failure logged
    assert LONG[:200] not in logs
    assert LONG[-200:] not in logs


def test_a_long_file_name_is_echoed_only_as_an_excerpt(cometapi_conn, cometapi_emulator):
    from airflow_provider_cometapi.exceptions import CometAPIValidationError
    from airflow_provider_cometapi.hooks.cometapi import CometApiHook

    name = "boat-" + "x" * 5000 + ".png"
    with pytest.raises(CometAPIValidationError) as raised:
        CometApiHook().edit_image((name, b"not an image at all"), "x")

    assert name[-40:] in str(raised.value)
    assert name[:200] not in str(raised.value)
    assert len(str(raised.value)) < 400
    assert cometapi_emulator.requests == []


BOAT = PAPER_BOAT.read_bytes()
BOAT_HASH = "sha256:" + hashlib.sha256(BOAT).hexdigest()[:16]
BOAT_BASE64 = base64.b64encode(BOAT).decode()
IN_MEMORY = {
    "bytes": BOAT,
    "named bytes": ("boat.png", BOAT),
    "base64": BOAT_BASE64,
    "data URI": f"data:image/png;base64,{BOAT_BASE64}",
    "b64_json dict": {"b64_json": BOAT_BASE64},
}
NEVER_SHOWN = ("BytesIO", "object at 0x", "<str input>", "<bytes input>", BOAT_BASE64[:40])


def assert_nothing_echoed(text: str) -> None:
    for shown_wrongly in NEVER_SHOWN:
        assert shown_wrongly not in text, text


@pytest.mark.parametrize("value", IN_MEMORY.values(), ids=IN_MEMORY.keys())
def test_an_in_memory_input_is_labelled_by_its_place_and_content_hash(value):
    source = classify(value, "image", None)
    assert source.label == f"image ({BOAT_HASH})"
    assert source.identity == BOAT_HASH  # what staging and item ids rely on: unchanged
    listed = classify_all([str(PAPER_BOAT), value, value], "sources", None)
    assert [s.label for s in listed] == [
        str(PAPER_BOAT),
        f"sources[1] ({BOAT_HASH})",
        f"sources[2] ({BOAT_HASH})",
    ]
    assert classify(value, "image", None, place="sources[3]").label == f"sources[3] ({BOAT_HASH})"
    assert_nothing_echoed(label_of(listed))


def test_a_file_object_is_labelled_by_its_place_and_refused_without_its_repr():
    listed = classify_all([str(PAPER_BOAT), io.BytesIO(BOAT)], "sources", None)
    assert [s.label for s in listed] == [str(PAPER_BOAT), "sources[1]"]
    with pytest.raises(CometAPIValidationError) as raised:
        listed[1].read("sources[1]")

    message = str(raised.value)
    assert message.startswith("sources[1] is an open file object; pass its bytes (.read()")
    assert raised.value.param == "sources[1]"
    assert_nothing_echoed(message + label_of(listed))


@pytest.mark.parametrize(
    "value",
    [str(io.BytesIO(BOAT)), f"[{io.BytesIO(BOAT)}, {io.BytesIO(BOAT)}]"],
    ids=["one", "a list"],
)
def test_an_object_rendered_to_text_is_refused_without_its_repr(value):
    (source,) = classify_all(value, "image", None)  # a list of reprs is no literal: one text
    assert source.label == "image"
    with pytest.raises(CometAPIValidationError, match=r"^image is a Python object rendered to"):
        source.read("image")
    assert_nothing_echoed(str(source.error))


def test_an_unusable_in_memory_input_is_labelled_by_its_place():
    listed = classify_all([BOAT, "data:image/png;base64,@@@@"], "image", None)
    assert [s.label for s in listed] == [f"image[0] ({BOAT_HASH})", "image[1]"]
    with pytest.raises(CometAPIValidationError, match=r"^image\[1\] is not valid base64"):
        listed[1].read("image[1]")
