"""Shared benchmark plumbing: an emulator in its own process, sample images, timing helpers."""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

API_KEY = "bench-key-0123456789"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")  # keep the figures readable


@contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """Run the emulator in a child process (its own core, its own GIL); yield its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_cometapi.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def cometapi_connection(url: str, **extra: object) -> Iterator[None]:
    """Point ``cometapi_default`` at ``url`` for the duration."""
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="cometapi-bench-"))
    conn = {"conn_type": "cometapi", "host": url, "password": API_KEY, "extra": extra}
    os.environ["AIRFLOW_CONN_COMETAPI_DEFAULT"] = json.dumps(conn)
    try:
        yield
    finally:
        del os.environ["AIRFLOW_CONN_COMETAPI_DEFAULT"]


def gradient_png(size: int = 1024) -> bytes:
    """A smooth ``size`` x ``size`` RGB PNG, like a photo's sky."""
    from PIL import Image

    image = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def median_seconds(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median wall time of each call, interleaved round by round so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():  # warm-up: connections, imports, caches
        call()
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}
