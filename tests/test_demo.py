"""``make demo``'s script runs the showcase DAG and leaves the edits and a contact sheet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.imaging import decode

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_the_showcase_end_to_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COMETAPI"))}
    env["AIRFLOW_HOME"] = str(tmp_path / "home")
    finished = subprocess.run(
        [sys.executable, "-m", "dags_examples.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "demo-output/local-edit/paper-boat-0.png" in finished.stdout
    assert "total" in finished.stdout
    sheet = decode((ROOT / "demo-output" / "contact-sheet.png").read_bytes())
    assert sheet.width > 4 * 320
