"""Run DAGs with ``dag.test()`` on Airflow's SQLite metadata DB, and read what they left behind."""

from __future__ import annotations

import importlib.util
import itertools
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

HEADER = """\
from __future__ import annotations

import base64

from airflow.sdk import DAG, task

from airflow_provider_cometapi.operators.image_edit import CometImageEditOperator

with DAG({dag_id!r}, schedule=None, catchup=False, render_template_as_native_obj={native}) as dag:
"""
_counter = itertools.count()


@dataclass
class Outcome:
    """A finished DAG run: its state, its task instances' states, and its XComs."""

    dag_id: str
    run_id: str
    state: str

    def states(self) -> dict[tuple[str, int], str]:
        """``{(task_id, map_index): state}``."""
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.query(TaskInstance).filter_by(dag_id=self.dag_id, run_id=self.run_id)
            return {(ti.task_id, ti.map_index): str(ti.state) for ti in rows}

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """One XCom value (``None`` when absent)."""
        return self.xcoms(task_id, key).get(map_index)

    def report(
        self, task_id: str, map_index: int = -1, conn_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The lines of a batch task's JSONL report (the ``report`` XCom's URI), in order."""
        uri = self.xcom(task_id, "report", map_index)
        assert uri, f"{task_id}[{map_index}] pushed no report"
        return report_lines(uri, conn_id)

    def outputs(self, task_id: str, map_index: int = -1, conn_id: str | None = None) -> list[str]:
        """The output URIs a batch task's report lists, in source order."""
        return [uri for line in self.report(task_id, map_index, conn_id) for uri in line["outputs"]]

    def xcoms(self, task_id: str, key: str = "return_value") -> dict[int, Any]:
        """``{map_index: value}`` of one task's XComs under ``key``."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.query(XComModel).filter_by(
                dag_id=self.dag_id, run_id=self.run_id, task_id=task_id, key=key
            )
            return {row.map_index: row.value for row in rows}


def batch_task(sources: str, output: str, **extra: object) -> str:
    """A DAG body of one ``CometImageEditBatchOperator`` task, ``batch``: ``sources`` as Python
    source text, the other arguments as values (``prompt`` "Add a ribbon" unless given)."""
    extra.setdefault("prompt", "Add a ribbon")
    options = "".join(f", {key}={value!r}" for key, value in extra.items())
    return (
        "from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator\n"
        f"CometImageEditBatchOperator(task_id='batch', sources={sources}, "
        f"output_path={output!r}{options})"
    )


def report_lines(uri: str, conn_id: str | None = None) -> list[dict[str, Any]]:
    """The lines of a JSONL report in storage."""
    import json

    from airflow_provider_cometapi.storage.paths import storage_path

    text = storage_path(uri, conn_id).read_text()
    return [json.loads(line) for line in text.splitlines()]


class DagRunner:
    """Writes each DAG into the test bundle folder, so ``dag.test()`` can serialize it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(
        self,
        body: str,
        *,
        conf: dict | None = None,
        native: bool = False,
        dag_id: str | None = None,
        logical_date: Any = None,
    ) -> Outcome:
        """Run a DAG whose tasks are ``body`` (indented under ``with DAG(...) as dag:``).

        :param dag_id: a fixed id (a fresh one by default).
        :param logical_date: a fixed logical date (and run-after): run it again with the same one
            and it is the same run id, so its task instances are the same ones, as on a retry.
        """
        dag_id = dag_id or f"test_dag_{next(_counter)}"
        path = self.folder / f"{dag_id}.py"
        source = HEADER.format(dag_id=dag_id, native=native)
        path.write_text(source + textwrap.indent(textwrap.dedent(body).strip() + "\n", "    "))
        return self.run_file(path, dag_id, conf=conf, logical_date=logical_date)

    def run_file(
        self, path: Path, dag_id: str, *, conf: dict | None = None, logical_date: Any = None
    ) -> Outcome:
        """Import a DAG file and ``dag.test()`` the DAG called ``dag_id``."""
        spec = importlib.util.spec_from_file_location(f"dagfile_{dag_id}", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dag = next(v for v in vars(module).values() if getattr(v, "dag_id", None) == dag_id)
        when = {"logical_date": logical_date, "run_after": logical_date} if logical_date else {}
        run = dag.test(run_conf=conf, **when)
        return Outcome(dag_id=dag_id, run_id=run.run_id, state=str(run.state))


def files_in(folder: Path) -> list[str]:
    """Sorted names in ``folder``, less the provider's hidden bookkeeping (manifests, staging)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
