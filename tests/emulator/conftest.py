"""Fixtures for the emulator tests: an authorised session, a multipart edit poster and a gate
that holds the emulator's latency pauses."""

from __future__ import annotations

import asyncio
import threading

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


class LatencyGate:
    """Stands in for ``asyncio`` in the emulator's app: each pause the app takes (its latency) is
    recorded and held until :meth:`release`, so a test sees an answer wait without timing it.

    Every other name is asyncio's own. Only for tests without ``after_requests``, whose polling
    pauses would be held too.
    """

    def __init__(self) -> None:
        self.pauses: list[float] = []  # the seconds of each pause begun, in order
        self._changed = threading.Condition()
        self._open = False
        self._held: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(asyncio, name)

    async def sleep(self, seconds: float) -> None:
        """Record the pause; wait until the gate is released (at once if it already is)."""
        released = asyncio.Event()
        with self._changed:
            self.pauses.append(seconds)
            self._changed.notify_all()
            if self._open:
                return
            self._held.append((asyncio.get_running_loop(), released))
        await released.wait()

    def wait_for_pauses(self, count: int, timeout: float = 30.0) -> list[float]:
        """``pauses`` once ``count`` have begun, or as they stand after ``timeout``."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.pauses) >= count, timeout)
            return list(self.pauses)

    def release(self) -> None:
        """End every pause held, and let later ones through at once."""
        with self._changed:
            self._open = True
            held, self._held = self._held, []
        for loop, released in held:
            loop.call_soon_threadsafe(released.set)


@pytest.fixture
def latency_gate(cometapi_emulator, monkeypatch):
    """Hold the emulator's latency pauses until ``release()`` (done at the latest on teardown)."""
    from airflow_provider_cometapi.emulator import app

    gate = LatencyGate()
    monkeypatch.setattr(app, "asyncio", gate)
    yield gate
    gate.release()
