"""Faults on the wire end in a typed error or a success: never a partial output, a hang or a leak.

Real sockets throughout: the emulator for the faults it knows, a raw-socket server
(``tests/faults/rawserver.py``) for what an HTTP framework cannot send (an RST mid-body, a lying
``Content-Length``, bad base64 in the middle of an image, headers then silence), a real disk,
fsspec's ``memory://`` and a moto S3 server. Only the retry sleeps are patched.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import io
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil
import pytest

from airflow_provider_cometapi.api.sinks import MemorySink
from airflow_provider_cometapi.exceptions import (
    CometAPIBadRequestError,
    CometAPIBadResponseError,
    CometAPIError,
    CometAPIServerError,
    CometAPITimeoutError,
)
from airflow_provider_cometapi.hooks.cometapi import CometApiHook
from airflow_provider_cometapi.hooks.cometapi_async import AsyncCometApiClient
from airflow_provider_cometapi.storage.outputs import StagedOutputs
from tests.faults.rawserver import (
    CLOSE,
    DRAIN,
    HUNG_UP,
    RESET,
    STALL,
    STOPPED,
    http_response,
)
from tests.faults.transports import TRANSPORTS, run_async, run_sync, small_request

if TYPE_CHECKING:
    from collections.abc import Callable

MiB = 1 << 20
S3_PART = 50 * MiB
"""s3fs's default block size: a staged S3 file becomes a multipart upload past this many bytes."""


# --- payloads ----------------------------------------------------------------------------------


def noisy_png(side: int) -> bytes:
    """An incompressible PNG of about ``3 * side**2`` bytes."""
    from PIL import Image

    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def edit_body(*images: bytes) -> bytes:
    """A 200 edit answer holding ``images`` as ``b64_json``."""
    data = [{"b64_json": base64.b64encode(image).decode("ascii")} for image in images]
    return json.dumps({"created": 1700000000, "usage": {"total_tokens": 1}, "data": data}).encode()


def value_start(body: bytes, index: int) -> int:
    """Where the base64 of ``data[index].b64_json`` starts in ``body``."""
    start = -1
    for _ in range(index + 1):
        start = body.index(b'"b64_json": "', start + 1)
    return start + len(b'"b64_json": "')


@pytest.fixture(scope="module")
def two_mb_png() -> bytes:
    return noisy_png(820)


# --- fixtures and helpers ----------------------------------------------------------------------


def files_under(folder: str) -> list[str]:
    """Every file below a local folder, hidden ones included, relative and sorted."""
    found = []
    for root, _, names in os.walk(folder):
        found += [os.path.relpath(os.path.join(root, name), folder) for name in names]
    return sorted(found)


def open_files_under(folder: str) -> list[str]:
    """This process's file descriptors open on anything below ``folder`` (deleted or not)."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the descriptor listdir itself used, already closed
            continue
    return [t for t in targets if t.startswith(folder)]


def final_statuses(emulator) -> list[int | None]:
    """The status of each request once every one is answered (the emulator notices a client
    hanging up on its own time), or as they stand after 5 s."""
    deadline = time.monotonic() + 5.0
    statuses = [r["status"] for r in emulator.requests]
    while None in statuses and time.monotonic() < deadline:
        time.sleep(0.05)
        statuses = [r["status"] for r in emulator.requests]
    return statuses


# --- 1 and 2: every fault, both transports, a real staged sink ---------------------------------


@dataclass(frozen=True)
class Fault:
    """How a fault is produced and how it must end."""

    error: type[CometAPIError] | None  # None: the call succeeds
    attempts: int
    emulator: str | None = None
    script: Callable[[bytes], list[bytes | str]] | None = None
    opens_writer: bool = False
    outwaited: bool = False  # the server still held its answer back when the client hung up


def reset_mid_body(png: bytes) -> list[bytes | str]:
    body = edit_body(png)
    half = len(body) // 2
    return [http_response(body), body[:half], DRAIN, RESET]


def short_body(png: bytes) -> list[bytes | str]:
    body = edit_body(png[:4096])
    return [http_response(body, content_length=len(body) + 1000), body, CLOSE]


def bad_base64_mid_value(png: bytes) -> list[bytes | str]:
    body = edit_body(png)
    cut = value_start(body, 0) + 1024 * 1024  # a multiple of 4: whole base64 blocks before it
    broken = body[:cut] + b"!!!!" + body[cut:]
    return [http_response(broken), broken, CLOSE]


def headers_then_stall(png: bytes) -> list[bytes | str]:
    return [http_response(edit_body(png)), STALL]


FAULTS = {
    "truncated body": Fault(CometAPIBadResponseError, 1, emulator="truncate"),
    "reset mid-body": Fault(CometAPIBadResponseError, 1, script=reset_mid_body, opens_writer=True),
    "Content-Length longer than the body": Fault(CometAPIBadResponseError, 1, script=short_body),
    "stalled before the headers": Fault(CometAPITimeoutError, 1, emulator="hang", outwaited=True),
    "headers then a stall": Fault(
        CometAPITimeoutError, 1, script=headers_then_stall, outwaited=True
    ),
    "invalid JSON": Fault(CometAPIBadResponseError, 1, emulator="malformed_json"),
    "bad base64 mid-value": Fault(
        CometAPIBadResponseError, 1, script=bad_base64_mid_value, opens_writer=True
    ),
    "HTML error page": Fault(CometAPIServerError, 2, emulator="html;status=502"),
    "413": Fault(CometAPIBadRequestError, 1, emulator="status=413"),
    "503 once, then success": Fault(None, 2, emulator="status=503;times=1"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_fault_ends_typed_and_leaves_no_file(
    cometapi_conn, cometapi_emulator, serve_raw, no_sleeping, two_mb_png, tmp_path, transport, fault
):
    out = f"{tmp_path}/out/"
    if fault.script is not None:
        server = serve_raw(fault.script(two_mb_png))
        attempts = lambda: len(server.requests)  # noqa: E731
    else:
        cometapi_conn(timeout=0.5, max_retries=1)
        cometapi_emulator.set_fault(fault.emulator)
        attempts = lambda: len(cometapi_emulator.requests)  # noqa: E731
    sink = StagedOutputs(out, stem="boat", map_index=-1, conn_id=None)

    reported = 0
    try:
        outcome = TRANSPORTS[transport](small_request(), sink, f"key-{transport}")
        reported = outcome.usage["total_tokens"]
    except CometAPIError as exc:
        error: CometAPIError | None = exc
    else:
        error = None

    assert attempts() == fault.attempts
    if fault.script is None:  # the accounting identity: what the client reports is the bill
        assert reported == sum(b["usage"]["total_tokens"] for b in cometapi_emulator.billed)
    if fault.outwaited and fault.script is not None:  # the client's timeout, not the stall's end
        assert server.stall_endings(1) == [HUNG_UP]
    elif fault.outwaited:  # 499: the client left; a hang that ran out would answer 504
        assert final_statuses(cometapi_emulator) == [499]
    if fault.error is None:
        assert error is None
        assert sink.commit() == [f"file://{out}boat-0.png"]
        assert files_under(out) == ["boat-0.png"]
        return
    assert type(error) is fault.error, repr(error)
    staged = files_under(out)
    assert all(name.startswith(".boat-0.png.") for name in staged), staged
    assert len(staged) == int(fault.opens_writer)
    sink.discard()
    assert files_under(out) == []
    assert open_files_under(out) == []


def test_raw_server_stops_without_a_stray_thread_or_socket(serve_raw):
    import socket

    server = serve_raw([STALL], stall_seconds=30)
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert server.stalling.wait(10)  # the server is now stalling on this connection
        server.stop()
        assert server.stalls == [STOPPED]  # stop() ended the stall; its 30 s did not run out
        assert client.recv(10) == b""  # with a normal close
    assert not [t for t in threading.enumerate() if t.name.startswith("rawserver-")]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2)


# --- 3: no connection or descriptor outlives the client ----------------------------------------


def process_state(port: int) -> tuple[int, int, int]:
    """Open descriptors; this process's TCP sockets to ``port``; the emulator's open accepted ones.

    Only sockets the process holds a descriptor for are listed, so kernel TIME_WAIT entries
    (owned by no process) never count.
    """
    held = psutil.Process().net_connections(kind="tcp")
    to_port = sum(1 for c in held if c.raddr and c.raddr.port == port)
    accepted = sum(1 for c in held if c.laddr.port == port and c.status != psutil.CONN_LISTEN)
    return len(os.listdir("/proc/self/fd")), to_port, accepted


def settled(port: int, done: Callable[[tuple[int, int, int]], bool]) -> tuple[int, int, int]:
    """The state once ``done`` holds, or after 5 s; the emulator closes its ends asynchronously.

    Each look starts with a garbage collection: after a read timeout, urllib3 leaves one pooled
    connection in a reference cycle that only the collector closes, so without it the count
    depends on when the collector last ran.
    """
    deadline = time.monotonic() + 5.0
    gc.collect()
    state = process_state(port)
    while not done(state) and time.monotonic() < deadline:
        time.sleep(0.05)
        gc.collect()
        state = process_state(port)
    return state


LEAK_SERIES = {  # ends with a success, so each client holds a pooled connection until closed
    "status=503": CometAPIServerError,
    "hang": CometAPITimeoutError,
    "truncate": CometAPIBadResponseError,
    "status=429;retry_after=0;times=1": None,
}


@pytest.mark.timeout(30)
def test_retries_leave_no_connection_or_descriptor_open(
    cometapi_conn, cometapi_emulator, no_sleeping
):
    cometapi_conn(timeout=0.5, max_retries=2, retry_on_read_timeout=True)
    port = int(cometapi_emulator.url.rsplit(":", 1)[1].split("/")[0])
    request = small_request()
    # Warm up once through each transport: imports, logging, the lineage collector...
    run_sync(request, MemorySink(), "warm-sync")
    run_async(request, MemorySink(), "warm-async")
    baseline = settled(port, lambda state: state[1:] == (0, 0))
    assert baseline[1:] == (0, 0)

    outcomes = []
    with CometApiHook() as hook:
        for fault in LEAK_SERIES:
            cometapi_emulator.set_fault(fault)
            try:
                hook.run_edit(request, MemorySink(), idempotency_key=f"sync-{fault}")
                outcomes.append(None)
            except CometAPIError as exc:
                outcomes.append(type(exc))
        # kept alive in the pool until the hook closes; the others close as they fail
        assert settled(port, lambda state: state[1] == 1)[1] == 1

    async def series():
        client = AsyncCometApiClient(CometApiHook().settings)
        try:
            for fault in LEAK_SERIES:
                cometapi_emulator.set_fault(fault)
                try:
                    await client.run_edit(request, MemorySink(), idempotency_key=f"async-{fault}")
                    outcomes.append(None)
                except CometAPIError as exc:
                    outcomes.append(type(exc))
            # polled from a thread, so the loop can finish closing the failed connections
            state = await asyncio.to_thread(settled, port, lambda state: state[1] == 1)
            assert state[1] == 1
        finally:
            await client.aclose()

    asyncio.run(series())

    assert outcomes == [*LEAK_SERIES.values()] * 2
    # 503: 3 attempts; hang with retry_on_read_timeout: 3; truncate: 1; 429 then success: 2
    assert len(cometapi_emulator.requests) == 2 + 2 * (3 + 3 + 1 + 2)
    # Not one descriptor more than before (one fewer is fine: a session fixture may close one).
    after = settled(port, lambda state: state[0] <= baseline[0] and state[1:] == (0, 0))
    assert after[1:] == (0, 0)
    assert after[0] <= baseline[0]


# --- 4: a write cut off mid-object leaves nothing behind, on every store -----------------------


@pytest.fixture(scope="module")
def big_body() -> tuple[bytes, bytes, bytes]:
    """A 2 MB and a ~55 MiB output (past one S3 part), and the answer holding both."""
    small, large = noisy_png(820), noisy_png(4400)
    assert len(large) > S3_PART + 4 * MiB
    return small, large, edit_body(small, large)


class Store:
    """One place outputs can go, and what can be seen there."""

    def __init__(self, kind: str, tmp_path, s3) -> None:
        self.kind, self.s3 = kind, s3
        tag = uuid.uuid4().hex[:10]
        if kind == "local":
            self.folder = f"{tmp_path}/out/"
            self.root = self.folder
        elif kind == "memory":
            self.folder = f"/faults-{tag}/out/"
            self.root = f"memory://faults-{tag}/out/"
        else:
            self.bucket = f"cometapi-faults-{tag}"
            s3.create_bucket(Bucket=self.bucket)
            self.root = f"s3://s3_test@{self.bucket}/out/"

    def sink(self) -> StagedOutputs:
        return StagedOutputs(self.root, stem="boat", map_index=-1, conn_id=None)

    def listing(self) -> dict[str, int]:
        """Every object or file under the output folder, hidden ones included, with its size."""
        if self.kind == "local":
            return {name: os.path.getsize(self.folder + name) for name in files_under(self.folder)}
        if self.kind == "memory":
            from fsspec.implementations.memory import MemoryFileSystem

            found = MemoryFileSystem().find(self.folder, detail=True)
            return {path.rpartition("/")[2]: info["size"] for path, info in found.items()}
        listed = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {o["Key"].removeprefix("out/"): o["Size"] for o in listed}

    def uploads(self) -> list[str]:
        """Multipart uploads still pending (S3 only)."""
        if self.kind != "s3":
            return []
        return [
            u["Key"] for u in self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        ]

    def read(self, name: str) -> bytes:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(self.root + name).read_bytes()

    def clean(self) -> None:
        """Free what the test stored (the memory and S3 stores live for the whole session)."""
        if self.kind == "memory":
            from fsspec.implementations.memory import MemoryFileSystem

            fs = MemoryFileSystem()
            if fs.exists(self.folder):
                fs.rm(self.folder, recursive=True)
        elif self.kind == "s3":
            for name in self.listing():
                self.s3.delete_object(Bucket=self.bucket, Key=f"out/{name}")
            for upload in self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []):
                self.s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
            self.s3.delete_bucket(Bucket=self.bucket)


@pytest.fixture(params=["local", "memory", "s3"])
def store(request, tmp_path):
    s3 = request.getfixturevalue("s3") if request.param == "s3" else None
    place = Store(request.param, tmp_path, s3)
    yield place
    place.clean()


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_output_cut_off_mid_write_leaves_no_object_and_no_upload(
    store, big_body, serve_raw, no_sleeping, transport
):
    small, _, body = big_body
    # Cut 53 MiB into the second image: past one s3fs part, so S3 holds a multipart upload.
    cut = value_start(body, 1) + (53 * MiB) * 4 // 3
    server = serve_raw([http_response(body), memoryview(body)[:cut], DRAIN, RESET])
    sink = store.sink()

    with pytest.raises(CometAPIBadResponseError, match="cut off"):
        TRANSPORTS[transport](small_request(), sink, "cut")

    assert len(server.requests) == 1
    staged = store.listing()
    assert all(name.startswith(".boat-") and name.endswith(".partial") for name in staged)
    if store.kind == "s3":  # the first output is staged whole, the second is mid-upload
        assert list(staged.values()) == [len(small)]
        assert [key.removeprefix("out/.")[:10] for key in store.uploads()] == ["boat-1.png"]
    sink.discard()
    assert store.listing() == {}
    assert store.uploads() == []
    if store.kind == "local":
        assert open_files_under(store.folder) == []
    del sink
    gc.collect()  # a writer left half-open would fail now, in its __del__


@pytest.mark.timeout(60)
def test_complete_output_commits_one_object_per_output(store, big_body, serve_raw):
    small, large, body = big_body
    serve_raw([http_response(body), memoryview(body), CLOSE])
    sink = store.sink()

    outcome = run_sync(small_request(), sink, "whole")
    targets = sink.commit()

    assert [image.size for image in outcome.images] == [len(small), len(large)]
    assert [t.rpartition("/")[2] for t in targets] == ["boat-0.png", "boat-1.png"]
    assert store.listing() == {"boat-0.png": len(small), "boat-1.png": len(large)}
    assert store.uploads() == []
    digest = hashlib.sha256(store.read("boat-1.png")).hexdigest()
    assert digest == hashlib.sha256(large).hexdigest()
