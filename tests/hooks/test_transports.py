"""The same cases through the sync hook (requests) and the async client (httpx) end the same way."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import pytest

import airflow_provider_cometapi
from airflow_provider_cometapi.api.request import EditParams, edit_request
from airflow_provider_cometapi.api.sinks import MemorySink
from airflow_provider_cometapi.api.wire import PRODUCT
from airflow_provider_cometapi.exceptions import CometAPIError
from airflow_provider_cometapi.hooks.cometapi import CometApiHook
from airflow_provider_cometapi.hooks.cometapi_async import AsyncCometApiClient
from tests.imaging import image_bytes, mask_bytes

CASES = {
    "two outputs": (None, {"n": 2}),
    "mask and jpeg": (None, {"mask": mask_bytes(), "output_format": "jpeg"}),
    "url outputs": (None, {"response_format": "url", "n": 2}),
    "429 then success": ("status=429;retry_after=0;times=1", {}),
    "503 twice then success": ("status=503;times=2", {}),
    "500 until the retries run out": ("status=500", {}),
    "400 once": ("status=400", {}),
    "x-should-retry false": ("status=503;should_retry=false", {}),
    "Retry-After over the limit": ("status=429;retry_after=300", {}),
    "malformed JSON": ("malformed_json", {}),
    "HTML error page": ("html;status=502", {}),
    "truncated body": ("truncate", {}),
    "hang": ("hang", {}),
}


def summary(run):
    """What a caller can observe: outputs and usage, or the error's class, status and message."""
    sink = MemorySink()
    try:
        outcome = run(sink)
    except CometAPIError as exc:
        return ("error", type(exc).__name__, exc.status, exc.message)
    images = [
        (i.mime_type, i.size, hashlib.sha256(sink.data(i.slot)).hexdigest(), bool(i.url))
        for i in outcome.images
    ]
    return ("ok", outcome.retries, images, outcome.usage)


@pytest.mark.parametrize(("fault", "options"), CASES.values(), ids=CASES.keys())
def test_sync_and_async_transports_agree(
    cometapi_conn, cometapi_emulator, no_sleeping, fault, options
):
    cometapi_conn(timeout=0.5)
    cometapi_emulator.set_fault(fault)
    fields = {key: value for key, value in options.items() if key != "mask"}
    params = EditParams(prompt="Add a ribbon", model="gpt-image-2", **fields)
    request = edit_request(image_bytes((64, 48)), params, mask=options.get("mask"))

    with CometApiHook() as hook:
        sync = summary(lambda sink: hook.run_edit(request, sink, idempotency_key="sync"))
        sync_requests = len(cometapi_emulator.requests)

        async def run_async(sink):
            client = AsyncCometApiClient(hook.settings)
            try:
                return await client.run_edit(request, sink, idempotency_key="async")
            finally:
                await client.aclose()

        asynchronous = summary(lambda sink: asyncio.run(run_async(sink)))

    assert asynchronous == sync
    assert len(cometapi_emulator.requests) == 2 * sync_requests


async def run_async(settings, request, **options):
    """``run_edit`` through a fresh async client, closed afterwards."""
    client = AsyncCometApiClient(settings)
    try:
        return await client.run_edit(request, MemorySink(), **options)
    finally:
        await client.aclose()


def test_both_transports_log_the_same_attempt_lines_naming_the_item(
    cometapi_conn, cometapi_emulator, no_sleeping, capfd, caplog
):
    cometapi_emulator.set_fault("status=429;retry_after=0;times=1")  # once per Idempotency-Key
    caplog.set_level(logging.DEBUG, logger="airflow_provider_cometapi")
    request = edit_request(image_bytes(), EditParams(prompt="Add a ribbon", model="gpt-image-2"))
    expected = [
        "CometAPI POST /v1/images/edits for b3.png: attempt 1 of 3",
        "CometAPI POST /v1/images/edits for b3.png: HTTP 429; retrying in 0.00 s",
        "CometAPI POST /v1/images/edits for b3.png: attempt 2 of 3",
    ]

    with CometApiHook() as hook:
        hook.run_edit(request, MemorySink(), label="b3.png")
        asyncio.run(run_async(hook.settings, request, label="b3.png"))

    printed = capfd.readouterr().out  # the hook logs through Airflow's structlog, at INFO
    retry = expected[1]  # attempts are at DEBUG: a batch sends thousands
    sync_lines = [line for line in printed.splitlines() if "CometApiHook" in line]
    assert [retry in line for line in sync_lines if "CometAPI POST" in line] == [True], printed
    async_lines = [r.getMessage() for r in caplog.records if r.name.endswith("cometapi_async")]
    assert async_lines == expected


def test_each_transport_names_itself_after_the_product_and_makes_a_key(
    cometapi_conn, cometapi_emulator
):
    request = edit_request(image_bytes(), EditParams(prompt="Add a ribbon", model="gpt-image-2"))

    with CometApiHook() as hook:
        hook.run_edit(request, MemorySink())
        asyncio.run(run_async(hook.settings, request))

    sync, asynchronous = cometapi_emulator.requests
    agents = [r["headers"]["user-agent"] for r in (sync, asynchronous)]
    assert agents == [f"{PRODUCT} requests", f"{PRODUCT} httpx"]
    assert (
        agents[0].split()[0] == f"airflow-provider-cometapi/{airflow_provider_cometapi.__version__}"
    )
    keys = [r["idempotency_key"] for r in (sync, asynchronous)]
    assert keys[0] != keys[1]
    assert all(key.startswith("airflow-cometapi-") for key in keys)
