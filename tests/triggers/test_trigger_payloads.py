"""Trigger kwargs and events carry paths and figures, never image bytes, whatever the input form.

Each case runs the operator's real deferral preparation (checks, staging of in-memory inputs)
up to ``TaskDeferred``, then runs the trigger rebuilt from its serialised kwargs, as the
triggerer would, against the emulator.
"""

from __future__ import annotations

import asyncio
import base64
import json
from operator import itemgetter
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_cometapi.operators.image_edit import (
    CometImageEditBatchOperator,
    CometImageEditOperator,
)
from airflow_provider_cometapi.samples import PAPER_BOAT, PAPER_BOAT_MASK
from airflow_provider_cometapi.storage.report import read_parts
from airflow_provider_cometapi.triggers.image_edit import CometImageEditTrigger
from tests.dagrun import report_lines

BOAT = PAPER_BOAT.read_bytes()
MASK = PAPER_BOAT_MASK.read_bytes()
B64 = base64.b64encode(BOAT).decode()
URL_SAFE_B64 = base64.urlsafe_b64encode(BOAT).decode()
MAX_PAYLOAD = 4096  # characters of JSON for one item
MAX_BATCH_PAYLOAD = 1024  # characters of JSON, whatever the number of items

FORMS = {
    "base64 text": {"image": B64},
    "data URI": {"image": f"data:image/png;base64,{B64}"},
    "b64_json dict": {"image": {"b64_json": B64, "filename": "boat.png"}},
    "bytes": {"image": BOAT},
    "(name, bytes) pair": {"image": ("boat.png", BOAT)},
    "bytes mask": {"image": str(PAPER_BOAT), "mask": MASK},
    "URL-safe base64": {"image": URL_SAFE_B64},
    "unpadded base64": {"image": B64.rstrip("=")},
    "URL-safe unpadded, line-wrapped": {
        "image": "\n".join(URL_SAFE_B64.rstrip("=")[i : i + 76] for i in range(0, len(B64), 76))
    },
}


SPELLINGS = [
    encode(data).decode()
    for data in (BOAT, MASK)
    for encode in (base64.b64encode, base64.urlsafe_b64encode)
]
IMAGE_CHUNKS = {text[i : i + 32] for text in SPELLINGS for i in range(0, len(text) - 32, 32)}
"""32-character runs of each base64 spelling of the image and the mask: any piece of 64
characters or more of one of them holds a run."""


def assert_small_and_imageless(payload: object, limit: int = MAX_PAYLOAD) -> str:
    """``payload`` as JSON (so no bytes), under ``limit`` characters, with no base64 of an input."""
    text = json.dumps(payload)
    assert len(text) < limit, text[:300]
    assert [chunk for chunk in IMAGE_CHUNKS if chunk in text] == []
    return text


def deferral(operator) -> CometImageEditTrigger:
    """Run ``execute`` up to the deferral and return the trigger it hands over."""
    ti = SimpleNamespace(dag_id="payloads", run_id="run", task_id=operator.task_id, map_index=-1)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": ti})
    trigger = deferred.value.trigger
    assert isinstance(trigger, CometImageEditTrigger)
    return trigger


def fire(classpath: str, kwargs: dict) -> dict:
    """Rebuild the trigger from its serialised kwargs, as the triggerer does, and run it."""
    assert classpath == f"{CometImageEditTrigger.__module__}.CometImageEditTrigger"

    async def run() -> list:
        return [event async for event in CometImageEditTrigger(**kwargs).run()]

    (event,) = asyncio.run(run())
    return event.payload


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_trigger_kwargs_and_event_hold_no_image_bytes(
    cometapi_conn, cometapi_emulator, tmp_path, form
):
    operator = CometImageEditOperator(
        task_id="edit",
        prompt="Add a ribbon",
        output_path=f"{tmp_path}/out/",
        deferrable=True,
        **form,
    )
    classpath, kwargs = deferral(operator).serialize()
    assert_small_and_imageless(kwargs)
    (line,) = report_lines(kwargs["plan"])  # the in-memory input travels as a staged path
    plan = line["plan"]
    locations = [source["location"] for source in [*plan["sources"], plan["mask"]] if source]
    assert [location.endswith(".staged") for location in locations].count(True) == 1

    event = fire(classpath, json.loads(json.dumps(kwargs)))

    assert_small_and_imageless(event)
    (item,) = event["lines"]
    assert item["error"] is None
    assert len(item["outputs"]) == 1
    (sent,) = cometapi_emulator.requests
    sizes = [len(BOAT), len(MASK)] if "mask" in form else [len(BOAT)]
    assert [part["size"] for part in sent["files"]] == sizes


def test_a_batch_of_every_form_and_a_long_unreadable_input_defers_small(
    cometapi_conn, cometapi_emulator, tmp_path
):
    unreadable = "!" + base64.b64encode(bytes(range(256)) * 80).decode()  # 27 KB, not base64
    sources = [unreadable, *(form["image"] for form in FORMS.values())]
    operator = CometImageEditBatchOperator(
        task_id="batch",
        prompt="Add a ribbon",
        sources=sources,
        mask=MASK,
        output_path=f"{tmp_path}/out/",
        on_item_failure="continue",
        max_concurrency=4,
        deferrable=True,
    )
    classpath, kwargs = deferral(operator).serialize()
    text = assert_small_and_imageless(kwargs, MAX_BATCH_PAYLOAD)  # whatever the count
    assert unreadable[:120] not in text

    event = fire(classpath, json.loads(json.dumps(kwargs)))

    assert_small_and_imageless(event, MAX_BATCH_PAYLOAD)
    assert event["lines"] == []  # each item's line went to the report's parts
    first, *others = sorted(read_parts(kwargs["report"], None, 1), key=itemgetter("position"))
    assert first["error"]["type"] == "CometAPISourceError"
    assert first["source"] == f"{unreadable[:79]}…{unreadable[-40:]}"  # 120 characters
    assert len(first["error"]["message"]) < 400
    assert [item["error"] for item in others] == [None] * len(FORMS)
    assert len(cometapi_emulator.billed) == len(FORMS)
