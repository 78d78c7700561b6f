"""Fixtures for the emulator tests: an authorised session, a multipart edit poster and a gate
that holds the emulator's latency pauses."""

from __future__ import annotations

import pytest
import requests

from tests.emulator.helpers import KEY, PROMPT, png_part


@pytest.fixture
def session():
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {KEY}"
        yield http


@pytest.fixture
def post_edit(cometapi_emulator, session):
    """POST /v1/images/edits: one 64x48 PNG and a prompt unless told otherwise.

    ``files`` replaces the file parts; a field given as ``None`` is left out.
    """

    def post(files=None, headers=None, timeout=10, **fields):
        data = {"prompt": PROMPT, **fields}
        data = {name: value for name, value in data.items() if value is not None}
        return session.post(
            f"{cometapi_emulator.url}/v1/images/edits",
            files=[png_part()] if files is None else files,
            data=data,
            headers=headers,
            timeout=timeout,
        )

    return post
