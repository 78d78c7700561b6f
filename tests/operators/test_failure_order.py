"""Which items a failing batch sends: the worker and the triggerer obey one rule, by position.

Each case is a batch of 8 sources whose item 3 fails, under ``on_item_failure="fail"``: its
checks fail (a small broken file, or a large one that is slow to read), or the server refuses it
with a 400. The same batch runs on the worker and through the trigger (``run()`` driven in this
process, as ``dag.test()`` does), 20 times each with a busy process beside them, and the emulator
must receive the same requests every time.
"""

from __future__ import annotations

import asyncio
import functools
import os
import struct
import subprocess
import sys
import zlib
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_cometapi.exceptions import CometAPIBatchError
from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator
from airflow_provider_cometapi.triggers.image_edit import CometImageEditTrigger
from tests.dagrun import report_lines
from tests.imaging import image_bytes, png_chunk

REPEATS = 20
NAMES = [f"b{i}.png" for i in range(8)]
BROKEN = b"\x89PNG\r\n\x1a\n broken"


def large_broken_png() -> bytes:
    """A 24 MiB PNG whose last data chunk fails its CRC: found only after reading it all."""
    header = struct.pack(">IIBBBBB", 2048, 2048, 8, 2, 0, 0, 0)
    payload = os.urandom(24 << 20)
    bad_crc = struct.pack(">I", (zlib.crc32(b"IDAT" + payload) + 1) & 0xFFFFFFFF)
    data_chunk = struct.pack(">I", len(payload)) + b"IDAT" + payload + bad_crc
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + data_chunk + png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def inbox_files():
    """The good image, and the two bad files item 3 can be."""
    return {"good": image_bytes((64, 48)), "small": BROKEN, "large": large_broken_png()}


@pytest.fixture
def cpu_load():
    """A busy process on one of the cores for the length of the test."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        busy.kill()
        busy.wait()


def sent(emulator) -> list[str]:
    """The file names of the edit requests the emulator received, sorted."""
    return sorted(r["files"][0]["filename"] for r in emulator.requests if r["files"])


class Recorder(SimpleNamespace):
    """A task instance stand-in that keeps what the operator pushes to XCom."""

    def xcom_push(self, key, value):
        self.pushed[key] = value


def run_batch(folder, output, limit, *, deferrable):
    """The batch's report after running it on the worker, or through the trigger."""
    operator = CometImageEditBatchOperator(
        task_id="batch",
        prompt="Add a ribbon",
        sources=f"{folder}/",
        output_path=f"{output}/",
        max_concurrency=limit,
        deferrable=deferrable,
    )
    ti = Recorder(dag_id="order", run_id="run", task_id="batch", map_index=-1, pushed={})
    context = {"ti": ti}
    finish = functools.partial(operator.execute, context)
    if deferrable:
        with pytest.raises(TaskDeferred) as deferred:
            operator.execute(context)
        _, kwargs = deferred.value.trigger.serialize()
        event = asyncio.run(first_event(CometImageEditTrigger(**kwargs)))
        finish = functools.partial(operator.execute_complete, context, event)
    with pytest.raises(CometAPIBatchError):
        finish()
    return report_lines(ti.pushed["report"])


async def first_event(trigger: CometImageEditTrigger) -> dict:
    (event,) = [event async for event in trigger.run()]
    return event.payload


def outcomes(items) -> list[str]:
    """Per item: ``edited``, ``not started`` or the class of its error."""
    return [
        "edited"
        if item["error"] is None
        else "not started"
        if item["error"]["type"] == "CometAPIBatchError"
        else item["error"]["type"]
        for item in items
    ]


def assert_every_run(emulator, folder, tmp_path, limit, expected_sent, expected) -> None:
    """Run the batch ``REPEATS`` times on the worker and through the trigger, each into a fresh
    folder; every run must send ``expected_sent`` and end with ``expected``."""
    for attempt in range(REPEATS):
        for deferrable in (False, True):
            emulator.reset()
            output = tmp_path / f"out-{attempt}-{deferrable}"
            items = run_batch(folder, output, limit, deferrable=deferrable)

            run = {"attempt": attempt, "deferrable": deferrable}
            errors = [item["error"] for item in items]  # shown when it fails: why, not only what
            assert (run, sent(emulator), outcomes(items)) == (run, expected_sent, expected), errors


CHECK_FAILED = ["edited"] * 3 + ["CometAPIValidationError"] + ["not started"] * 4


@pytest.mark.parametrize("limit", [1, 2, 8])
@pytest.mark.parametrize(
    "bad",
    [{"b3.png": "small"}, {"b3.png": "large"}, {"b3.png": "small", "b5.png": "small"}],
    ids=["small", "large", "two-small"],
)
def test_a_check_failure_sends_every_item_before_it_and_none_after(
    cometapi_conn, cometapi_emulator, inbox_files, cpu_load, tmp_path, bad, limit
):
    """A second bad item after the first is not started either, whichever is read first."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    for name in NAMES:
        (folder / name).write_bytes(inbox_files[bad.get(name, "good")])

    assert_every_run(cometapi_emulator, folder, tmp_path, limit, NAMES[:3], CHECK_FAILED)


@pytest.mark.parametrize(
    ("limit", "fault", "expected_sent", "expected"),
    [
        pytest.param(
            1,
            "status=400",
            NAMES[:4],
            ["edited"] * 3 + ["CometAPIBadRequestError"] + ["not started"] * 4,
            id="1-in-flight",
        ),
        # With room for more requests, the others keep going while the refusal is on its
        # way: the refusal is held until all 8 have arrived, so what was sent is fixed.
        pytest.param(
            2,
            "after_requests=8;status=400",
            NAMES,
            ["edited"] * 3 + ["CometAPIBadRequestError"] + ["edited"] * 4,
            id="2-in-flight",
        ),
        pytest.param(
            8,
            "after_requests=8;status=400",
            NAMES,
            ["edited"] * 3 + ["CometAPIBadRequestError"] + ["edited"] * 4,
            id="8-in-flight",
        ),
    ],
)
def test_a_refused_request_starts_no_item_after_its_answer(
    cometapi_conn,
    cometapi_emulator,
    inbox_files,
    cpu_load,
    tmp_path,
    limit,
    fault,
    expected_sent,
    expected,
):
    folder = tmp_path / "inbox"
    folder.mkdir()
    for name in NAMES:
        (folder / name).write_bytes(inbox_files["good"])
    cometapi_emulator.set_file_faults({"b3.png": fault})

    assert_every_run(cometapi_emulator, folder, tmp_path, limit, expected_sent, expected)
