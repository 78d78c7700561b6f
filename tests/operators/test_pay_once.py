"""A retried task never pays again for an edit whose outputs are complete; a batch resumes."""

from __future__ import annotations

import pytest

from airflow_provider_cometapi.samples import PAPER_BOAT
from tests.dagrun import files_in


def item_of(path) -> str:
    """The short id a batch item stored at ``path`` (as listed from its folder) is named by."""
    from airflow_provider_cometapi.pipeline.plans import item_id
    from airflow_provider_cometapi.storage.sources import StoredSource

    return item_id([StoredSource(f"file://{path}")])


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
    run_dag, tmp_path, cometapi_emulator, capfd, triggerer_posts, accounts, deferrable
):
    first = run_dag(single(tmp_path, deferrable=deferrable))
    accounts.check(first)
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.png")}
    second = run_dag(single(tmp_path, deferrable=deferrable))

    assert (first.state, second.state) == ("success", "success")
    assert len(cometapi_emulator.billed) == 1
    assert len(cometapi_emulator.requests) == 1
    assert second.xcom("edit") == first.xcom("edit")
    paid, reused = first.xcom("edit", "usage"), second.xcom("edit", "usage")
    assert (paid["requests"], paid["images"], paid["reused"]["requests"]) == (1, 2, 0)
    assert (reused["requests"], reused["images"], reused["total_tokens"]) == (0, 0, 0)
    tokens = ("input_tokens", "output_tokens", "total_tokens")
    assert {key: reused["reused"][key] for key in ("requests", "images", *tokens)} == {
        "requests": 1,
        "images": 2,
        **{key: paid[key] for key in tokens},
    }
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.png")} == written
    logs = "".join(capfd.readouterr())
    assert "Reused 2 image(s) from an earlier run (nothing paid)" in logs
    assert len(triggerer_posts()) == (1 if deferrable else 0)  # the first run's one edit
    accounts.check(second)


def test_the_key_is_scoped_to_the_task_instance_and_the_manifest_to_the_edit(
    run_dag, tmp_path, cometapi_emulator, accounts
):
    accounts.check(run_dag(single(tmp_path)))
    (tmp_path / "out" / "paper-boat-1.png").unlink()  # incomplete outputs: pay again
    accounts.check(run_dag(single(tmp_path)))

    keys = [r["idempotency_key"] for r in cometapi_emulator.requests]
    assert len(keys) == 2
    assert keys[0] != keys[1]  # another DAG run: a gateway could not answer with the old edit
    assert all(len(key) == 64 for key in keys)
    manifests = tmp_path / "out" / ".cometapi-manifests"
    assert len(list(manifests.iterdir())) == 1  # the same edit, recorded once
    assert files_in(tmp_path / "out") == ["paper-boat-0.png", "paper-boat-1.png"]


def test_a_changed_parameter_is_a_new_edit(run_dag, tmp_path, cometapi_emulator, accounts):
    accounts.check(run_dag(single(tmp_path, prompt="Add a ribbon")))
    (tmp_path / "out2").mkdir()
    changed = run_dag(single(tmp_path, prompt="Add a flag").replace("/out/", "/out2/"))

    assert changed.state == "success"
    assert len(cometapi_emulator.billed) == 2
    accounts.check(changed)
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


def test_a_retried_batch_pays_only_for_the_items_left(
    run_dag, tmp_path, cometapi_emulator, accounts
):
    folder = tmp_path / "inbox"
    folder.mkdir()
    for i in range(6):
        (folder / f"b{i}.png").write_bytes(BOAT)
    (folder / "b4.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")

    first = run_dag(batch(folder, tmp_path, max_concurrency=1))
    assert first.states() == {("batch", -1): "failed"}
    assert len(cometapi_emulator.billed) == 4  # b0-b3; b4 fails its checks, b5 never starts
    accounts.check(first)

    (folder / "b4.png").write_bytes(BOAT)  # fixed upstream; the task is retried
    second = run_dag(batch(folder, tmp_path, max_concurrency=1))

    assert second.state == "success"
    assert len(cometapi_emulator.billed) == 6
    items = second.report("batch")
    assert [item["reused"] for item in items] == [True, True, True, True, False, False]
    assert [item["paid"] for item in items] == [False, False, False, False, True, True]
    assert files_in(tmp_path / "out") == sorted(
        f"b{i}-{item_of(folder / f'b{i}.png')}-0.png" for i in range(6)
    )
    usage = second.xcom("batch", "usage")
    assert (usage["images"], usage["reused"]["images"]) == (2, 4)
    accounts.check(second)
