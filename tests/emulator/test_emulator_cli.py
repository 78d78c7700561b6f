"""The ``python -m airflow_provider_cometapi.emulator`` command line."""

from __future__ import annotations

import pytest
import requests

from airflow_provider_cometapi.emulator.__main__ import main
from tests.emulator.helpers import emulator_cli, png_part


def test_cli_serves_on_a_free_port_until_sigterm():
    with emulator_cli("--api-key", "cli-key", "--fault", "status=503;retry_after=4") as url:
        headers = {"Authorization": "Bearer cli-key"}
        assert requests.get(f"{url}/v1/models", headers=headers, timeout=5).status_code == 200
        edit = requests.post(
            f"{url}/v1/images/edits",
            files=[png_part()],
            data={"prompt": "x"},
            headers=headers,
            timeout=5,
        )
        assert (edit.status_code, edit.headers["Retry-After"]) == (503, "4")
        wrong = requests.get(f"{url}/v1/models", headers={"Authorization": "Bearer k"})
        assert wrong.status_code == 401


@pytest.mark.parametrize(
    "argv",
    [["--fault", "explode"], ["--random-faults", "429"], ["--latency", "-2"], ["--port", "x"]],
)
def test_cli_refuses_bad_options(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)

    assert info.value.code == 2
    assert "error" in capsys.readouterr().err
