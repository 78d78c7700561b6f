"""A masked edit whose output cannot be decoded for the mask check: it was paid for, so it is
kept (under ``rejected/``, or returned as it came by the hook), never lost, and a later try does
not pay for it again. Served by the raw-socket server: the emulator only answers real images."""

from __future__ import annotations

import logging

from airflow_provider_cometapi.api.request import EditParams
from airflow_provider_cometapi.hooks.cometapi import CometApiHook
from airflow_provider_cometapi.pipeline.item import ItemJob
from airflow_provider_cometapi.pipeline.plans import ItemPlan
from airflow_provider_cometapi.pipeline.progress import BatchLog
from airflow_provider_cometapi.pipeline.scope import TaskScope
from airflow_provider_cometapi.samples import PAPER_BOAT, PAPER_BOAT_MASK
from airflow_provider_cometapi.storage.sources import StoredSource
from tests.dagrun import files_in
from tests.faults.rawserver import CLOSE, http_response
from tests.faults.test_no_loss import edit_body

CORRUPT_PNG = b"\x89PNG\r\n\x1a\n" + b"not an image at all" * 8
"""Passes the type sniff of the answer, fails the decode of the mask check."""


def job(out, try_number: int) -> ItemJob:
    plan = ItemPlan(
        [StoredSource(str(PAPER_BOAT))],
        StoredSource(str(PAPER_BOAT_MASK)),
        f"{out}/",
        None,
        -1,
        "boat",
    )
    scope = TaskScope("dag", "run", "edit", -1, try_number)
    params = EditParams(prompt="x", model="gpt-image-2", preserve_unmasked=True)
    return ItemJob(0, plan, params, scope, BatchLog(logging.getLogger("test"), 1))


def test_an_undecodable_masked_output_is_kept_under_rejected_and_not_paid_again(
    serve_raw, tmp_path
):
    server = serve_raw([http_response(edit_body(CORRUPT_PNG)), edit_body(CORRUPT_PNG), CLOSE])
    out = tmp_path / "out"
    first = job(out, 1)
    assert first.prepare() is None

    with CometApiHook() as hook:
        result = first.finish(first.send(hook.run_edit))

    assert result.error is not None
    assert result.error["type"] == "CometAPIBadResponseError"
    assert "could not be decoded for the mask check" in result.error["message"]
    assert result.paid
    assert files_in(out) == ["rejected"]
    (edit,) = files_in(out / "rejected")
    (kept,) = files_in(out / "rejected" / edit)
    assert (out / "rejected" / edit / kept).read_bytes() == CORRUPT_PNG
    assert kept in result.error["message"]

    again = job(out, 2).prepare()  # the next try: settled from the kept verdict

    assert again is not None
    assert again.error == {**result.error}
    assert again.reused
    assert again.paid  # this task instance's earlier try paid for it
    assert len(server.requests) == 1


def test_the_hook_returns_an_undecodable_masked_output_as_it_came(serve_raw):
    serve_raw([http_response(edit_body(CORRUPT_PNG)), edit_body(CORRUPT_PNG), CLOSE])

    with CometApiHook() as hook:
        result = hook.edit_image(
            str(PAPER_BOAT), "x", mask=str(PAPER_BOAT_MASK), preserve_unmasked=True
        )

    (image,) = result.images
    assert (image.data, image.check, image.drift) == (CORRUPT_PNG, None, None)
