"""Every code sample in the README and the documentation's pages runs: Python is executed (its
DAGs with ``dag.test()``), shell lines are run or, for ``make`` targets, dry-run, and a sample
the harness cannot run fails."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from airflow_provider_cometapi.samples import PAPER_BOAT, PAPER_BOAT_MASK
from tests.dagrun import DagRunner
from tests.settings import TEST_DAGS

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
EMULATOR_MODULE = "airflow_provider_cometapi.emulator"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
"""The README and the documentation site's pages: each one's samples run alike."""
SAMPLES = [
    (f"{document.relative_to(ROOT)}-{language or 'plain'}-{number}", language, code)
    for document in DOCUMENTS
    for number, (language, code) in enumerate(FENCE.findall(document.read_text()))
]


@pytest.fixture
def sandbox(tmp_path, monkeypatch, s3, s3_endpoint, cometapi_conn, airflow_db):
    """A folder with the README's files, ``my-bucket`` on the S3 server behind ``aws_default``,
    and ``cometapi_default`` on the emulator."""
    from tests.s3 import connection_json

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", connection_json(s3_endpoint))
    s3.create_bucket(Bucket="my-bucket")
    for key, source in {
        "boats/paper-boat.png": PAPER_BOAT,
        "boats/paper-boat-mask.png": PAPER_BOAT_MASK,
        "inbox/boat-1.png": PAPER_BOAT,
        "inbox/boat-2.png": PAPER_BOAT,
    }.items():
        s3.put_object(Bucket="my-bucket", Key=key, Body=source.read_bytes())
    shutil.copy(PAPER_BOAT, tmp_path / "boat.png")
    shutil.copy(PAPER_BOAT_MASK, tmp_path / "boat-mask.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_has_samples_of_every_kind():
    in_readme = [language for name, language, _ in SAMPLES if name.startswith("README.md-")]
    assert set(in_readme) == {"bash", "python", "ini"}
    assert len(SAMPLES) > len(in_readme)  # the documentation's pages have theirs too


def test_the_emulator_sample_keeps_off_airflows_api_server_port():
    """The emulator's sample port and the connection pointed at it agree, and are not 8080."""
    text = (ROOT / "README.md").read_text()
    (port,) = set(re.findall(r"cometapi-emulator .*--port (\d+)", text))
    assert port != "8080"
    assert f"http://127.0.0.1:{port}" in text
    assert "127.0.0.1:8080" not in text


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("language", "code"), [s[1:] for s in SAMPLES], ids=[s[0] for s in SAMPLES]
)
def test_readme_sample_runs(sandbox, cometapi_emulator, language, code):
    run = {"python": run_python, "bash": run_shell, "ini": check_config}[language]
    run(code, sandbox, cometapi_emulator)


def run_python(code: str, folder: Path, emulator) -> None:
    """A test module runs under pytest; a DAG file's DAGs each succeed; other code just runs."""
    if re.search(r"^def test_", code, re.MULTILINE):
        (folder / "test_sample.py").write_text(code)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_sample.py"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stdout[-3000:]
        assert re.search(r"^\d+ passed", done.stdout.splitlines()[-1])
        return
    dag_file = TEST_DAGS / f"readme_{abs(hash(code))}.py"
    dag_file.write_text(code)
    spec = importlib.util.spec_from_file_location(dag_file.stem, dag_file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag_ids = [value.dag_id for value in vars(module).values() if is_dag(value)]
    for dag_id in dag_ids:
        outcome = DagRunner(TEST_DAGS).run_file(dag_file, dag_id)
        assert outcome.state == "success", (dag_id, outcome.states())
    if not dag_ids:
        assert emulator.billed, "a sample that is no DAG should call the API"


def is_dag(value: object) -> bool:
    from airflow.sdk import DAG

    return isinstance(value, DAG)


def run_shell(code: str, folder: Path, emulator) -> None:
    """Each command line of a shell sample."""
    for line in code.splitlines():
        command = line.split("#", 1)[0].strip()
        if command:
            run_command(command, emulator)


def run_command(command: str, emulator) -> None:
    words = shlex.split(command)
    if words[0] == "make":
        dry = subprocess.run(["make", "-n", "-C", ROOT, *words[1:]], capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
    elif words[:2] == ["pip", "install"]:
        try:
            from tomllib import loads
        except ModuleNotFoundError:  # Python 3.10: pytest's own dependency tomli
            from tomli import loads

        assert words[2:] == [loads((ROOT / "pyproject.toml").read_text())["project"]["name"]]
    elif words[0] == "export":
        check_exported_connection(command)
    elif words[0] == "cometapi-emulator" or words[:3] == [
        "python",
        "-m",
        "airflow_provider_cometapi.emulator",
    ]:
        check_emulator_command(words)
    elif words[0] == "airflow":
        env = {**os.environ, "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
        done = subprocess.run(
            [installed(words[0]), *words[1:]], env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Connection success!" in done.stdout
    else:
        pytest.fail(f"no runner for the README command {command!r}: teach tests/test_readme.py")


def installed(script: str) -> str:
    """A console script of the environment running the tests."""
    return str(Path(sys.executable).with_name(script))


def check_exported_connection(command: str) -> None:
    """The exported connection is one the hook reads: type, URL and every extra as written."""
    from airflow_provider_cometapi.hooks.cometapi import CometApiHook

    name = command.split("=", 1)[0].removeprefix("export ").strip()
    value = subprocess.run(
        ["bash", "-c", f'{command}\nprintf %s "${name}"'], capture_output=True, text=True
    ).stdout
    written = json.loads(value)
    conn_id = name.removeprefix("AIRFLOW_CONN_").lower()
    os.environ[name] = value
    try:
        settings = CometApiHook(cometapi_conn_id=conn_id).settings
    finally:
        del os.environ[name]
    assert written["conn_type"] == "cometapi"
    assert settings.base_url == written["host"].rstrip("/").removesuffix("/v1")
    assert settings.api_key == written["password"]
    assert settings.read_timeout == written["extra"]["timeout"]


def check_emulator_command(words: list[str]) -> None:
    """The emulator starts as written (on a free port instead of the sample's) and serves."""
    if "--port" in words:
        words[words.index("--port") + 1] = "0"
    words[0] = sys.executable if words[0] == "python" else installed(words[0])
    process = subprocess.Popen(words, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().rsplit(" ", 1)[-1].strip()
        request = urllib.request.Request(f"{url}/v1/models", headers={"Authorization": "Bearer k"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["data"]
    finally:
        process.terminate()
        process.wait(30)


def check_config(code: str, folder: Path, emulator) -> None:
    """Every option in an ``airflow.cfg`` sample is one the provider declares."""
    from airflow_provider_cometapi.get_provider_info import get_provider_info

    parser = configparser.ConfigParser()
    parser.read_string(code)
    declared = get_provider_info()["config"]
    for section in parser.sections():
        assert set(parser[section]) <= set(declared[section]["options"])
    if parser.has_option("cometapi", "pricing"):  # a table the provider accepts
        from airflow_provider_cometapi.api.pricing import CONFIG_WHERE, Pricing

        assert Pricing.parse(parser["cometapi"]["pricing"], where=CONFIG_WHERE).models
