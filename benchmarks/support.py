"""Shared benchmark plumbing: an emulator in its own process, sample images, timing helpers."""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

API_KEY = "bench-key-0123456789"
ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")  # keep the figures readable
# Like a deployment, not a sandbox: the example plugins would cost the first storage write ~0.6 s.
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

_HOME = os.environ.get("COMETAPI_BENCH_AIRFLOW_HOME")
if _HOME is None:  # the first benchmark process; its children reuse the same home
    _HOME = os.environ["COMETAPI_BENCH_AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="cometapi-bench-")
    atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = _HOME  # never the project's .airflow: no DB, no config surprises


@contextmanager
def emulator_process(*args: str, latency: float = 0.0) -> Iterator[str]:
    """Run the emulator in a child process (its own core, its own GIL); yield its base URL.

    :param args: further emulator command-line arguments.
    :param latency: seconds the emulator adds to each edit.
    """
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_cometapi.emulator",
            "--port",
            "0",
            "--latency",
            str(latency),
            *args,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the emulator exited before it was listening")
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        process.terminate()
        process.wait(timeout=10)


def connection_json(url: str, **extra: object) -> str:
    """The ``cometapi`` connection for ``url`` as ``AIRFLOW_CONN_<ID>`` JSON."""
    return json.dumps({"conn_type": "cometapi", "host": url, "password": API_KEY, "extra": extra})


@contextmanager
def cometapi_connection(url: str, **extra: object) -> Iterator[None]:
    """Point ``cometapi_default`` at ``url`` for the duration."""
    os.environ["AIRFLOW_CONN_COMETAPI_DEFAULT"] = connection_json(url, **extra)
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


def noise_png(size: int) -> bytes:
    """A ``size`` x ``size`` RGB PNG of random pixels: it barely compresses, so it is large."""
    from PIL import Image

    image = Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
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


def memory_kib() -> dict[str, int]:
    """This process's ``VmRSS`` (now) and ``VmHWM`` (peak) in KiB, from ``/proc/self/status``."""
    figures = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                figures[name] = int(value.split()[0])
    return figures


def reset_peak_rss() -> None:
    """Make ``VmHWM`` start again from the current ``VmRSS`` (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def run_child(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter at the project root; return the JSON it prints last.

    :param code: Python source; ``sys.argv[1:]`` holds ``args``.
    :param env: extra environment variables.
    """
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({result.returncode}):\n{result.stderr}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures
