"""The production shape of a deployment for end-to-end tests: CeleryExecutor on PostgreSQL.

Beside ``Deployment``'s processes: Debian's PostgreSQL (run as its ``postgres`` user when the
tests run as root) and Redis as Celery's broker, both on loopback ports and installed with apt
when missing, and two ``airflow celery worker`` processes, each reporting its own hostname on
the task instances it runs. Everything lives under ``.airflow/e2e-celery/`` and stops with the
deployment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

from tests.e2e.debian import apt_install
from tests.e2e.deployment import AIRFLOW, COMPONENTS, REPO, Deployment, free_port

HOME = REPO / ".airflow" / "e2e-celery"
WORKERS = ("worker-a", "worker-b")
E2E_DAGS = Path(__file__).resolve().parent / "dags"
REDIS = Path("/usr/bin/redis-server")
POSTGRES_BIN = Path("/usr/lib/postgresql")
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"


def worker_hostname() -> str:
    """The hostname a worker reports (``[core] hostname_callable``): its name, as both workers
    share the machine."""
    return os.environ["COMETAPI_E2E_WORKER"]


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` folder, if any."""
    found = sorted(POSTGRES_BIN.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def ensure_debian_packages() -> Path:
    """Debian's ``postgresql`` and ``redis-server``, installed with apt when missing; returns
    PostgreSQL's ``bin`` folder."""
    missing = [
        package
        for package, present in (("postgresql", postgres_bin()), ("redis-server", REDIS.exists()))
        if not present
    ]
    if missing:
        apt_install(*missing)
    found = postgres_bin()
    assert found is not None, f"apt-get did not install {missing}"
    assert REDIS.exists(), f"apt-get did not install {missing}"
    return found


class CeleryDeployment(Deployment):
    """``Deployment`` with the CeleryExecutor, PostgreSQL, Redis and two Celery workers.

    :param dags: the example DAGs' folder; the DAGs in ``tests/e2e/dags/`` are a second bundle.
    """

    components = (*COMPONENTS, *WORKERS)

    def __init__(self, dags: Path, home: Path = HOME) -> None:
        super().__init__(dags, home)
        self.postgres_port, self.redis_port = free_port(), free_port()
        # PostgreSQL refuses to run as root: as root, the cluster is Debian's postgres user's.
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def settings(self) -> dict[str, str]:
        database = f"postgresql+psycopg2://airflow@127.0.0.1:{self.postgres_port}/airflow"
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                [
                    {"name": "examples", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(d)}}
                    if d == self.dags
                    else {"name": "e2e", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(d)}}
                    for d in (self.dags, E2E_DAGS)
                ]
            ),
        }

    def start_services(self) -> None:
        """PostgreSQL (a fresh cluster, trusted on loopback only) and Redis (nothing saved)."""
        bin_dir = ensure_debian_packages()
        data = self.home / "postgres"
        data.mkdir(mode=0o700)
        if self.as_postgres:
            shutil.chown(data, "postgres", "postgres")
        initdb = ("-D", str(data), "-U", "airflow", "--auth=trust", "-E", "UTF8", "--no-sync")
        self._run([*self.as_postgres, str(bin_dir / "initdb"), *initdb])
        server = (
            *("-D", str(data), "-p", str(self.postgres_port)),
            *("-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="),
            *("-c", "fsync=off"),  # a throw-away cluster
        )
        self._spawn("postgres", [*self.as_postgres, str(bin_dir / "postgres"), *server])
        broker = (
            *("--port", str(self.redis_port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
        )
        self._spawn("redis", [str(REDIS), *broker])
        self._wait(self._postgres_ready, "PostgreSQL", 60)
        client = ("-h", "127.0.0.1", "-p", str(self.postgres_port), "-U", "airflow")
        self._run([str(bin_dir / "createdb"), *client, "airflow"])

    def start_component(self, name: str) -> subprocess.Popen[bytes]:
        """A Celery worker (``worker-a``, ``worker-b``) or ``Deployment``'s component."""
        if name not in WORKERS:
            return super().start_component(name)
        return self._spawn(
            name,
            [
                *(*AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@%h"),
                *("--pid", str(self.home / f"{name}.pid"), "--skip-serve-logs"),
            ],
            env={
                "COMETAPI_E2E_WORKER": name,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.e2e.distributed.worker_hostname",
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
                ),
            },
        )

    def restart_worker(self, name: str, timeout: float = 120) -> None:
        """Start the stopped worker ``name`` again; return once it consumes its queue."""
        log = self.home / f"{name}.log"
        start = log.stat().st_size
        self.start_component(name)
        self._wait(
            lambda: " ready." in log.read_bytes()[start:].decode(errors="replace"), name, timeout
        )

    def _postgres_ready(self) -> bool:
        bin_dir = postgres_bin()
        assert bin_dir is not None
        done = subprocess.run(
            [
                str(bin_dir / "pg_isready"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.postgres_port),
                "-U",
                "airflow",
            ],
            capture_output=True,
        )
        return done.returncode == 0

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/")
        if done.returncode:
            raise AssertionError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")

    def clear(self, dag_id: str, run_id: str, task_id: str) -> None:
        """Clear one task instance of one run through the API, as the UI's Clear does (``airflow
        tasks clear`` selects runs by logical date, which a manual run in Airflow 3 has not)."""
        body = {"dry_run": False, "only_failed": False, "dag_run_id": run_id, "task_ids": [task_id]}
        request = urllib.request.Request(
            f"{self.base_url}/api/v2/dags/{dag_id}/clearTaskInstances",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            cleared = json.load(response)["task_instances"]
        assert [ti["task_id"] for ti in cleared] == [task_id], cleared

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict:
        """The task instance as the API shows it (its ``state`` and ``hostname`` among others)."""
        ti = self.api(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        assert ti is not None, f"no task instance {task_id} in {run_id}"
        return dict(ti)

    def wait_for_state(
        self, dag_id: str, run_id: str, task_id: str, state: str, try_number: int = 1
    ) -> dict:
        """The task instance once its try ``try_number`` is in ``state``."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        self._wait(
            lambda: (
                [(self.api(path) or {}).get(key) for key in ("state", "try_number")]
                == [state, try_number]
            ),
            f"{task_id}'s try {try_number} {state}",
            180,
        )
        return self.task_instance(dag_id, run_id, task_id)
