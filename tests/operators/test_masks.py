"""Masks that hold: drift measured on every masked edit, composites that keep every kept pixel,
and outputs over the allowed drift kept under ``rejected/``, never paid for twice; in
``dag.test()`` runs against the emulator in its drift mode."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from PIL import Image

from airflow_provider_cometapi.hooks.cometapi import CometApiHook
from airflow_provider_cometapi.samples import PAPER_BOAT, PAPER_BOAT_MASK
from tests.dagrun import batch_task, files_in
from tests.imaging import decode

DRIFT = 0.3
WHEN = datetime(2026, 1, 1, tzinfo=timezone.utc)
KEPT = list(Image.open(PAPER_BOAT_MASK).getchannel("A").getdata())
KEPT_PIXELS = sum(1 for alpha in KEPT if alpha == 255)
CHANGED = round(DRIFT * KEPT_PIXELS)


def edit_task(output: str, **extra: object) -> str:
    options = "".join(f", {key}={value!r}" for key, value in extra.items())
    return (
        "CometImageEditOperator(task_id='edit', prompt='Add a ribbon', "
        f"image={str(PAPER_BOAT)!r}, mask={str(PAPER_BOAT_MASK)!r}, "
        f"output_path={output!r}{options})"
    )


def pixels(data: bytes) -> list[tuple[int, ...]]:
    return list(decode(data).convert("RGB").getdata())


SOURCE = pixels(PAPER_BOAT.read_bytes())


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "triggerer"])
def test_preserve_unmasked_keeps_every_kept_pixel_and_reports_the_drift_it_undid(
    run_dag, tmp_path, cometapi_emulator, triggerer_posts, deferrable
):
    cometapi_emulator.set_drift(DRIFT)

    outcome = run_dag(edit_task(f"{tmp_path}/out/", preserve_unmasked=True, deferrable=deferrable))

    assert outcome.state == "success"
    assert len(triggerer_posts()) == (1 if deferrable else 0)
    (written,) = outcome.xcom("edit")
    got = pixels((tmp_path / "out" / written.rpartition("/")[2]).read_bytes())
    edited = [i for i, alpha in enumerate(KEPT) if alpha == 0]
    assert all(got[i] == SOURCE[i] for i, alpha in enumerate(KEPT) if alpha == 255)
    assert all(got[i] != SOURCE[i] for i in edited)  # the model's tint, where the mask is open
    (check,) = outcome.xcom("edit", "checks")
    assert check == {
        "output": written,
        "kept_pixels": KEPT_PIXELS,
        "changed_pixels": CHANGED,
        "changed_fraction": round(CHANGED / KEPT_PIXELS, 6),
        "mean_abs_diff": check["mean_abs_diff"],
        "tolerance": 0,
        "composited": True,
        "resized_from": None,
        "rejected": False,
    }
    assert check["mean_abs_diff"] > 0


def test_without_preserve_the_models_pixels_are_written_and_their_drift_reported(
    run_dag, tmp_path, cometapi_emulator
):
    cometapi_emulator.set_drift(DRIFT)

    outcome = run_dag(edit_task(f"{tmp_path}/out/"))

    assert outcome.state == "success"
    (written,) = outcome.xcom("edit")
    got = pixels((tmp_path / "out" / written.rpartition("/")[2]).read_bytes())
    moved = sum(1 for i, alpha in enumerate(KEPT) if alpha == 255 and got[i] != SOURCE[i])
    (check,) = outcome.xcom("edit", "checks")
    assert moved == check["changed_pixels"] == CHANGED
    assert check["composited"] is False


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "triggerer"])
def test_a_batch_reports_each_outputs_drift_and_sums_them_up(
    run_dag, tmp_path, cometapi_emulator, deferrable
):
    cometapi_emulator.set_drift(DRIFT)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a", "b"):
        (inbox / f"{name}.png").write_bytes(PAPER_BOAT.read_bytes())

    outcome = run_dag(
        batch_task(
            repr(f"{inbox}/"),
            f"{tmp_path}/out/",
            mask=str(PAPER_BOAT_MASK),
            n=2,
            deferrable=deferrable,
        )
    )

    assert outcome.state == "success"
    lines = outcome.report("batch")
    checks = [check for line in lines for check in line["checks"]]
    assert [check["output"] for check in checks] == [o for line in lines for o in line["outputs"]]
    assert {check["changed_pixels"] for check in checks} == {CHANGED}
    assert outcome.xcom("batch", "summary")["checks"] == {
        "outputs": 4,
        "composited": 0,
        "rejected": 0,
        "kept_pixels": 4 * KEPT_PIXELS,
        "changed_pixels": 4 * CHANGED,
        "changed_fraction": round(CHANGED / KEPT_PIXELS, 6),
        "max_changed_fraction": round(CHANGED / KEPT_PIXELS, 6),
    }


def test_an_unmasked_batch_has_no_checks(run_dag, tmp_path, cometapi_emulator):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.png").write_bytes(PAPER_BOAT.read_bytes())

    outcome = run_dag(batch_task(repr(f"{inbox}/"), f"{tmp_path}/out/"))

    assert outcome.state == "success"
    assert "checks" not in outcome.report("batch")[0]
    assert "checks" not in outcome.xcom("batch", "summary")


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "triggerer"])
def test_an_edit_over_the_drift_limit_is_kept_under_rejected_and_never_paid_again(
    run_dag, tmp_path, cometapi_emulator, capfd, deferrable
):
    cometapi_emulator.set_drift(DRIFT)
    body = edit_task(f"{tmp_path}/out/", max_outside_mask_drift=0.1, deferrable=deferrable)

    first = run_dag(body, dag_id=f"rejects_{deferrable}", logical_date=WHEN)

    assert first.state == "failed"
    assert "CometAPIQualityError" in capfd.readouterr().out
    assert files_in(tmp_path / "out") == ["rejected"]
    (edit,) = files_in(tmp_path / "out" / "rejected")  # a folder per edit: its fingerprint
    (kept,) = files_in(tmp_path / "out" / "rejected" / edit)
    raw = pixels((tmp_path / "out" / "rejected" / edit / kept).read_bytes())
    assert sum(1 for i, a in enumerate(KEPT) if a == 255 and raw[i] != SOURCE[i]) == CHANGED
    (check,) = first.xcom("edit", "checks")
    where = f"file://{tmp_path}/out/rejected/{edit}/{kept}"
    assert (check["rejected"], check["output"]) == (True, where)
    usage = first.xcom("edit", "usage")
    (billed,) = cometapi_emulator.billed
    assert (usage["requests"], usage["total_tokens"]) == (1, billed["usage"]["total_tokens"])

    again = run_dag(body, dag_id=f"rejects_{deferrable}", logical_date=WHEN)

    assert again.state == "failed"
    assert len(cometapi_emulator.billed) == 1  # the verdict stands; nothing is paid again
    assert "refused before" in capfd.readouterr().out
    usage = again.xcom("edit", "usage")  # the first try's bill, counted once
    assert (usage["requests"], usage["total_tokens"]) == (1, billed["usage"]["total_tokens"])
    assert again.xcom("edit", "checks") == [check]


def test_an_edit_within_the_drift_limit_is_written(run_dag, tmp_path, cometapi_emulator):
    cometapi_emulator.set_drift(DRIFT)

    outcome = run_dag(edit_task(f"{tmp_path}/out/", max_outside_mask_drift=0.5))

    assert outcome.state == "success"
    assert files_in(tmp_path / "out") == ["paper-boat-0.png"]


def test_a_batch_under_continue_goes_on_past_a_rejected_item(run_dag, tmp_path, cometapi_emulator):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a", "b"):
        (inbox / f"{name}.png").write_bytes(PAPER_BOAT.read_bytes())
    cometapi_emulator.set_drift(DRIFT)

    outcome = run_dag(
        batch_task(
            repr(f"{inbox}/"),
            f"{tmp_path}/out/",
            mask=str(PAPER_BOAT_MASK),
            max_outside_mask_drift=0.1,
            on_item_failure="continue",
            max_concurrency=1,
        )
    )

    assert outcome.state == "failed"
    lines = outcome.report("batch")
    assert [line["error"]["type"] for line in lines] == ["CometAPIQualityError"] * 2
    assert all(line["paid"] and not line["outputs"] for line in lines)
    assert len(cometapi_emulator.billed) == 2
    assert outcome.xcom("batch", "summary")["checks"]["rejected"] == 2
    edits = files_in(tmp_path / "out" / "rejected")
    assert [len(files_in(tmp_path / "out" / "rejected" / edit)) for edit in edits] == [1, 1]


def test_the_hook_composites_in_memory_and_measures_the_drift(cometapi_conn, cometapi_emulator):
    cometapi_conn()
    cometapi_emulator.set_drift(DRIFT)

    with CometApiHook() as hook:
        result = hook.edit_image(
            str(PAPER_BOAT), "Add a ribbon", mask=str(PAPER_BOAT_MASK), preserve_unmasked=True
        )

    (image,) = result.images
    assert image.drift is not None
    assert image.drift.changed_pixels == CHANGED
    got = pixels(image.data)
    assert all(got[i] == SOURCE[i] for i, alpha in enumerate(KEPT) if alpha == 255)
    assert result.to_xcom()["images"][0]["drift"]["changed_pixels"] == CHANGED


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"feather": -1}, "feather"),
        ({"max_outside_mask_drift": 1.5}, "max_outside_mask_drift"),
        ({"preserve_unmasked": "yes"}, "preserve_unmasked"),
        ({"preserve_unmasked": True, "output_format": "jpeg"}, "output_format"),
    ],
)
def test_bad_mask_options_fail_before_anything_is_sent(
    run_dag, tmp_path, cometapi_emulator, capfd, options, param
):
    outcome = run_dag(edit_task(f"{tmp_path}/out/", **options))

    assert outcome.state == "failed"
    out = capfd.readouterr().out
    assert "CometAPIValidationError" in out
    assert param in out
    assert cometapi_emulator.requests == []


def test_a_drift_limit_needs_an_output_path(run_dag, cometapi_emulator, capfd):
    body = (
        "CometImageEditOperator(task_id='edit', prompt='Add a ribbon', "
        f"image={str(PAPER_BOAT)!r}, mask={str(PAPER_BOAT_MASK)!r}, max_outside_mask_drift=0.1)"
    )

    outcome = run_dag(body)

    assert outcome.state == "failed"
    assert "max_outside_mask_drift needs output_path" in capfd.readouterr().out
    assert cometapi_emulator.requests == []


def test_a_masked_edit_storage_refused_is_checked_and_composited_when_the_retry_delivers_it(
    run_dag, s3, cometapi_emulator, latency_gate, capfd
):
    from tests.operators.test_item_identity import BUCKET_RETURNS
    from tests.s3 import vanish_while_paying

    bucket = "cometapi-masked-comes-back"
    s3.create_bucket(Bucket=bucket)
    cometapi_emulator.set_drift(DRIFT)
    cometapi_emulator.set_latency(1.0)  # held by the gate while the bucket goes away

    vanishing = vanish_while_paying(s3, bucket, latency_gate)
    task = (
        edit_task(f"s3://s3_test@{bucket}/out/", preserve_unmasked=True, retries=1)[:-1]
        + ", retry_delay=__import__('datetime').timedelta(0), on_retry_callback=bucket_returns)"
    )
    outcome = run_dag(BUCKET_RETURNS.format(bucket=bucket) + task)
    vanishing.join()

    assert outcome.state == "success"
    assert len(cometapi_emulator.billed) == 1  # paid once, delivered by the retry
    assert "Delivering the 1 image(s)" in "".join(capfd.readouterr())
    (uri,) = outcome.xcom("edit")
    body = s3.get_object(Bucket=bucket, Key=uri.split(f"{bucket}/", 1)[1])["Body"].read()
    got = pixels(body)
    assert all(got[i] == SOURCE[i] for i, alpha in enumerate(KEPT) if alpha == 255)
    (check,) = outcome.xcom("edit", "checks")
    assert (check["changed_pixels"], check["composited"]) == (CHANGED, True)


def test_a_raised_limit_judges_the_kept_outputs_again_and_writes_them_unpaid(
    run_dag, tmp_path, cometapi_emulator, capfd
):
    cometapi_emulator.set_drift(DRIFT)
    out = f"{tmp_path}/out/"
    strict = edit_task(out, max_outside_mask_drift=0.1, preserve_unmasked=True)
    first = run_dag(strict, dag_id="raised_limit", logical_date=WHEN)
    assert first.state == "failed"

    lenient = edit_task(out, max_outside_mask_drift=0.5, preserve_unmasked=True)
    again = run_dag(lenient, dag_id="raised_limit", logical_date=WHEN)

    assert again.state == "success"
    assert len(cometapi_emulator.requests) == len(cometapi_emulator.billed) == 1
    assert "Judging the kept outputs" in capfd.readouterr().out
    got = pixels((tmp_path / "out" / "paper-boat-0.png").read_bytes())
    assert all(got[i] == SOURCE[i] for i, alpha in enumerate(KEPT) if alpha == 255)
    (check,) = again.xcom("edit", "checks")
    assert (check["changed_pixels"], check["composited"], check["rejected"]) == (
        CHANGED,
        True,
        False,
    )
    usage = again.xcom("edit", "usage")
    assert usage["requests"] + usage["reused"]["requests"] == 1  # the one edit, counted once


@pytest.mark.parametrize("cometapi_emulator", [{"honour_idempotency": True}], indirect=True)
def test_other_mask_options_redo_the_outputs_under_the_same_idempotency_key(
    run_dag, tmp_path, cometapi_emulator, capfd
):
    cometapi_emulator.set_drift(DRIFT)
    out = f"{tmp_path}/out/"
    assert run_dag(edit_task(out), dag_id="options", logical_date=WHEN).state == "success"

    again = run_dag(edit_task(out, preserve_unmasked=True), dag_id="options", logical_date=WHEN)

    assert again.state == "success"
    assert "written with other mask options" in capfd.readouterr().out
    first, second = cometapi_emulator.requests
    assert first["idempotency_key"] == second["idempotency_key"]
    assert len(cometapi_emulator.billed) == 1  # a gateway that honours the key replays it
    got = pixels((tmp_path / "out" / "paper-boat-0.png").read_bytes())
    assert all(got[i] == SOURCE[i] for i, alpha in enumerate(KEPT) if alpha == 255)


def test_the_hook_refuses_bad_mask_options_before_sending(cometapi_conn, cometapi_emulator):
    from airflow_provider_cometapi.exceptions import CometAPIValidationError

    cometapi_conn()
    with CometApiHook() as hook, pytest.raises(CometAPIValidationError, match="feather"):
        hook.edit_image(str(PAPER_BOAT), "Add a ribbon", mask=str(PAPER_BOAT_MASK), feather="3")

    assert cometapi_emulator.requests == []
