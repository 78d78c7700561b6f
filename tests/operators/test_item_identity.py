"""Which edit is which: names from what an item is, no silent overwrite, reuse by content, keys
scoped to the task instance, and usage that reports what was paid apart from what was reused."""

from __future__ import annotations

import pytest

from airflow_provider_cometapi.samples import PAPER_BOAT
from tests.dagrun import files_in
from tests.naming import batch_output
from tests.s3 import vanish_while_paying

BOAT = PAPER_BOAT.read_bytes()


def mapped(task_id: str, prompt: str, out, **extra) -> str:
    options = "".join(f", {key}={value!r}" for key, value in extra.items())
    return (
        f"CometImageEditOperator.partial(task_id={task_id!r}, prompt={prompt!r}, "
        f'output_path="{out}/"{options}).expand(image=[{str(PAPER_BOAT)!r}] * 2)'
    )


def single(out, **extra) -> str:
    options = "".join(f", {key}={value!r}" for key, value in extra.items())
    return (
        f'CometImageEditOperator(task_id="edit", prompt="Add a ribbon", '
        f'image={str(PAPER_BOAT)!r}, output_path="{out}/"{options})'
    )


def batch(folder, out, **extra) -> str:
    options = "".join(f", {key}={value!r}" for key, value in extra.items())
    return (
        "from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator\n"
        f'CometImageEditBatchOperator(task_id="batch", prompt="x", sources="{folder}/", '
        f'output_path="{out}/"{options})'
    )


def inbox(tmp_path, names):
    folder = tmp_path / "inbox"
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / f"{name}.png").write_bytes(BOAT)
    return folder


# 1. two tasks, one folder ------------------------------------------------------------------


def test_two_tasks_sharing_a_folder_never_overwrite_each_other(
    run_dag, tmp_path, cometapi_emulator, capfd, accounts
):
    out = tmp_path / "out"
    outcome = run_dag(
        f"{mapped('ribbon', 'Add a ribbon', out)}\n{mapped('flag', 'Add a flag', out)}"
    )

    states = outcome.states()  # per map index, whichever task ran first wrote; the other failed
    winners = {
        i: next(t for t in ("ribbon", "flag") if states[(t, i)] == "success") for i in (0, 1)
    }
    assert sorted(states.values()) == ["failed", "failed", "success", "success"]
    assert len(cometapi_emulator.billed) == 2  # the task that would overwrite paid nothing
    assert files_in(out) == ["paper-boat-0-0.png", "paper-boat-1-0.png"]
    logs = "".join(capfd.readouterr())
    assert "CometAPIOutputConflictError" in logs
    assert f"{out}/paper-boat-0-0.png already exists and is not an output of this edit" in logs
    assert "replace=True" in logs
    for i, winner in winners.items():  # each success points at its own image
        assert outcome.xcom(winner, map_index=i) == [f"file://{out}/paper-boat-{i}-0.png"]
    accounts.check(outcome)


def test_replace_overwrites_on_purpose(run_dag, tmp_path, cometapi_emulator, accounts):
    out = tmp_path / "out"
    first = run_dag(mapped("ribbon", "Add a ribbon", out))
    before = (out / "paper-boat-0-0.png").read_bytes()
    accounts.check(first)
    second = run_dag(mapped("flag", "Add a flag", out, replace=True))

    assert (first.state, second.state) == ("success", "success")
    assert len(cometapi_emulator.billed) == 4
    assert files_in(out) == ["paper-boat-0-0.png", "paper-boat-1-0.png"]
    assert (out / "paper-boat-0-0.png").read_bytes() != before
    accounts.check(second)


def test_a_writer_that_gets_there_first_keeps_the_later_paid_outputs(
    tmp_path, cometapi_conn, cometapi_emulator
):
    from airflow_provider_cometapi.api.request import EditParams
    from airflow_provider_cometapi.hooks.cometapi import CometApiHook
    from airflow_provider_cometapi.pipeline.item import ItemJob
    from airflow_provider_cometapi.pipeline.plans import ItemPlan
    from airflow_provider_cometapi.pipeline.scope import TaskScope
    from airflow_provider_cometapi.storage.sources import StoredSource

    out = tmp_path / "out"
    plan = ItemPlan([StoredSource(str(PAPER_BOAT))], None, f"{out}/", None, -1, "boat")
    scope = TaskScope("dag", "run", "edit", -1, 1)
    job = ItemJob(0, plan, EditParams(prompt="x", model="gpt-image-2"), scope, _Log())
    assert job.prepare() is None  # nothing in the way: the edit is to be sent
    (out / "paper-boat-0.png").write_bytes(b"another writer's image")  # between check and commit

    with CometApiHook() as hook:
        result = job.finish(job.send(hook.run_edit))

    assert result.error is not None
    assert result.error["type"] == "CometAPIOutputConflictError"
    assert result.paid  # the bill stands, and is reported
    assert result.usage == cometapi_emulator.billed[0]["usage"]
    assert (out / "paper-boat-0.png").read_bytes() == b"another writer's image"
    (kept,) = [name for name in files_in(out) if ".kept-" in name]
    assert kept in result.error["message"]
    assert (out / kept).read_bytes()[:4] == b"\x89PNG"


class _Log:
    def info(self, *args):
        pass

    warning = info


# 2. reuse checks content ----------------------------------------------------------------


@pytest.mark.parametrize("same_size", [False, True], ids=["other bytes", "one byte flipped"])
def test_reuse_needs_the_recorded_content_not_just_the_names(
    run_dag, tmp_path, cometapi_emulator, capfd, accounts, same_size
):
    out = tmp_path / "out"
    accounts.check(run_dag(single(out)))
    edited = out / "paper-boat-0.png"
    data = bytearray(edited.read_bytes())
    data[-20] ^= 0xFF
    edited.write_bytes(bytes(data) if same_size else BOAT)  # another edit overwrote it

    again = run_dag(single(out))

    assert again.states() == {("edit", -1): "failed"}
    assert len(cometapi_emulator.billed) == 1
    logs = "".join(capfd.readouterr())
    why = "was changed after its manifest was written" if same_size else "bytes, not the"
    assert why in logs
    assert "already exists and is not an output of this edit" in logs
    accounts.check(again)

    fresh = run_dag(single(out, replace=True))
    assert fresh.state == "success"
    assert len(cometapi_emulator.billed) == 2
    accounts.check(fresh)


# 3. identity, not position ------------------------------------------------------------------


def test_a_growing_inbox_pays_only_for_the_new_image(
    run_dag, tmp_path, cometapi_emulator, accounts
):
    folder = inbox(tmp_path, [f"b{i:02d}" for i in range(10)])
    out = tmp_path / "out"
    first = run_dag(batch(folder, out, max_concurrency=4))
    names = set(files_in(out))
    accounts.check(first)

    inbox(tmp_path, ["a00"])  # sorts first
    second = run_dag(batch(folder, out, max_concurrency=4))

    assert second.state == "success"
    assert len(cometapi_emulator.billed) == 11
    assert set(files_in(out)) == names | {batch_output("a00", f"file://{folder}/a00.png")}
    items = second.report("batch")
    assert [item["reused"] for item in items] == [False] + [True] * 10
    usage = second.xcom("batch", "usage")
    assert (usage["requests"], usage["reused"]["requests"]) == (1, 10)
    accounts.check(second)

    (folder / "b03.png").unlink()
    third = run_dag(batch(folder, out, max_concurrency=4))
    assert third.state == "success"
    assert len(cometapi_emulator.billed) == 11
    accounts.check(third)


def test_two_sources_with_one_stem_get_two_names(run_dag, tmp_path, cometapi_emulator):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "boat.png").write_bytes(BOAT)
    sources = [f"{tmp_path}/a/boat.png", f"{tmp_path}/b/boat.png"]
    outcome = run_dag(
        "from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator\n"
        f'CometImageEditBatchOperator(task_id="batch", prompt="x", sources={sources!r}, '
        f'output_path="{tmp_path}/out/")'
    )

    assert outcome.state == "success"
    assert files_in(tmp_path / "out") == sorted(batch_output("boat", s) for s in sources)


# 4. checked before paying ------------------------------------------------------------------


def test_an_output_path_under_a_file_fails_before_paying(
    run_dag, tmp_path, cometapi_emulator, capfd
):
    (tmp_path / "taken").write_text("a file, not a folder")
    outcome = run_dag(single(tmp_path / "taken" / "out"))

    assert outcome.states() == {("edit", -1): "failed"}
    assert cometapi_emulator.requests == []
    logs = "".join(capfd.readouterr())
    assert "CometAPIOutputError" in logs
    assert "Part of the path is an existing file" in logs


@pytest.mark.parametrize(
    ("output", "hint"),
    [
        ("s3://s3_test@no-such-bucket/out", "The bucket does not exist"),
        ("s3://no_such_conn@cometapi-out/out", "The connection does not exist"),
    ],
    ids=["missing bucket", "unknown connection"],
)
def test_an_unusable_s3_output_fails_before_paying(
    run_dag, s3, cometapi_emulator, capfd, output, hint
):
    s3.create_bucket(Bucket="cometapi-out")
    outcome = run_dag(single(output))

    assert outcome.states() == {("edit", -1): "failed"}
    assert cometapi_emulator.requests == []
    assert hint in "".join(capfd.readouterr())


# 5 and 6. usage and keys over a task instance's tries -----------------------------------------


def test_a_retry_counts_what_this_task_instance_paid_once_and_sends_the_same_keys(
    run_dag, tmp_path, cometapi_conn, cometapi_emulator, no_sleeping, accounts
):
    cometapi_conn(max_retries=0)
    folder = inbox(tmp_path, ["b0", "b1"])
    cometapi_emulator.set_file_faults({"b1": "status=500;times=1"})  # b1 fails in try 1 only
    outcome = run_dag(
        batch(folder, tmp_path / "out", on_item_failure="continue")[:-1]
        + ", retries=1, retry_delay=__import__('datetime').timedelta(0))"
    )

    assert outcome.state == "success"
    assert len(cometapi_emulator.billed) == 2
    items = outcome.report("batch")
    assert [(item["reused"], item["paid"]) for item in items] == [(True, True), (False, True)]
    usage = outcome.xcom("batch", "usage")
    assert (usage["requests"], usage["reused"]["requests"]) == (2, 0)  # b0 paid in try 1
    accounts.check(outcome)
    b1_keys = [r["idempotency_key"] for r in cometapi_emulator.requests if _uploads(r, "b1")]
    assert len(b1_keys) == 2
    assert b1_keys[0] == b1_keys[1]  # every try of the task instance sends the same key


def test_reuse_outputs_false_pays_for_a_fresh_edit_under_a_new_key(
    run_dag, tmp_path, cometapi_emulator, capfd, accounts
):
    out = tmp_path / "out"
    first = run_dag(single(out))
    accounts.check(first)
    second = run_dag(single(out, reuse_outputs=False))

    assert (first.state, second.state) == ("success", "success")
    assert len(cometapi_emulator.billed) == 2
    keys = [r["idempotency_key"] for r in cometapi_emulator.requests]
    assert keys[0] != keys[1]
    usage = second.xcom("edit", "usage")
    assert (usage["requests"], usage["reused"]["requests"]) == (1, 0)
    assert "Reused" not in "".join(capfd.readouterr())
    accounts.check(second)


def _uploads(record: dict, stem: str) -> bool:
    return any(f["filename"].startswith(f"{stem}.") for f in record["files"])


def test_an_edit_paid_in_an_earlier_try_stays_in_usage_though_its_outputs_never_landed(
    run_dag, tmp_path, cometapi_emulator, latency_gate, capfd, accounts
):
    import threading

    out = tmp_path / "out"
    cometapi_emulator.set_latency(1.0)  # held by the gate while another writer takes the name

    def another_writer():
        latency_gate.wait_for_pauses(1)
        out.mkdir(exist_ok=True)
        (out / "paper-boat-0.png").write_bytes(b"another writer's image")
        latency_gate.release()

    writer = threading.Thread(target=another_writer)
    writer.start()
    outcome = run_dag(
        single(out)[:-1] + ", retries=1, retry_delay=__import__('datetime').timedelta(0))"
    )
    writer.join()

    assert outcome.states() == {("edit", -1): "failed"}  # try 2 refuses the taken name, unpaid
    assert len(cometapi_emulator.billed) == 1
    usage = outcome.xcom("edit", "usage")  # try 2's: try 1's payment, from the ledger
    assert (usage["requests"], usage["images"]) == (1, 1)
    assert usage["total_tokens"] == cometapi_emulator.billed[0]["usage"]["total_tokens"]
    accounts.check(outcome)
    (kept,) = [name for name in files_in(out) if ".kept-" in name]
    logs = "".join(capfd.readouterr())
    assert f"its outputs are kept at file://{out}/{kept}" in logs


def test_a_storage_error_while_the_answer_streams_still_reports_the_bill(
    run_dag, s3, cometapi_emulator, latency_gate, capfd, accounts
):

    s3.create_bucket(Bucket="cometapi-vanishing")
    cometapi_emulator.set_latency(1.0)  # held by the gate while the bucket goes away

    vanishing = vanish_while_paying(s3, "cometapi-vanishing", latency_gate)
    outcome = run_dag(single("s3://s3_test@cometapi-vanishing/out"))
    vanishing.join()

    assert outcome.states() == {("edit", -1): "failed"}
    assert "CometAPIOutputError" in "".join(capfd.readouterr())
    usage = outcome.xcom("edit", "usage")  # the answer was read whole: its bill is known
    assert (usage["requests"], usage["images"]) == (1, 1)
    accounts.check(outcome)


BUCKET_RETURNS = """
BUCKET = {bucket!r}

def bucket_returns(context):  # between the tries: the storage is back
    import json, os
    from tests.s3 import client
    endpoint = json.loads(os.environ["AIRFLOW_CONN_S3_TEST"])["extra"]["endpoint_url"]
    client(endpoint).create_bucket(Bucket=BUCKET)
"""


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferrable"])
def test_a_paid_edit_that_storage_refused_is_delivered_by_the_retry_without_paying_again(
    run_dag, s3, cometapi_emulator, latency_gate, capfd, accounts, deferrable
):
    import hashlib
    import json

    bucket = f"cometapi-comes-back-{'deferred' if deferrable else 'worker'}"  # each test its own
    s3.create_bucket(Bucket=bucket)
    cometapi_emulator.set_latency(1.0)  # held by the gate while the bucket goes away

    vanishing = vanish_while_paying(s3, bucket, latency_gate)
    task = (
        single(
            f"s3://s3_test@{bucket}/out",
            deferrable=deferrable,
            retries=1,
        )[:-1]
        + ", retry_delay=__import__('datetime').timedelta(0), on_retry_callback=bucket_returns)"
    )
    outcome = run_dag(BUCKET_RETURNS.format(bucket=bucket) + task)
    vanishing.join()

    assert outcome.state == "success"
    assert len(cometapi_emulator.requests) == len(cometapi_emulator.billed) == 1  # paid once
    logs = "".join(capfd.readouterr())
    assert "Kept the 1 paid image(s)" in logs
    assert "Delivering the 1 image(s)" in logs
    (uri,) = outcome.xcom("edit")
    key = uri.split(f"{bucket}/", 1)[1]
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    manifests = s3.list_objects_v2(Bucket=bucket, Prefix="out/.cometapi-manifests/")
    (manifest,) = [
        json.loads(s3.get_object(Bucket=bucket, Key=m["Key"])["Body"].read())
        for m in manifests["Contents"]
    ]
    assert manifest["files"][0]["sha256"] == hashlib.sha256(body).hexdigest()
    usage = outcome.xcom("edit", "usage")
    assert (usage["requests"], usage["images"]) == (1, 1)  # the one payment, counted once
    accounts.check(outcome)
