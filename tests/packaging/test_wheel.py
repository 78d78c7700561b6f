"""``make dist`` builds a wheel that installs beside apache-airflow alone and works there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest

from airflow_provider_cometapi import __version__

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]


def uv() -> str:
    """The uv that runs this suite (``uv run`` exports it), else the one on PATH."""
    found = os.environ.get("UV") or shutil.which("uv")
    assert found, "uv is needed to build and install the wheel: run the tests with `make test-e2e`"
    return found


def run(*argv: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(arg) for arg in argv],
        capture_output=True,
        text=True,
        timeout=500,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """``make dist`` (wheel, sdist and ``twine check --strict``) into a temporary folder."""
    folder = tmp_path_factory.mktemp("dist")
    run("make", "-C", REPO, "dist", f"DIST={folder}", f"UV={uv()}")
    return folder


@pytest.fixture(scope="module")
def clean_venv(dist, tmp_path_factory) -> Path:
    """A new venv holding the wheel and what it needs (apache-airflow, requests, pillow), at the
    versions ``uv.lock`` pins, and nothing of the development tools."""
    root = tmp_path_factory.mktemp("clean")
    pins = root / "pins.txt"
    run(uv(), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes",
        "--directory", REPO, "--output-file", pins)  # fmt: skip
    (wheel,) = dist.glob("*.whl")
    venv = root / "venv"
    run(uv(), "venv", "--quiet", "--python", sys.executable, venv)
    run(uv(), "pip", "install", "--quiet", "--python", venv / "bin" / "python",
        "--constraint", pins, wheel)  # fmt: skip
    return venv


def test_dist_holds_a_wheel_and_an_sdist_with_the_package_data(dist):
    (wheel,) = dist.glob("airflow_provider_cometapi-*.whl")
    (sdist,) = dist.glob("airflow_provider_cometapi-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "airflow_provider_cometapi/py.typed",
        "airflow_provider_cometapi/samples/paper-boat.png",
        "airflow_provider_cometapi/samples/paper-boat-mask.png",
        "airflow_provider_cometapi/emulator/__main__.py",
    ):
        assert needed in names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[apache_airflow_provider]" in text
    assert "cometapi-emulator = airflow_provider_cometapi.emulator.__main__:main" in text
    assert sdist.stat().st_size > 0


def test_wheel_and_sdist_carry_the_license_and_notice(dist):
    """Both files, byte for byte as in the repository: the wheel's under its dist-info
    ``licenses/`` (PEP 639), the sdist's at its root; the metadata names them."""
    (wheel,) = dist.glob("airflow_provider_cometapi-*.whl")
    (sdist,) = dist.glob("airflow_provider_cometapi-*.tar.gz")
    license_text = (REPO / "LICENSE").read_bytes()
    assert license_text.lstrip().startswith(b"Apache License\n")
    assert b"APPENDIX: How to apply the Apache License to your work." in license_text
    with zipfile.ZipFile(wheel) as archive:
        info = f"airflow_provider_cometapi-{__version__}.dist-info"
        for name in ("LICENSE", "NOTICE"):
            assert archive.read(f"{info}/licenses/{name}") == (REPO / name).read_bytes()
        metadata = archive.read(f"{info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert {"License-File: LICENSE", "License-File: NOTICE"} <= set(metadata.splitlines())
    with tarfile.open(sdist) as archive:
        root = f"airflow_provider_cometapi-{__version__}"
        for name in ("LICENSE", "NOTICE"):
            member = archive.extractfile(f"{root}/{name}")
            assert member is not None
            assert member.read() == (REPO / name).read_bytes()


def test_clean_venv_has_airflow_but_no_development_tools(clean_venv):
    listed = json.loads(
        run(uv(), "pip", "list", "--python", clean_venv / "bin" / "python", "--format", "json")
    )
    names = {package["name"] for package in listed}
    assert {"apache-airflow", "airflow-provider-cometapi", "requests", "pillow"} <= names
    assert not names & {"pytest", "openai", "moto", "ruff", "apache-airflow-providers-amazon"}


def test_airflow_sees_the_provider_and_its_connection_type(clean_venv, tmp_path):
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "false"}
    listing = run(clean_venv / "bin" / "airflow", "providers", "list", "-o", "json", env=env)
    versions = {p["package_name"]: p["version"] for p in json.loads(listing[listing.index("[") :])}
    assert versions["airflow-provider-cometapi"] == __version__
    hooks = run(
        clean_venv / "bin" / "python",
        "-c",
        "from airflow.providers_manager import ProvidersManager as M; m = M(); "
        "h = m.hooks['cometapi']; print(h.connection_type, h.hook_class_name, h.hook_name)",
        env=env,
    )
    assert hooks.split()[-3:] == [
        "cometapi",
        "airflow_provider_cometapi.hooks.cometapi.CometApiHook",
        "CometAPI",
    ]


def test_emulator_console_script_serves_from_the_clean_venv(clean_venv):
    process = subprocess.Popen(
        [clean_venv / "bin" / "cometapi-emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().rsplit(" ", 1)[-1].strip()
        request = urllib.request.Request(
            f"{url}/v1/models", headers={"Authorization": "Bearer any-key"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            models = json.load(response)
    finally:
        process.terminate()
        process.wait(30)
    assert "gpt-image-2" in [model["id"] for model in models["data"]]
