"""A batch job run in its own process (so a test can SIGKILL it midway, or run two at once):
``python batch_job.py SOURCES OUTPUT [RUN_DATE]`` with ``AIRFLOW_HOME`` and
``AIRFLOW_CONN_COMETAPI_DEFAULT`` set by the caller. Runs of one ``RUN_DATE`` (ISO 8601; the
fixed ``LOGICAL_DATE`` by default) are one DAG run, as a retry is; other dates are other runs."""

from __future__ import annotations

import importlib.util
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

DAG_SOURCE = """
from airflow.sdk import DAG
from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator

with DAG("cometapi_load_batch", schedule=None, catchup=False) as dag:
    CometImageEditBatchOperator(
        task_id="batch",
        prompt="Add a ribbon",
        sources={sources!r},
        output_path={output!r},
        max_concurrency=32,
        on_item_failure="continue",
    )
"""


LOGICAL_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)
"""Fixed, so a rerun of the job is the same DAG run and task instance: a retry."""


def main(sources: str, output: str, run_date: datetime = LOGICAL_DATE) -> int:
    """Write the DAG into this process's bundle folder and ``dag.test()`` it."""
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cometapi_load_batch.py"
    path.write_text(DAG_SOURCE.format(sources=sources, output=output))
    from airflow.utils import db

    from airflow_provider_cometapi.storage import report

    report.PART_SECONDS = 0.5  # a part of the report at least this often, so a kill leaves some
    db.initdb()
    spec = importlib.util.spec_from_file_location("cometapi_load_batch", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = module.dag.test(logical_date=run_date, run_after=run_date)
    return 0 if str(run.state) == "success" else 1


if __name__ == "__main__":
    dates = [datetime.fromisoformat(arg) for arg in sys.argv[3:4]]
    sys.exit(main(sys.argv[1], sys.argv[2], *dates))
