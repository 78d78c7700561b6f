"""Rows in, a report out: per-row prompts and parameters, the JSONL report, small XComs, and a
log that stays short whatever the count; in ``dag.test()`` runs against the emulator."""

from __future__ import annotations

import csv
import json
import re
from typing import TYPE_CHECKING

import pytest

from airflow_provider_cometapi.samples import PAPER_BOAT
from tests.dagrun import batch_task
from tests.imaging import decode, image_bytes
from tests.naming import batch_output

if TYPE_CHECKING:
    from collections.abc import Callable

BOAT = PAPER_BOAT.read_bytes()
BROKEN = b"\x89PNG\r\n\x1a\n broken"


def prompts_sent(emulator) -> dict[str, str]:
    """``{file name: prompt}`` of the edit requests the emulator received."""
    return {r["files"][0]["filename"]: r["fields"]["prompt"] for r in emulator.requests}


def products(tmp_path, count: int = 3) -> list[dict]:
    folder = tmp_path / "photos"
    folder.mkdir()
    rows = []
    for i in range(count):
        path = folder / f"p{i}.png"
        path.write_bytes(BOAT)
        rows.append({"image": str(path), "product": f"lamp {i}", "sku": f"SKU-{i}"})
    return rows


def inbox_batch(tmp_path, count: int, broken: Callable[[int], bool]) -> str:
    """A batch over an inbox of ``count`` small images, those ``broken(i)`` broken files, that
    goes on past failures with 8 requests in flight."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    small = image_bytes((64, 48))
    for i in range(count):
        (folder / f"i{i:03d}.png").write_bytes(BROKEN if broken(i) else small)
    return batch_task(
        repr(f"{folder}/"), f"{tmp_path}/out/", max_concurrency=8, on_item_failure="continue"
    )


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_rows_from_a_list_carry_their_own_prompt_size_and_name(
    run_dag, tmp_path, cometapi_emulator, deferrable
):
    rows = products(tmp_path)
    rows[1]["prompt"] = "Only the {product}, on grey"
    rows[2]["size"] = "256x192"
    rows[2]["output_name"] = "hero"
    outcome = run_dag(
        batch_task(
            repr(rows),
            f"{tmp_path}/out/",
            prompt="Put the {product} on a white background",
            deferrable=deferrable,
        )
    )

    assert outcome.state == "success"
    assert prompts_sent(cometapi_emulator) == {
        "p0.png": "Put the lamp 0 on a white background",
        "p1.png": "Only the lamp 1, on grey",
        "p2.png": "Put the lamp 2 on a white background",
    }
    sizes = {r["files"][0]["filename"]: r["fields"].get("size") for r in cometapi_emulator.requests}
    assert sizes == {"p0.png": None, "p1.png": None, "p2.png": "256x192"}
    lines = outcome.report("batch")
    assert [line["position"] for line in lines] == [0, 1, 2]
    assert [line["source"] for line in lines] == [row["image"] for row in rows]
    hero = lines[2]["outputs"][0]
    assert hero.rsplit("/", 1)[1] == batch_output("hero", rows[2]["image"])
    assert decode((tmp_path / "out" / hero.rsplit("/", 1)[1]).read_bytes()).size == (256, 192)


def test_rows_from_jsonl_and_csv_files_edit_the_same(run_dag, tmp_path, cometapi_emulator):
    rows = products(tmp_path, 2)
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    table = tmp_path / "rows.csv"
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "product", "sku", "n"])
        writer.writeheader()
        writer.writerows({**row, "n": "2"} for row in rows)

    from_jsonl = run_dag(
        batch_task(repr(f"file://{jsonl}"), f"{tmp_path}/a/", prompt="A {product}")
    )
    from_csv = run_dag(batch_task(repr(str(table)), f"{tmp_path}/b/", prompt="A {product}"))

    assert (from_jsonl.state, from_csv.state) == ("success", "success")
    assert [len(line["outputs"]) for line in from_jsonl.report("batch")] == [1, 1]
    assert [len(line["outputs"]) for line in from_csv.report("batch")] == [2, 2]
    assert sorted(r["fields"]["prompt"] for r in cometapi_emulator.requests) == [
        "A lamp 0",
        "A lamp 0",
        "A lamp 1",
        "A lamp 1",
    ]


def test_bad_rows_stop_the_batch_before_anything_is_sent(
    run_dag, tmp_path, cometapi_emulator, capfd
):
    rows = products(tmp_path, 4)
    rows[1]["size"] = "big"
    del rows[3]["product"]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))

    outcome = run_dag(batch_task(repr(str(jsonl)), f"{tmp_path}/out/", prompt="A {product}"))

    assert outcome.state == "failed"
    text = "".join(capfd.readouterr())
    assert "CometAPIRowsError: sources: 2 of 4 rows are bad, so nothing was sent" in text
    assert f"line 2 of {jsonl}: size" in text
    assert f"line 4 of {jsonl}: " in text
    assert cometapi_emulator.requests == []
    assert outcome.xcom("batch", "report") is None
    assert not (tmp_path / "out").exists()


def test_bad_rows_under_continue_fail_alone_with_their_line(run_dag, tmp_path, cometapi_emulator):
    rows = products(tmp_path, 3)
    rows[1]["size"] = "big"
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))

    outcome = run_dag(
        batch_task(
            repr(str(jsonl)), f"{tmp_path}/out/", prompt="A {product}", on_item_failure="continue"
        )
    )

    assert outcome.state == "failed"
    assert sorted(prompts_sent(cometapi_emulator)) == ["p0.png", "p2.png"]
    bad = outcome.report("batch")[1]
    assert bad["error"]["type"] == "CometAPIValidationError"
    assert bad["error"]["param"] == "size"
    assert bad["error"]["message"].startswith(f"line 2 of {jsonl}: ")
    assert bad["source"] == f"line 2 of {jsonl}"
    summary = outcome.xcom("batch", "summary")
    assert (summary["edited"], summary["failed"], summary["not_started"]) == (2, 1, 0)


def test_the_report_has_one_line_per_source_and_the_xcoms_stay_small(
    run_dag, tmp_path, cometapi_emulator
):
    outcome = run_dag(inbox_batch(tmp_path, 120, broken=lambda i: i % 40 == 7))

    assert outcome.state == "failed"
    lines = outcome.report("batch")
    assert [line["position"] for line in lines] == list(range(120))
    assert [line["error"] is not None for line in lines].count(True) == 3
    report = outcome.xcom("batch", "report")
    assert outcome.xcom("batch") is None  # a failed task returns nothing
    summary = outcome.xcom("batch", "summary")
    assert summary == {
        "items": 120,
        "edited": 117,
        "reused": 0,
        "failed": 3,
        "not_started": 0,
        "paid_tokens": summary["paid_tokens"],
        "reused_tokens": 0,
        "report": report,
    }
    assert summary["paid_tokens"] == sum(
        b["usage"]["total_tokens"] for b in cometapi_emulator.billed
    )
    xcom_bytes = sum(
        len(json.dumps(value))
        for key in ("usage", "summary", "report", "return_value")
        for value in [outcome.xcom("batch", key)]
    )
    assert xcom_bytes < 2_000
    parts = tmp_path / "out" / ".cometapi-reports"
    assert [path.name for path in parts.rglob("*") if path.is_file()] == ["batch.jsonl"]


def test_the_log_stays_short_however_many_items_fail(run_dag, tmp_path, cometapi_emulator, capfd):
    from airflow_provider_cometapi.pipeline.progress import WARNING_CAP

    outcome = run_dag(inbox_batch(tmp_path, 90, broken=lambda i: i % 3 == 0))

    assert outcome.state == "failed"
    text = "".join(capfd.readouterr())
    operator = r"\[airflow\.task\.operators\.[\w.]*CometImageEditBatchOperator\]"
    failures = re.findall(rf"\[warning *\] Edit of .* failed: .* {operator}", text)
    assert len(failures) == WARNING_CAP
    assert f"{30 - WARNING_CAP} more warning(s) about items not shown here" in text
    info = re.findall(rf"\[info *\] .* {operator}", text)
    assert len(info) <= 8, info  # start, end, usage, report, and no line per item
    assert "Wrote " not in text
    assert [line["error"] is not None for line in outcome.report("batch")].count(True) == 30
