"""A retried task never pays again for an edit whose outputs are complete; a batch resumes."""

from __future__ import annotations

import pytest

from airflow_provider_cometapi.samples import PAPER_BOAT
from tests.dagrun import files_in

BOAT = PAPER_BOAT.read_bytes()


def single(tmp_path, prompt="Add a ribbon", deferrable=False):
    return (
        f'CometImageEditOperator(task_id="edit", prompt={prompt!r}, image={str(PAPER_BOAT)!r}, '
        f'n=2, output_path="{tmp_path}/out/", deferrable={deferrable})'
    )


def batch(folder, tmp_path, **extra):
    options = "".join(f", {key}={value!r}" for key, value in extra.items())
    return (
        "from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator\n"
        f'CometImageEditBatchOperator(task_id="batch", prompt="x", sources="{folder}/", '
        f'output_path="{tmp_path}/out/"{options})'
    )


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_a_second_run_reuses_complete_outputs_without_paying(
    run_dag, tmp_path, cometapi_emulator, capfd, triggerer_posts, deferrable
):
    first = run_dag(single(tmp_path, deferrable=deferrable))
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.png")}
    second = run_dag(single(tmp_path, deferrable=deferrable))

    assert (first.state, second.state) == ("success", "success")
    assert len(cometapi_emulator.billed) == 1
    assert len(cometapi_emulator.requests) == 1
    assert second.xcom("edit") == first.xcom("edit")
    assert second.xcom("edit", "usage") == {**first.xcom("edit", "usage"), "reused": True}
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.png")} == written
    assert "Not editing" in "".join(capfd.readouterr())
    assert len(triggerer_posts()) == (1 if deferrable else 0)  # the first run's one edit


def test_the_fingerprint_is_the_idempotency_key(run_dag, tmp_path, cometapi_emulator):
    run_dag(single(tmp_path))
    (tmp_path / "out" / "paper-boat-1.png").unlink()  # incomplete outputs: pay again
    run_dag(single(tmp_path))

    keys = [r["idempotency_key"] for r in cometapi_emulator.requests]
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert len(keys[0]) == 64
    manifests = tmp_path / "out" / ".cometapi-manifests"
    assert [p.name for p in manifests.iterdir()] == [f"{keys[0]}.json"]
    assert files_in(tmp_path / "out") == ["paper-boat-0.png", "paper-boat-1.png"]


def test_a_changed_parameter_is_a_new_edit(run_dag, tmp_path, cometapi_emulator):
    run_dag(single(tmp_path, prompt="Add a ribbon"))
    run_dag(single(tmp_path, prompt="Add a flag"))

    assert len(cometapi_emulator.billed) == 2
    keys = {r["idempotency_key"] for r in cometapi_emulator.requests}
    assert len(keys) == 2


def test_a_deduplicating_gateway_is_not_billed_twice_for_a_lost_answer(tmp_path, monkeypatch):
    from airflow_provider_cometapi.api.request import EditParams, edit_request
    from airflow_provider_cometapi.api.sinks import MemorySink
    from airflow_provider_cometapi.emulator import EmulatorServer
    from airflow_provider_cometapi.hooks.cometapi import CometApiHook

    with EmulatorServer(honour_idempotency=True) as gateway:
        monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", gateway.connection_json("key-12345"))
        request = edit_request(BOAT, EditParams(prompt="x", model="gpt-image-2"))
        with CometApiHook() as hook:
            first = hook.run_edit(request, MemorySink(), idempotency_key="fp-1")
            again = hook.run_edit(request, MemorySink(), idempotency_key="fp-1")
        assert again.usage == first.usage
        assert len(gateway.billed) == 1
        assert [r.get("replayed", False) for r in gateway.requests] == [False, True]


def test_a_retried_batch_pays_only_for_the_items_left(run_dag, tmp_path, cometapi_emulator):
    folder = tmp_path / "inbox"
    folder.mkdir()
    for i in range(6):
        (folder / f"b{i}.png").write_bytes(BOAT)
    (folder / "b4.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")

    first = run_dag(batch(folder, tmp_path, max_concurrency=1))
    assert first.states() == {("batch", -1): "failed"}
    assert len(cometapi_emulator.billed) == 4  # b0-b3; b4 fails its checks, b5 never starts

    (folder / "b4.png").write_bytes(BOAT)  # fixed upstream; the task is retried
    second = run_dag(batch(folder, tmp_path, max_concurrency=1))

    assert second.state == "success"
    assert len(cometapi_emulator.billed) == 6
    items = second.xcom("batch", "items")
    assert [item["reused"] for item in items] == [True, True, True, True, False, False]
    assert files_in(tmp_path / "out") == [f"b{i}-{i}-0.png" for i in range(6)]
    assert second.xcom("batch", "usage")["images"] == 6
