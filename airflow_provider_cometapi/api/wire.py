"""What both transports share on the wire: read sizes, the User-Agent and keys."""

from __future__ import annotations

import uuid

from airflow_provider_cometapi import __version__

CHUNK_BYTES = 256 * 1024
"""How many bytes of a streamed body are read at a time."""
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
"""The largest output image downloaded from a URL."""
PRODUCT = f"airflow-provider-cometapi/{__version__}"
"""The first token of every User-Agent."""


def user_agent(transport: str) -> str:
    """``airflow-provider-cometapi/<version> <transport>``, the transport being the HTTP client.

    The worker's hook sends ``requests``, the triggerer's client ``httpx``, so a server's records
    tell the two apart.
    """
    return f"{PRODUCT} {transport}"


def new_idempotency_key() -> str:
    """A fresh ``Idempotency-Key`` for one logical call."""
    return f"airflow-cometapi-{uuid.uuid4().hex}"
