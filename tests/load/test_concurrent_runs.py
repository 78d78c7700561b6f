"""Two DAG runs of one batch into one folder at once pay once per item: claims between them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.dagrun import files_in, report_lines
from tests.imaging import image_bytes

JOB = Path(__file__).with_name("batch_job.py")
ITEMS = 40
FIRST_WAVE = 32
"""The job's ``max_concurrency``: the first run's requests in flight while the gate holds them."""


@pytest.fixture
def jobs():
    """The job processes a test starts, killed at its end if still running: a failed test
    leaves none sending edits into the next test's emulator."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for job in started:
        job.kill()
        job.wait()


def start_job(tmp_path: Path, name: str, inbox: Path, output: Path, run_date: str):
    home = tmp_path / name
    env = dict(os.environ)
    env["AIRFLOW_HOME"] = str(home)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(home / "dags")
    env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
        [
            {
                "name": "load",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": env["AIRFLOW__CORE__DAGS_FOLDER"]},
            }
        ]
    )
    log = tmp_path / f"{name}.log"
    with log.open("w") as out:
        job = subprocess.Popen(
            [sys.executable, str(JOB), f"{inbox}/", f"{output}/", run_date],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return job, log


def wait_for(condition, what: str, job: subprocess.Popen[bytes], log: Path) -> None:
    """Poll until ``condition()`` holds, failing with the job's log as soon as it has ended
    without it (the bound is against hanging, not a timing assertion)."""
    deadline = time.monotonic() + 480
    while not condition():
        assert job.poll() is None, (
            f"the job ended ({job.returncode}) before {what}:\n" + (log.read_text()[-3000:])
        )
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


@pytest.mark.timeout(900)
def test_two_runs_at_once_into_one_folder_pay_once_per_item(
    tmp_path, cometapi_conn, cometapi_emulator, latency_gate, jobs
):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(ITEMS):
        (inbox / f"img{i:02d}.png").write_bytes(image_bytes((16, 16), color=(i, 80, 160)))
    output = tmp_path / "out"
    cometapi_emulator.set_latency(1.0)  # every answer held by the gate until released

    first, first_log = start_job(tmp_path, "first", inbox, output, "2026-01-01T00:00:00+00:00")
    jobs.append(first)
    latency_gate.wait_for_pauses(FIRST_WAVE, timeout=480)  # the first run's edits are in flight
    second, second_log = start_job(tmp_path, "second", inbox, output, "2026-01-02T00:00:00+00:00")
    jobs.append(second)
    waiting = "the second run to wait on a claim"
    wait_for(lambda: "Waiting for" in second_log.read_text(), waiting, second, second_log)
    latency_gate.release()
    assert first.wait(timeout=240) == 0, first_log.read_text()[-3000:]
    assert second.wait(timeout=240) == 0, second_log.read_text()[-3000:]

    assert len(cometapi_emulator.billed) == ITEMS  # not 2 x 40: no item paid for twice
    assert len(files_in(output)) == ITEMS
    assert not (output / ".cometapi-claims").exists()  # every claim released, its folder too
    second_text = second_log.read_text()
    (report,) = (output / ".cometapi-reports").rglob("manual__2026-01-02*/batch.jsonl")
    lines = report_lines(str(report))
    assert [(line["reused"], line["paid"]) for line in lines] == [(True, False)] * ITEMS
    assert f"Reused {ITEMS} image(s) from an earlier run (nothing paid)" in second_text
    assert "Edited " not in second_text
