"""One DAG run of many items on a real deployment: a mapped fan-out of batch tasks on the
LocalExecutor (scheduler, dag-processor, triggerer and API server as their own processes, on
SQLite), with the emulator as its own process. Too long for ``make bench`` at full size:

    python -m benchmarks.fanout_local [TASKS] [ITEMS_PER_TASK]

prints the run's figures and what they give for 100,000 items as 50 tasks of 2,000.
"""

from __future__ import annotations

import json
import resource
import sqlite3
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_scale import _distinct_pngs
from tests.e2e.deployment import Deployment

TASKS, ITEMS = 10, 1_000
LATENCY = 1.0
MAX_CONCURRENCY = 64
TARGET_TASKS, TARGET_ITEMS = 50, 2_000
DAG_ID = "cometapi_fanout"


class _SlowDeployment(Deployment):
    """The deployment, with an emulator that answers after ``LATENCY`` seconds."""

    def _start_emulator(self) -> None:
        script = Path(sys.executable).with_name("cometapi-emulator")
        process = self._spawn(
            "emulator", [str(script), "--port", "0", "--latency", str(LATENCY)], pipe=True
        )
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert "listening on" in line, f"the emulator did not start: {line!r}"
        self.emulator_url = line.rsplit(" ", 1)[1].strip()


def run(tasks: int = TASKS, items: int = ITEMS) -> dict[str, Any]:
    """Run the fan-out once; its figures."""
    with tempfile.TemporaryDirectory(prefix="cometapi-fanout-") as folder:
        work = Path(folder)
        parts = []
        for task in range(tasks):
            part = work / "in" / f"part{task:02d}"
            _distinct_pngs(part, items, first=1 + task * items)
            parts.append(f"{part}/")
        dags, out = work / "dags", work / "out"
        dags.mkdir()
        (dags / f"{DAG_ID}.py").write_text(_dag_source(parts, f"{out}/"))
        spent = _children_cpu()
        with _SlowDeployment(dags, home=work / "home") as deployment:
            rows_before = _rows(work / "home" / "airflow.db")
            run_id = deployment.trigger(DAG_ID, {})
            start = time.monotonic()
            state = deployment.wait_for_run(DAG_ID, run_id, timeout=3600)
            wall = time.monotonic() - start
            instances = deployment.api(
                f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=1000"
            )["task_instances"]
            rows_after = _rows(work / "home" / "airflow.db")
            billed = len(deployment.emulator_records()["billed"])
        cpu = _children_cpu() - spent
        objects = {
            kind: sum(1 for path in (out / kind).rglob("*") if path.is_file())
            for kind in (".cometapi-manifests", ".cometapi-reports", ".cometapi-claims")
        }
        objects["outputs"] = sum(1 for path in out.glob("*.png"))
    return {
        "tasks": tasks,
        "items": items,
        "state": state,
        "wall_s": wall,
        "billed": billed,
        "cpu_s": cpu,
        "rows_added": {
            table: rows_after[table] - rows_before.get(table, 0)
            for table in rows_after
            if rows_after[table] != rows_before.get(table, 0)
        },
        "objects": objects,
        "runs_s": [_seconds(ti["start_date"], ti["end_date"]) for ti in instances],
        "waits_s": [_seconds(ti["queued_when"], ti["start_date"]) for ti in instances],
    }


def _dag_source(parts: list[str], output: str) -> str:
    return textwrap.dedent(
        f"""
        from airflow.sdk import DAG
        from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator

        with DAG({DAG_ID!r}, schedule=None, catchup=False) as dag:
            CometImageEditBatchOperator.partial(
                task_id="edit",
                prompt="Put it on a white background.",
                output_path={output!r},
                max_concurrency={MAX_CONCURRENCY},
                on_item_failure="continue",
            ).expand(sources={parts!r})
        """
    )


def _rows(database: Path) -> dict[str, int]:
    """Rows of each table of the metadata DB."""
    with sqlite3.connect(database) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            table: db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] for table in tables
        }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _seconds(since: str | None, until: str | None) -> float:
    from datetime import datetime

    if not since or not until:
        return 0.0
    return (datetime.fromisoformat(until) - datetime.fromisoformat(since)).total_seconds()


def report(figures: dict[str, Any]) -> str:
    """The figures, and the arithmetic for 100,000 items as 50 tasks of 2,000."""
    tasks, items = figures["tasks"], figures["items"]
    total = tasks * items
    rate = total / figures["wall_s"]
    rows = sum(figures["rows_added"].values())
    objects = sum(figures["objects"].values())
    runs, waits = figures["runs_s"], figures["waits_s"]
    target = TARGET_TASKS * TARGET_ITEMS
    per_item_ms = figures["cpu_s"] / total * 1000
    return "\n".join(
        [
            f"Fan-out on the LocalExecutor ({tasks} mapped batch tasks x {items:,} items, 64x64 "
            f"PNGs, emulator latency {LATENCY:.0f} s, max_concurrency={MAX_CONCURRENCY}): "
            f"{figures['state']}, {total:,} items in {figures['wall_s']:.0f} s = "
            f"{rate:.0f} items/s; {figures['billed']:,} billed",
            f"  CPU of every process (scheduler, dag-processor, triggerer, API server, tasks, "
            f"emulator): {figures['cpu_s']:.0f} s = {per_item_ms:.1f} ms per item",
            f"  task instances: ran {min(runs):.0f}-{max(runs):.0f} s each; waited "
            f"{min(waits):.1f}-{max(waits):.1f} s from queued to running",
            f"  metadata DB rows added: {rows} ({json.dumps(figures['rows_added'])}) = "
            f"{rows / tasks:.1f} per task instance",
            f"  storage objects: {objects:,} ({json.dumps(figures['objects'])}) = "
            f"{objects / total:.2f} per item",
            f"  100,000 items as {TARGET_TASKS} x {TARGET_ITEMS:,}: {target:,} / {rate:.0f} "
            f"items/s = {target / rate / 60:.0f} min on this machine; "
            f"{rows / tasks * TARGET_TASKS:.0f} metadata rows; "
            f"{objects / total * target:,.0f} storage objects",
        ]
    )


if __name__ == "__main__":
    arguments = [int(value) for value in sys.argv[1:3]]
    print(report(run(*arguments)))
