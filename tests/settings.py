"""Process-wide test settings, applied once before Airflow is imported: home, DAG bundles, key."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="cometapi-airflow-home-"))
TEST_DAGS = _HOME / "test_dags"
TEST_DAGS.mkdir()
EXAMPLE_DAGS = Path(__file__).resolve().parent.parent / "dags_examples"
_LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "false"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(TEST_DAGS)
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {"name": "examples", "classpath": _LOCAL_BUNDLE, "kwargs": {"path": str(EXAMPLE_DAGS)}},
        {"name": "tests", "classpath": _LOCAL_BUNDLE, "kwargs": {"path": str(TEST_DAGS)}},
    ]
)

PLANTED_KEY = "sk-planted-0123456789abcdefSECRET"
