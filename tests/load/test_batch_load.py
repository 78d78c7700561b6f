"""1,000 edits through the batch operator under injected 429s and 5xx; a killed run, resumed."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from airflow_provider_cometapi.emulator import EmulatorServer
from tests.dagrun import files_in
from tests.imaging import image_bytes
from tests.load.batch_job import LOGICAL_DATE

EDITS = 1000
JOB = Path(__file__).with_name("batch_job.py")


def open_fds() -> int:
    """Open fds, less those only garbage holds: each ``dag.test()`` task run leaves Airflow's
    in-process supervisor, with its epoll selector, in a reference cycle until collected."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def sockets_to(port: int) -> int:
    """This process's TCP sockets connected to ``port`` on loopback."""
    owned = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            owned.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in owned:
                    count += 1
    return count


def fd_targets() -> list[str]:
    """What this process's open fds point at (for a failure message)."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return sorted(targets)


def settle(baseline: int, timeout: float = 10.0) -> int:
    """The open-fd count once it is back to ``baseline`` (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while open_fds() > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    return open_fds()


@pytest.fixture
def report(capsys):
    """Show a README-ready table row on the terminal, past pytest's output capture."""

    def show(what: str, measured: str) -> None:
        with capsys.disabled():
            print(f"\n| {what} | {measured} | |")

    return show


@pytest.fixture
def inbox(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    for i in range(EDITS):
        (folder / f"img{i:04d}.png").write_bytes(image_bytes((16, 16), color=(i % 256, 80, 160)))
    return folder


@pytest.fixture
def flaky_gateway(run_dag, monkeypatch):
    """An emulator answering 10 % of edits with 429 (Retry-After: 1) and 5 % with 500, and
    honouring Idempotency-Key; ``cometapi_default`` points at it (set after ``run_dag``'s)."""
    with EmulatorServer(
        random_faults={"429": 0.10, "500": 0.05}, seed=11, honour_idempotency=True
    ) as server:
        conn = server.connection_json("load-key-123", max_retries=6, allow_private_urls=True)
        monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", conn)
        yield server


def batch_body(inbox: Path, output: Path) -> str:
    return (
        "from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator\n"
        f'CometImageEditBatchOperator(task_id="batch", prompt="Add a ribbon", sources="{inbox}/", '
        f'output_path="{output}/", max_concurrency=32, on_item_failure="continue")'
    )


def test_1000_edits_with_429s_and_5xx_pay_once_each(
    run_dag, inbox, tmp_path, flaky_gateway, report
):
    warm_up = tmp_path / "warm-up"
    warm_up.mkdir()
    (warm_up / "one.png").write_bytes(image_bytes((16, 16)))
    assert run_dag(batch_body(warm_up, tmp_path / "warm-out")).state == "success"
    port = int(flaky_gateway.url.rsplit(":", 1)[1])
    baseline, before = open_fds(), fd_targets()
    started = time.monotonic()
    outcome = run_dag(batch_body(inbox, tmp_path / "out"))
    seconds = time.monotonic() - started

    assert outcome.state == "success"
    outputs = outcome.outputs("batch")
    assert len(outputs) == len(set(outputs)) == EDITS
    assert len(files_in(tmp_path / "out")) == EDITS
    billed = flaky_gateway.billed
    assert len(billed) == EDITS + 1  # and the warm-up's one
    requests = flaky_gateway.requests
    statuses = [r["status"] for r in requests]
    assert statuses.count(429) > 50
    assert statuses.count(500) > 20
    # The gateway honours Idempotency-Key, so billing alone cannot catch an edit POSTed again
    # after its answer: the gateway would replay it unbilled. None may be replayed, and each
    # edit's key has exactly one successful answer.
    assert [r["request_id"] for r in requests if r.get("replayed")] == []
    answered = Counter(r["idempotency_key"] for r in requests if r["status"] == 200)
    assert len(answered) == EDITS + 1
    assert set(answered.values()) == {1}
    usage = outcome.xcom("batch", "usage")
    assert usage["total_tokens"] == sum(b["usage"]["total_tokens"] for b in billed[1:])
    assert usage["images"] == EDITS
    assert sockets_to(port) == 0  # every HTTP connection closed
    assert settle(baseline) <= baseline, Counter(fd_targets()) - Counter(before)
    report(
        "load: 1,000 batch edits, 10 % 429 + 5 % 500 injected, `max_concurrency=32` (test suite)",
        f"{seconds:.1f} s; {statuses.count(429)} 429s and {statuses.count(500)} 500s retried; "
        f"every output once, exactly {EDITS:,} billed, 0 replayed; no socket or fd left open",
    )


def test_a_killed_run_resumes_without_paying_twice(run_dag, inbox, tmp_path, flaky_gateway, report):
    output = tmp_path / "out"
    env = {k: v for k, v in os.environ.items()}
    env["AIRFLOW_HOME"] = str(tmp_path / "killed-home")
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(tmp_path / "killed-home" / "dags")
    env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
        [
            {
                "name": "load",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": env["AIRFLOW__CORE__DAGS_FOLDER"]},
            }
        ]
    )
    job = subprocess.Popen(
        [sys.executable, str(JOB), f"{inbox}/", f"{output}/"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    parts = output / ".cometapi-reports"
    while time.monotonic() < deadline and job.poll() is None:
        if output.exists() and len(files_in(output)) >= 300 and any(parts.rglob("try-1-*")):
            break
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL, "the job finished before it could be killed"

    manifests = output / ".cometapi-manifests"
    written = [json.loads(p.read_text()) for p in manifests.glob("*.json")]
    recorded = [  # a manifest goes first: the kill may have come before its outputs' move
        m for m in written if all(Path(u.removeprefix("file://")).exists() for u in m["outputs"])
    ]
    kept = {uri: Path(uri.removeprefix("file://")).stat() for m in recorded for uri in m["outputs"]}
    done_before = len(files_in(output))
    assert 300 <= done_before < EDITS
    billed_before = len(flaky_gateway.billed)
    # the killed try left its report in parts, each whole JSONL, each line an item it finished
    partial = [
        json.loads(line) for p in parts.rglob("try-1-*") for line in p.read_text().splitlines()
    ]
    assert 0 < len(partial) <= done_before
    assert all(line["error"] is None and line["outputs"] for line in partial)

    # the retry: the same DAG run and task instance as the killed job's, so the same keys
    outcome = run_dag(
        batch_body(inbox, output), dag_id="cometapi_load_batch", logical_date=LOGICAL_DATE
    )

    assert outcome.state == "success"
    assert len(files_in(output)) == EDITS
    items = outcome.report("batch")
    assert [item["position"] for item in items] == list(range(EDITS))
    assert [p.name for p in parts.rglob("*") if p.is_file()] == ["batch.jsonl"]  # parts gone
    assert sum(item["reused"] for item in items) == len(recorded)
    assert all(item["paid"] for item in items)  # this task instance paid for all, once
    usage = outcome.xcom("batch", "usage")
    assert usage["total_tokens"] == sum(b["usage"]["total_tokens"] for b in flaky_gateway.billed)
    for uri, before in kept.items():  # nothing finished before the kill was written again
        after = Path(uri.removeprefix("file://")).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert len(flaky_gateway.billed) == EDITS  # every successful edit paid exactly once
    replays = [r for r in flaky_gateway.requests if r.get("replayed")]
    report(
        f"load: the {EDITS:,}-edit batch SIGKILLed mid-run, then retried",
        f"killed after {done_before:,} outputs ({billed_before:,} edits billed); the retry "
        f"reused {len(recorded):,} from manifests, replayed {len(replays)} lost answers "
        f"unbilled and paid for the {EDITS - billed_before:,} left: {EDITS:,} billed in all",
    )
