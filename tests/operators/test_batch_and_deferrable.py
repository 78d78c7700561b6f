"""The batch operator and deferrable mode, in ``dag.test()`` runs against the emulator."""

from __future__ import annotations

import base64
import re

import pytest

from airflow_provider_cometapi.samples import PAPER_BOAT, PAPER_BOAT_MASK
from tests.dagrun import batch_task, files_in
from tests.imaging import decode
from tests.naming import batch_output
from tests.s3 import visible_keys

BOAT = PAPER_BOAT.read_bytes()
BROKEN = b"\x89PNG\r\n\x1a\n broken"  # fails validation, so it is never sent
PROGRESS = re.compile(r"\] ((?:Editing|\d+/\d+ done:) [^\[]*?) +\[[\w.]*\.(\w+)\]")


def inbox(tmp_path, count):
    folder = tmp_path / "inbox"
    folder.mkdir()
    for i in range(count):
        (folder / f"boat{i:02d}.png").write_bytes(BOAT)
    (folder / "readme.txt").write_text("not an image")
    return folder


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_batch_edits_a_prefix_in_source_order(
    run_dag, tmp_path, cometapi_emulator, triggerer_posts, deferrable
):
    folder = inbox(tmp_path, 6)
    outcome = run_dag(
        batch_task(repr(f"{folder}/"), f"{tmp_path}/out/", max_concurrency=3, deferrable=deferrable)
    )

    assert outcome.state == "success"
    names = [batch_output(f"boat{i:02d}", f"file://{folder}/boat{i:02d}.png") for i in range(6)]
    expected = [f"file://{tmp_path}/out/{name}" for name in names]
    assert outcome.outputs("batch") == expected
    assert files_in(tmp_path / "out") == sorted(names)
    items = outcome.report("batch")
    assert [item["source"] for item in items] == [
        f"file://{folder}/boat{i:02d}.png" for i in range(6)
    ]
    assert all(item["error"] is None for item in items)
    usage = outcome.xcom("batch", "usage")
    billed = cometapi_emulator.billed
    assert len(billed) == 6
    assert usage["total_tokens"] == sum(b["usage"]["total_tokens"] for b in billed)
    assert usage["input_tokens_details"]["image_tokens"] == sum(
        b["usage"]["input_tokens_details"]["image_tokens"] for b in billed
    )
    assert (usage["images"], usage["requests"]) == (6, 6)
    assert len(triggerer_posts()) == (6 if deferrable else 0)


def test_batch_keeps_concurrency_within_the_bound(run_dag, tmp_path, cometapi_emulator):
    folder = inbox(tmp_path, 8)
    cometapi_emulator.set_fault("after_requests=2")  # the first answer waits for a second edit
    run_dag(batch_task(repr(f"{folder}/*.png"), f"{tmp_path}/out/", max_concurrency=2))

    assert cometapi_emulator.max_in_flight == 2
    assert len(cometapi_emulator.billed) == 8


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_batch_continue_writes_what_it_can_then_fails(
    run_dag, tmp_path, cometapi_emulator, capfd, triggerer_posts, deferrable
):
    folder = inbox(tmp_path, 3)
    (folder / "boat01.png").write_bytes(BROKEN)
    outcome = run_dag(
        batch_task(
            repr(f"{folder}/"),
            f"{tmp_path}/out/",
            on_item_failure="continue",
            deferrable=deferrable,
        )
    )

    assert outcome.states() == {("batch", -1): "failed"}
    assert "CometAPIBatchError" in "".join(capfd.readouterr())
    items = outcome.report("batch")
    assert [bool(item["error"]) for item in items] == [False, True, False]
    assert len(cometapi_emulator.requests) == 2  # the broken file was never sent
    assert len(triggerer_posts()) == (2 if deferrable else 0)
    assert items[1]["error"]["type"] == "CometAPIValidationError"
    assert files_in(tmp_path / "out") == sorted(
        [
            batch_output("boat00", f"file://{folder}/boat00.png"),
            batch_output("boat02", f"file://{folder}/boat02.png"),
        ]
    )


def test_batch_fail_stops_starting_new_items(run_dag, tmp_path, cometapi_emulator, capfd):
    folder = inbox(tmp_path, 5)
    cometapi_emulator.set_fault("status=400")
    outcome = run_dag(batch_task(repr(f"{folder}/"), f"{tmp_path}/out/", max_concurrency=1))

    assert outcome.states() == {("batch", -1): "failed"}
    items = outcome.report("batch")
    errors = sorted(item["error"]["type"] for item in items)
    assert errors == ["CometAPIBadRequestError"] + ["CometAPIBatchError"] * 4  # 4 not started
    assert len(cometapi_emulator.requests) == 1
    (sent,) = [item for item in items if item["error"]["type"] == "CometAPIBadRequestError"]
    assert (
        f"5 of 5 items failed (first: {sent['source']}: CometAPI refused" in capfd.readouterr().out
    )


def test_a_stopped_batch_starts_no_waiting_request(run_dag, tmp_path, cometapi_emulator):
    folder = inbox(tmp_path, 4)
    cometapi_emulator.set_latency(6.0)  # far longer than the timeout, which far exceeds set-up
    outcome = run_dag(
        batch_task(repr(f"{folder}/"), f"{tmp_path}/out/", max_concurrency=1)[:-1]
        + ", execution_timeout=__import__('datetime').timedelta(seconds=3))"
    )

    assert outcome.states() == {("batch", -1): "failed"}
    # the timeout struck while the first request was on the wire and the next item waited
    assert len(cometapi_emulator.requests) == 1


def test_batch_of_inline_base64_sources_with_a_mask(run_dag, tmp_path, cometapi_emulator):
    encoded = base64.b64encode(BOAT).decode()
    outcome = run_dag(
        batch_task(
            repr([encoded, str(PAPER_BOAT)]),
            f"{tmp_path}/out/",
            mask=str(PAPER_BOAT_MASK),
        )
    )

    assert outcome.state == "success"
    assert [p.rsplit("/", 1)[1] for p in outcome.outputs("batch")] == [
        batch_output("image", encoded),
        batch_output("paper-boat", str(PAPER_BOAT)),
    ]
    assert all(r["files"][-1]["field"] == "mask" for r in cometapi_emulator.requests)


def test_deferrable_single_edit_pushes_the_same_xcoms(
    run_dag, tmp_path, cometapi_emulator, triggerer_posts
):
    encoded = base64.b64encode(BOAT).decode()
    outcome = run_dag(
        f"""
        CometImageEditOperator(
            task_id="edit", prompt="Add a ribbon", image={encoded!r}, mask={str(PAPER_BOAT_MASK)!r},
            n=2, output_path="{tmp_path}/out/", deferrable=True,
        )
        """
    )

    assert outcome.state == "success"
    assert outcome.xcom("edit") == [
        f"file://{tmp_path}/out/image-0.png",
        f"file://{tmp_path}/out/image-1.png",
    ]
    usage = outcome.xcom("edit", "usage")
    (billed,) = cometapi_emulator.billed
    assert usage == {
        **billed["usage"],
        "model": "gpt-image-2",
        "requests": 1,
        "images": 2,
        "request_id": billed["request_id"],
        "reused": {"requests": 0, "images": 0},
    }
    assert len(triggerer_posts()) == 1
    assert decode((tmp_path / "out" / "image-1.png").read_bytes()).size == (512, 384)
    staging = tmp_path / "out" / ".cometapi-staging"
    assert [p for p in staging.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("operator", ["single", "batch"])
def test_a_deferrable_run_leaves_no_empty_folder(
    run_dag, tmp_path, cometapi_emulator, triggerer_posts, operator
):
    encoded = base64.b64encode(BOAT).decode()  # staged as a copy, beside the plan
    output = f"{tmp_path}/out/"
    body = (
        f"CometImageEditOperator(task_id='edit', prompt='x', image={encoded!r}, "
        f"mask={str(PAPER_BOAT_MASK)!r}, output_path={output!r}, deferrable=True)"
        if operator == "single"
        else batch_task(repr([encoded, str(PAPER_BOAT)]), output, deferrable=True)
    )
    outcome = run_dag(body)

    assert outcome.state == "success"
    assert len(triggerer_posts()) == (1 if operator == "single" else 2)
    folders = [path for path in (tmp_path / "out").rglob("*") if path.is_dir()]
    assert [path for path in folders if not any(path.iterdir())] == []
    assert not (tmp_path / "out" / ".cometapi-staging").exists()


def test_deferrable_edit_fails_with_the_typed_error(
    run_dag, tmp_path, cometapi_emulator, capfd, triggerer_posts
):
    cometapi_emulator.set_fault("status=400")
    outcome = run_dag(
        f'CometImageEditOperator(task_id="edit", prompt="x", image={str(PAPER_BOAT)!r}, '
        f'output_path="{tmp_path}/out/", deferrable=True)'
    )

    assert outcome.states() == {("edit", -1): "failed"}
    assert "CometAPIBadRequestError" in "".join(capfd.readouterr())
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.png"))
    assert len(triggerer_posts()) == len(cometapi_emulator.requests) == 1


def test_deferrable_needs_an_output_path(run_dag, cometapi_emulator, capfd):
    outcome = run_dag(
        f'CometImageEditOperator(task_id="edit", prompt="x", image={str(PAPER_BOAT)!r}, '
        "deferrable=True)"
    )

    assert outcome.states() == {("edit", -1): "failed"}
    assert "needs output_path" in "".join(capfd.readouterr())
    assert cometapi_emulator.requests == []


@pytest.mark.parametrize("operator", ["single", "batch"])
def test_deferrable_refuses_a_memory_output_path(run_dag, cometapi_emulator, capfd, operator):
    encoded = base64.b64encode(BOAT).decode()  # an in-memory source would be staged: fine
    output = "memory://cometapi-deferred/out/"
    body = (
        f"CometImageEditOperator(task_id='edit', prompt='x', image={encoded!r}, "
        f"output_path={output!r}, deferrable=True)"
        if operator == "single"
        else batch_task(repr([encoded]), output, deferrable=True).replace("'batch'", "'edit'")
    )
    outcome = run_dag(body)

    assert outcome.states() == {("edit", -1): "failed"}
    logs = "".join(capfd.readouterr())
    assert "CometAPIValidationError" in logs
    assert "triggerer, another process" in logs
    assert "output_path 'memory://cometapi-deferred/out/'" in logs
    assert cometapi_emulator.requests == []


def test_deferrable_s3_batch(run_dag, s3, cometapi_emulator, triggerer_posts):
    s3.create_bucket(Bucket="cometapi-deferred")
    for i in range(3):
        s3.put_object(Bucket="cometapi-deferred", Key=f"in/b{i}.png", Body=BOAT)
    outcome = run_dag(
        batch_task(
            repr("s3://s3_test@cometapi-deferred/in/"),
            "s3://s3_test@cometapi-deferred/out/",
            deferrable=True,
            max_concurrency=3,
        )
    )

    assert outcome.state == "success"
    keys = visible_keys(s3, "cometapi-deferred", "out/")
    assert keys == [
        "out/" + batch_output(f"b{i}", f"s3://s3_test@cometapi-deferred/in/b{i}.png")
        for i in range(3)
    ]
    assert len(triggerer_posts()) == 3


def test_deferrable_continue_skips_a_bad_inline_input(
    run_dag, tmp_path, cometapi_emulator, triggerer_posts
):
    encoded = base64.b64encode(BOAT).decode()
    outcome = run_dag(
        batch_task(
            repr([encoded, "data:image/png;base64,@@@@", str(PAPER_BOAT)]),
            f"{tmp_path}/out/",
            on_item_failure="continue",
            deferrable=True,
        )
    )

    assert outcome.states() == {("batch", -1): "failed"}
    items = outcome.report("batch")
    assert [bool(item["error"]) for item in items] == [False, True, False]
    assert items[1]["error"]["type"] == "CometAPIValidationError"
    assert len(cometapi_emulator.billed) == 2
    assert len(triggerer_posts()) == 2


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_batch_logs_the_same_progress_lines_on_worker_and_triggerer(
    run_dag, tmp_path, cometapi_emulator, capfd, triggerer_posts, deferrable
):
    folder = inbox(tmp_path, 3)
    (folder / "boat01.png").write_bytes(BROKEN)
    cometapi_emulator.set_fault("status=429;retry_after=0;times=1")  # each edit's first attempt
    outcome = run_dag(
        batch_task(
            repr(f"{folder}/"),
            f"{tmp_path}/out/",
            max_concurrency=1,
            on_item_failure="continue",
            deferrable=deferrable,
        )
    )

    assert outcome.states() == {("batch", -1): "failed"}
    assert [item["retries"] for item in outcome.report("batch")] == [1, 0, 1]
    logger = "CometImageEditTrigger" if deferrable else "CometImageEditBatchOperator"
    lines = PROGRESS.findall("".join(capfd.readouterr()))
    assert {name for _, name in lines} == {logger}
    # a start line and an end line: a batch this quick has no progress line between them
    report = outcome.xcom("batch", "report")
    assert [line for line, _ in lines] == [
        f"Editing 3 item(s), up to 1 in flight; report: {report}",
        "3/3 done: 2 edited, 0 reused, 2 retried, 1 failed",
    ]
    assert len(cometapi_emulator.requests) == 4
    assert len(triggerer_posts()) == (4 if deferrable else 0)


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_a_refused_key_stops_a_continue_batch(
    run_dag, tmp_path, cometapi_emulator, triggerer_posts, deferrable
):
    """No other item could succeed with the same key: none sends a request after the 401."""
    folder = inbox(tmp_path, 6)
    cometapi_emulator.set_file_faults({"boat00.png": "status=401"})
    outcome = run_dag(
        batch_task(
            repr(f"{folder}/"),
            f"{tmp_path}/out/",
            max_concurrency=1,
            on_item_failure="continue",
            deferrable=deferrable,
        )
    )

    assert outcome.states() == {("batch", -1): "failed"}
    errors = [item["error"]["type"] for item in outcome.report("batch")]
    assert errors == ["CometAPIAuthError"] + ["CometAPIBatchError"] * 5
    assert len(cometapi_emulator.requests) == 1
    assert len(triggerer_posts()) == (1 if deferrable else 0)


@pytest.mark.parametrize(
    ("sources", "shown"),
    [
        ("None", "sources is None"),
        ("'None'", "sources is None"),  # what a template that rendered None gives
        ("'{folder}/readme.txt/'", "sources: cannot list"),  # a file, not a folder
    ],
    ids=["None", "rendered None", "not a folder"],
)
def test_bad_sources_are_typed_errors_before_any_request(
    run_dag, tmp_path, cometapi_emulator, capfd, sources, shown
):
    folder = inbox(tmp_path, 1)
    outcome = run_dag(batch_task(sources.format(folder=folder), f"{tmp_path}/out/"))

    assert outcome.states() == {("batch", -1): "failed"}
    logs = "".join(capfd.readouterr())
    assert shown in logs
    assert "CometAPISourceError" in logs or "CometAPIValidationError" in logs
    assert cometapi_emulator.requests == []
