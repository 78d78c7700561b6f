"""Per-model rules in ``dag.test()`` runs: a SeedEdit batch end to end (URL answers, its usage
keys, its watermark default said once), and checks that refuse before anything is sent."""

from __future__ import annotations

import pytest

from airflow_provider_cometapi.samples import PAPER_BOAT
from tests.dagrun import batch_task

WATERMARK_NOTE = "adds a watermark unless watermark=False is set in extra_fields"


def inbox(tmp_path, count: int):
    folder = tmp_path / "inbox"
    folder.mkdir()
    for i in range(count):
        (folder / f"boat{i}.png").write_bytes(PAPER_BOAT.read_bytes())
    return folder


def test_a_seededit_batch_downloads_its_url_answers_and_says_the_watermark_default_once(
    run_dag, tmp_path, cometapi_emulator, capfd
):
    folder = inbox(tmp_path, 3)

    outcome = run_dag(
        batch_task(
            repr(f"{folder}/"),
            f"{tmp_path}/out/",
            model="doubao-seededit-3-0-i2i-250628",
            size="adaptive",
        )
    )

    assert outcome.state == "success"
    assert capfd.readouterr().out.count(WATERMARK_NOTE) == 1
    lines = outcome.report("batch")
    assert all(len(line["outputs"]) == 1 for line in lines)
    assert {frozenset(line["usage"]) for line in lines} == {
        frozenset({"generated_images", "output_tokens", "total_tokens"})
    }
    usage = outcome.xcom("batch", "usage")
    assert usage["total_tokens"] == sum(
        b["usage"]["total_tokens"] for b in cometapi_emulator.billed
    )
    assert len(cometapi_emulator.billed) == 3


def test_a_watermark_set_by_the_user_is_not_noted(run_dag, tmp_path, cometapi_emulator, capfd):
    folder = inbox(tmp_path, 1)

    outcome = run_dag(
        batch_task(
            repr(f"{folder}/"),
            f"{tmp_path}/out/",
            model="seedream-4-0-250828",
            extra_fields={"watermark": False},
        )
    )

    assert outcome.state == "success"
    assert WATERMARK_NOTE not in capfd.readouterr().out
    (request,) = cometapi_emulator.requests
    assert request["fields"]["watermark"] == "false"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"model": "gpt-image-2", "size": "10x10"}, "gpt-image-2"),
        (
            {"model": "seedream-4-0-250828", "extra_fields": {"guidance_scale": 11}},
            "guidance_scale",
        ),
    ],
)
def test_a_rule_refuses_before_anything_is_sent(
    run_dag, tmp_path, cometapi_emulator, capfd, options, named
):
    folder = inbox(tmp_path, 1)

    outcome = run_dag(batch_task(repr(f"{folder}/"), f"{tmp_path}/out/", **options))

    assert outcome.state == "failed"
    out = capfd.readouterr().out
    assert "CometAPIValidationError" in out
    assert named in out
    assert cometapi_emulator.requests == []


def test_a_model_the_table_does_not_know_gets_every_field_through(
    run_dag, tmp_path, cometapi_emulator
):
    folder = inbox(tmp_path, 1)

    outcome = run_dag(
        batch_task(
            repr(f"{folder}/"),
            f"{tmp_path}/out/",
            model="qwen-image-edit",
            size="adaptive",
            extra_fields={"seed": 7, "anything_new": "x"},
        )
    )

    (request,) = cometapi_emulator.requests
    assert {k: request["fields"].get(k) for k in ("size", "seed", "anything_new")} == {
        "size": "adaptive",
        "seed": "7",
        "anything_new": "x",
    }
    assert outcome.state in ("success", "failed")  # the server judges; the provider sent it
