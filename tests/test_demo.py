"""``make demo``'s script runs the showcase DAG and leaves the edits and a contact sheet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.imaging import decode

ROOT = Path(__file__).resolve().parent.parent


def run_demo(env: dict[str, str]) -> str:
    finished = subprocess.run(
        [sys.executable, "-m", "dags_examples.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    return finished.stdout


def test_demo_runs_the_showcase_end_to_end_and_a_rerun_pays_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COMETAPI"))}
    env["AIRFLOW_HOME"] = str(tmp_path / "home")
    env["COMETAPI_DEMO_OUTPUT"] = str(tmp_path / "demo-output")

    first = run_demo(env)
    assert f"{tmp_path}/demo-output/local-edit/paper-boat-0.png" in first
    assert "total" in first
    assert "reused" not in first
    sheet = decode((tmp_path / "demo-output" / "contact-sheet.png").read_bytes())
    assert sheet.width > 4 * 320
    assert "Drift: the model changed 30.0% of the pixels the mask keeps" in first
    masks = decode((tmp_path / "demo-output" / "masks-that-hold.png").read_bytes())
    assert masks.size == sheet.size  # before, mask, model output, composite

    second = run_demo(env)
    assert "this run reused them and paid for nothing" in second
    request_id = first.split("request ")[1].split(")")[0]
    assert f"request {request_id})" in second
