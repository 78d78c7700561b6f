"""A real Airflow deployment for end-to-end tests: separate processes on a repo-local SQLite home.

The scheduler (LocalExecutor), dag-processor, triggerer and API server each run as their own
``airflow`` process, with the CometAPI emulator as a ``cometapi-emulator`` process beside them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
HOME = REPO / ".airflow" / "e2e"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
AIRFLOW = (sys.executable, "-m", "airflow")
STOP_TIMEOUT = 30.0


def group_alive(group: int) -> bool:
    """Whether any process of the process group ``group`` is still running."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Deployment:
    """Airflow's processes and the emulator, started together and stopped together.

    Subclasses change the executor and the database through ``settings``, ``components`` and
    ``start_services`` (see ``tests/e2e/distributed.py``).

    :param dags: the folder the dag-processor parses.
    :param home: Airflow's home, emptied first; its SQLite DB and logs stay there.
    """

    components: tuple[str, ...] = COMPONENTS

    def __init__(self, dags: Path, home: Path = HOME) -> None:
        self.dags, self.home = dags, home
        self.port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        self.emulator_url = ""
        self.lineage_file = home / "openlineage.jsonl"

    @property
    def env(self) -> dict[str, str]:
        """The environment every process and CLI call shares."""
        base_url = f"http://127.0.0.1:{self.port}"
        return {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API_AUTH__JWT_SECRET": "cometapi-e2e-jwt-secret-not-for-production",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(self.lineage_file), "append": True}
            ),
            "AIRFLOW_CONN_COMETAPI_DEFAULT": json.dumps(
                {
                    "conn_type": "cometapi",
                    "host": self.emulator_url,
                    "password": "e2e-key",
                    "extra": {"allow_private_urls": True},
                }
            ),
            **self.settings(),
        }

    def settings(self) -> dict[str, str]:
        """Variables a subclass adds to (or overrides in) ``env``: its executor, its database."""
        return {}

    def start_services(self) -> None:
        """Start what Airflow needs before its DB migrates (a subclass's database, broker)."""

    def __enter__(self) -> Deployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the emulator, migrate a fresh DB, start Airflow's processes, wait for the API."""
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        self._start_emulator()
        self.start_services()
        self.cli("db", "migrate")
        for name in self.components:
            self.start_component(name)
        self._wait(lambda: self.api("/api/v2/monitor/health") is not None, "the API server", 120)

    def start_component(self, name: str) -> subprocess.Popen[bytes]:
        """Start ``airflow NAME`` (again, after ``stop_component``), logging to ``NAME.log``."""
        return self._spawn(name, [*AIRFLOW, name])

    def stop_component(self, name: str) -> None:
        """Stop one process started here and its children, as ``stop`` does; ``_wait`` no longer
        watches it until it starts again."""
        self._terminate([self.processes.pop(name)])

    def stop(self) -> None:
        """Stop every process started here and all their children (each is a process group):
        SIGTERM, then SIGKILL for a group still alive after ``STOP_TIMEOUT``; close the logs."""
        self._terminate(list(self.processes.values()))
        for log in self._logs:
            log.close()

    @staticmethod
    def _terminate(processes: list[subprocess.Popen[bytes]]) -> None:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.0, deadline - time.monotonic()))
            while group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if group_alive(process.pid):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT)
            killed = time.monotonic() + STOP_TIMEOUT  # the rest of the group is reaped by init
            while group_alive(process.pid) and time.monotonic() < killed:
                time.sleep(0.2)
            if process.stdout is not None:
                process.stdout.close()

    def cli(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
        """Run ``airflow ARGS...`` against this deployment; return its output.

        :param env: variables added to the deployment's environment for this call.
        :param check: fail when the command exits non-zero.
        """
        done = subprocess.run(
            [*AIRFLOW, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=180,
        )
        if check and done.returncode:
            raise AssertionError(f"airflow {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout + done.stderr

    @property
    def base_url(self) -> str:
        """The API server's (and UI's) address."""
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str) -> Any:
        """GET the API server's JSON at ``path``, or ``None`` while it cannot answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return json.load(r)
        except OSError:
            return None

    def emulator_records(self) -> dict[str, Any]:
        """What the emulator received and billed."""
        with urllib.request.urlopen(f"{self.emulator_url}/_emulator/records", timeout=10) as r:
            return dict(json.load(r))

    def unpause(self, dag_id: str) -> None:
        """Wait until the dag-processor has parsed ``dag_id``, then unpause it from the CLI."""
        self._wait(lambda: self.api(f"/api/v2/dags/{dag_id}") is not None, dag_id, 120)
        self.cli("dags", "unpause", dag_id)

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Unpause ``dag_id`` and trigger it from the CLI; return the run id."""
        self.unpause(dag_id)
        run_id = f"e2e__{dag_id}__{time.time_ns()}"
        self.cli("dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf))
        return run_id

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 240) -> str:
        """The run's final state (``success`` or ``failed``)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"
        self._wait(
            lambda: (self.api(path) or {}).get("state") in ("success", "failed"), run_id, timeout
        )
        return str(self.api(path)["state"])

    def wait_for_scheduled_run(self, dag_id: str, timeout: float = 120) -> str:
        """The id of the first run the scheduler starts by itself for ``dag_id``."""
        path = f"/api/v2/dags/{dag_id}/dagRuns"
        self._wait(lambda: (self.api(path) or {}).get("dag_runs"), f"a run of {dag_id}", timeout)
        return str(self.api(path)["dag_runs"][0]["dag_run_id"])

    def openlineage_events(self, job: str, event_type: str = "COMPLETE") -> list[dict[str, Any]]:
        """The OpenLineage events the deployment emitted for ``dag_id.task_id``."""
        lines = self.lineage_file.read_text().splitlines() if self.lineage_file.exists() else []
        events = [json.loads(line) for line in lines]
        return [e for e in events if e["job"]["name"] == job and e["eventType"] == event_type]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1) -> Any:
        """One XCom value, read through the API server."""
        entry = self.api(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
            f"?map_index={map_index}&deserialize=true&stringify=false"
        )
        assert entry is not None, f"no XCom {key!r} for {task_id}[{map_index}]"
        return entry["value"]

    def task_logs(self, dag_id: str, run_id: str, task_id: str) -> dict[str, str]:
        """``{file name: text}`` of a task's logs, the triggerer's included if it deferred."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return {path.name: path.read_text() for path in sorted(folder.glob("*.log"))}

    def log_tail(self, chars: int = 4000) -> str:
        """The end of each process's log, for failure messages."""
        return "\n".join(
            f"--- {name} ---\n{(self.home / f'{name}.log').read_text(errors='replace')[-chars:]}"
            for name in self.processes
        )

    def _start_emulator(self) -> None:
        script = Path(sys.executable).with_name("cometapi-emulator")
        process = self._spawn("emulator", [str(script), "--port", "0"], pipe=True)
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert "listening on" in line, f"the emulator did not start: {line!r}"
        self.emulator_url = line.rsplit(" ", 1)[1].strip()

    def _spawn(
        self,
        name: str,
        argv: list[str],
        *,
        pipe: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own process group, its output in ``NAME.log`` (appended to, when
        it starts again); ``env`` is added to the deployment's."""
        log = (self.home / f"{name}.log").open("ab")
        self._logs.append(log)
        self.processes[name] = subprocess.Popen(
            argv,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE if pipe else log,
            stderr=log,
            start_new_session=True,
        )
        return self.processes[name]

    def _wait(self, ready: Any, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited early\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.log_tail()}")
            time.sleep(1)
