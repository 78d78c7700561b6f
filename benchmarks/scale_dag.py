"""What ``bench_scale`` reads around a ``dag.test()`` run: its own Airflow home and DAG bundle,
the run's XComs, the metadata DB's row counts, the storage objects left, and the task's log."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

BATCH = """
    CometImageEditBatchOperator(
        task_id="batch",
        prompt={prompt!r},
        sources={sources!r},
        output_path={output!r},
        max_concurrency={concurrency},
        deferrable={deferrable},
    )
"""
MAPPED = """
    CometImageEditBatchOperator.partial(
        task_id="batch",
        prompt={prompt!r},
        output_path={output!r},
        max_concurrency={concurrency},
    ).expand(sources={sources!r})
"""
HEADER = """\
from airflow.sdk import DAG
from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator

with DAG({dag_id!r}, schedule=None, catchup=False) as dag:
"""
DEFINITION_TABLES = ("dag", "dag_bundle", "dag_code", "dag_version", "serialized_dag")
"""Rows a new DAG (or DAG version) adds once, whatever its runs."""
_LINE = re.compile(r"^(\S+) \[(\w+)\s*\] (.*) \[([\w.]+)\](?= \w+=|$)")
_LEVELS = ("info", "warning", "error", "critical")


def home_env(home: Path) -> dict[str, str]:
    """Environment for a child process with its own Airflow home, SQLite DB and DAG bundle
    (``home/dags``), logging at INFO as a deployment does by default."""
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    bundle = {"name": "bench", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle"}
    return {
        "COMETAPI_BENCH_AIRFLOW_HOME": str(home),  # benchmarks.support sets AIRFLOW_HOME from it
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
            [{**bundle, "kwargs": {"path": str(dags)}}]
        ),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }


def load_dag(dag_id: str, task: str, **fields: Any) -> Any:
    """Write a one-task DAG file into the bundle (``task``: ``BATCH`` or ``MAPPED``, formatted
    with ``fields``), import it and return the DAG, ready for ``dag.test()``."""
    import importlib.util

    path = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], f"{dag_id}.py")
    path.write_text(HEADER.format(dag_id=dag_id) + task.format(**fields))
    spec = importlib.util.spec_from_file_location(dag_id, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def xcom_bytes(dag_id: str, run_id: str) -> dict[str, int]:
    """Characters of stored JSON of each XCom key of a run, summed over its task instances."""
    sizes: dict[str, int] = {}
    for key, stored in xcoms(dag_id, run_id):
        sizes[key] = sizes.get(key, 0) + len(stored)
    return sizes


def xcoms(dag_id: str, run_id: str) -> list[tuple[str, str]]:
    """``(key, stored JSON)`` of every XCom row of a run."""
    from airflow.utils.session import create_session
    from sqlalchemy import text

    with create_session() as session:
        rows = session.execute(
            text("SELECT key, value FROM xcom WHERE dag_id = :dag AND run_id = :run"),
            {"dag": dag_id, "run": run_id},
        )
        return [
            (key, value if isinstance(value, str) else json.dumps(value)) for key, value in rows
        ]


def table_rows() -> dict[str, int]:
    """Rows of every table of the metadata DB."""
    from airflow.utils.session import create_session
    from sqlalchemy import text

    with create_session() as session:
        names = session.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
        tables = [name for (name,) in names if not name.startswith("sqlite_")]
        return {
            table: session.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
            for table in tables
        }


def rows_added(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The tables that grew, and by how many rows."""
    return {t: after[t] - before.get(t, 0) for t in sorted(after) if after[t] != before.get(t, 0)}


def storage_objects(folder: Path) -> dict[str, int]:
    """Files under an output folder: ``outputs`` (visible files), and each hidden bookkeeping
    folder's files under its own name (``.cometapi-manifests``, ``.cometapi-claims``…)."""
    counts: dict[str, int] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            top = path.relative_to(folder).parts[0]
            kind = top if top.startswith(".") else "outputs"
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


@dataclass
class LogLine:
    """One line of the task's log as ``dag.test()`` prints it (structlog's console format)."""

    at: datetime
    level: str
    message: str
    logger: str


@dataclass
class TaskLog:
    """The provider's lines (operator, hooks, trigger) of a captured log, in a time window."""

    lines: list[LogLine] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path, since: datetime, until: datetime) -> TaskLog:
        """Every line at INFO or above logged between ``since`` and ``until`` (UTC)."""
        found = []
        for text in path.read_text(errors="replace").splitlines():
            match = _LINE.match(text)
            if match is None or match[2] not in _LEVELS:
                continue
            at = datetime.fromisoformat(match[1].replace("Z", "+00:00"))
            if since <= at <= until:
                found.append(LogLine(at, match[2], match[3], match[4]))
        return cls(found)

    @property
    def provider(self) -> list[LogLine]:
        """The lines of the operator and its hooks (``airflow.task.…``) and of the trigger and
        its client (``airflow_provider_cometapi.…``)."""
        return [
            line
            for line in self.lines
            if line.logger.startswith(("airflow.task.", "airflow_provider_cometapi."))
        ]

    @property
    def airflow(self) -> int:
        """Airflow's own task-runner lines (``[task]``: groups, XCom pushes…)."""
        return sum(line.logger == "task" for line in self.lines)

    def by_source(self) -> dict[str, int]:
        """The provider's lines by logger, named by its last part (the class or module)."""
        counts: dict[str, int] = {}
        for line in self.provider:
            name = line.logger.rsplit(".", 1)[-1]
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: -item[1]))

    def per_item(self) -> int:
        """Lines the hooks wrote (one or more per request): they grow with the items."""
        return sum(".hooks." in line.logger for line in self.provider)

    def first(self, pattern: str) -> datetime | None:
        """When the first line whose message matches ``pattern`` was logged."""
        return next((line.at for line in self.lines if re.search(pattern, line.message)), None)

    def spans(self, start: str, end: str) -> list[float]:
        """Seconds from each line matching ``start`` to the next matching ``end``, in order."""
        spans, opened = [], None
        for line in self.lines:
            if opened is None and re.search(start, line.message):
                opened = line.at
            elif opened is not None and re.search(end, line.message):
                spans.append((line.at - opened).total_seconds())
                opened = None
        return spans
