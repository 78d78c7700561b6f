"""A task that leaves out ``deferrable``: ``[cometapi]`` decides if set, else ``[operators]``."""

from __future__ import annotations

import pytest

from airflow_provider_cometapi.operators.image_edit import (
    CometImageEditBatchOperator,
    CometImageEditOperator,
)
from airflow_provider_cometapi.samples import PAPER_BOAT
from tests.dagrun import files_in

OPERATORS = "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"
COMETAPI = "AIRFLOW__COMETAPI__DEFAULT_DEFERRABLE"


def configure(monkeypatch, operators: str | None, cometapi: str | None) -> None:
    """Set or unset the two options, whatever the environment running the tests had."""
    for name, value in ((OPERATORS, operators), (COMETAPI, cometapi)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def constructed(**kwargs) -> list[bool]:
    """``deferrable`` of each operator built without, or with, the argument."""
    return [
        CometImageEditOperator(
            task_id="edit", prompt="x", image=str(PAPER_BOAT), output_path="/tmp/out/", **kwargs
        ).deferrable,
        CometImageEditBatchOperator(
            task_id="batch", prompt="x", sources="/tmp/in/", output_path="/tmp/out/", **kwargs
        ).deferrable,
    ]


@pytest.mark.parametrize(
    ("operators", "cometapi", "defers"),
    [
        (None, None, False),
        ("true", None, True),
        ("true", "false", False),
        (None, "true", True),
        ("false", "true", True),
        ("true", "", True),
    ],
    ids=[
        "neither-set",
        "only-operators-true",
        "cometapi-false-overrides-operators-true",
        "cometapi-true",
        "cometapi-true-overrides-operators-false",
        "cometapi-empty-is-unset",
    ],
)
def test_the_config_decides_deferrable(monkeypatch, operators, cometapi, defers):
    configure(monkeypatch, operators, cometapi)

    assert constructed() == [defers, defers]


@pytest.mark.parametrize("deferrable", [False, True])
def test_an_explicit_argument_wins_over_both_options(monkeypatch, deferrable):
    configure(monkeypatch, str(not deferrable), str(not deferrable))

    assert constructed(deferrable=deferrable) == [deferrable, deferrable]


def test_the_provider_declares_no_default_so_unset_differs_from_false(monkeypatch):
    from airflow.configuration import conf

    from airflow_provider_cometapi.get_provider_info import get_provider_info

    configure(monkeypatch, None, None)
    option = get_provider_info()["config"]["cometapi"]["options"]["default_deferrable"]
    assert option["default"] is None
    assert conf.get("cometapi", "default_deferrable", fallback="") == ""


@pytest.mark.parametrize(
    ("operators", "cometapi", "deferrable", "defers"),
    [
        ("true", None, None, True),
        (None, "True", None, True),
        (None, "False", None, False),
        (None, None, None, False),
        (None, "True", False, False),
    ],
    ids=["operators-true", "cometapi-true", "cometapi-false", "unset", "explicit-false-wins"],
)
def test_a_dag_run_defers_as_the_config_decides(
    run_dag,
    tmp_path,
    cometapi_emulator,
    monkeypatch,
    triggerer_posts,
    operators,
    cometapi,
    deferrable,
    defers,
):
    configure(monkeypatch, operators, cometapi)
    option = "" if deferrable is None else f", deferrable={deferrable}"
    outcome = run_dag(
        f'CometImageEditOperator(task_id="edit", prompt="x", image={str(PAPER_BOAT)!r}, '
        f'output_path="{tmp_path}/out/"{option})'
    )

    assert outcome.state == "success"
    assert files_in(tmp_path / "out") == ["paper-boat-0.png"]
    assert len(cometapi_emulator.billed) == 1
    assert len(triggerer_posts()) == (1 if defers else 0)
