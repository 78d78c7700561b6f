"""The provider's two transports driven alike: the worker's hook and the triggerer's client."""

from __future__ import annotations

import asyncio

from airflow_provider_cometapi.api.request import EditParams, edit_request
from airflow_provider_cometapi.hooks.cometapi import CometApiHook
from airflow_provider_cometapi.hooks.cometapi_async import AsyncCometApiClient
from tests.imaging import image_bytes


def small_request():
    """A checked edit of a 64x48 PNG with ``gpt-image-2``."""
    return edit_request(
        image_bytes((64, 48)), EditParams(prompt="Add a ribbon", model="gpt-image-2")
    )


def run_sync(request, sink, key: str):
    """One ``run_edit`` call of the worker's hook on ``cometapi_default``."""
    with CometApiHook() as hook:
        return hook.run_edit(request, sink, idempotency_key=key)


def run_async(request, sink, key: str):
    """One ``run_edit`` call of the triggerer's client on ``cometapi_default``."""

    async def main():
        client = AsyncCometApiClient(CometApiHook().settings)
        try:
            return await client.run_edit(request, sink, idempotency_key=key)
        finally:
            await client.aclose()

    return asyncio.run(main())


TRANSPORTS = {"sync": run_sync, "async": run_async}
