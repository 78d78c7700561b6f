"""Rendered Templates show an in-memory image as a short label; the edit still gets it whole."""

from __future__ import annotations

import base64

from airflow_provider_cometapi.samples import PAPER_BOAT, PAPER_BOAT_MASK
from tests.dagrun import batch_task, files_in

BOAT = PAPER_BOAT.read_bytes()
ENCODED = base64.b64encode(BOAT).decode()
LABEL = f"<base64 PNG image, {len(BOAT):,} bytes>"


def rendered_fields(outcome, task_id: str, map_index: int = -1) -> dict:
    """The RenderedTaskInstanceFields row the UI's Rendered Templates shows."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        (row,) = session.query(RenderedTaskInstanceFields).filter_by(
            dag_id=outcome.dag_id, run_id=outcome.run_id, task_id=task_id, map_index=map_index
        )
        return dict(row.rendered_fields)


def test_a_base64_image_is_shown_as_a_label(run_dag, tmp_path, cometapi_emulator):
    outcome = run_dag(
        f"""
        CometImageEditOperator(
            task_id="edit", prompt="Add a ribbon", image="{{{{ params.image }}}}",
            mask={str(PAPER_BOAT_MASK)!r}, output_path="{tmp_path}/out/",
            params={{"image": {ENCODED!r}}},
        )
        """
    )

    assert outcome.state == "success"
    shown = rendered_fields(outcome, "edit")
    assert shown["image"] == LABEL
    assert shown["mask"] == str(PAPER_BOAT_MASK)  # a path stays as it is
    assert ENCODED[:64] not in str(shown)
    (request,) = cometapi_emulator.requests
    assert request["files"][0]["size"] == len(BOAT)  # the edit got the image whole
    assert files_in(tmp_path / "out") == ["image-0.png"]


def test_every_in_memory_form_in_a_batch_is_labelled(run_dag, tmp_path, cometapi_emulator):
    sources = [
        f"data:image/png;base64,{ENCODED}",
        {"b64_json": ENCODED, "filename": "boat.png"},
        str(PAPER_BOAT),
    ]
    outcome = run_dag(batch_task(repr(sources), f"{tmp_path}/out/", deferrable=True))

    assert outcome.state == "success"
    assert rendered_fields(outcome, "batch")["sources"] == [
        f"<data URI PNG image, {len(BOAT):,} bytes>",
        {"b64_json": LABEL, "filename": "boat.png"},
        str(PAPER_BOAT),
    ]
    assert [f["size"] for r in cometapi_emulator.requests for f in r["files"]] == [len(BOAT)] * 3
    assert len(files_in(tmp_path / "out")) == 3


def test_bytes_rows_and_text_lists_are_labelled_and_read_back_whole():
    from airflow_provider_cometapi.operators.rendered_inputs import as_given, for_display

    rows = [{"image": ENCODED, "mask": BOAT, "prompt": "Add a ribbon to the paper boat"}]
    as_text = repr([ENCODED, str(PAPER_BOAT)])  # a list a template rendered to text
    shown = {name: for_display(value) for name, value in {"rows": rows, "text": as_text}.items()}

    assert shown["rows"].serialize() == [
        {"image": LABEL, "mask": f"<PNG image, {len(BOAT):,} bytes>", "prompt": rows[0]["prompt"]}
    ]
    assert shown["text"].serialize() == [LABEL, str(PAPER_BOAT)]
    assert as_given(shown["rows"]) is rows
    assert as_given(shown["text"]) is as_text
    assert for_display(str(PAPER_BOAT)) == str(PAPER_BOAT)  # nothing to hide: left as it is


def test_a_mapped_task_shows_its_own_image_as_a_label(run_dag, tmp_path, cometapi_emulator):
    outcome = run_dag(
        f"""
        CometImageEditOperator.partial(
            task_id="edit", prompt="Add a ribbon", output_path="{tmp_path}/out/"
        ).expand(image=[{ENCODED!r}, {str(PAPER_BOAT)!r}])
        """
    )

    assert outcome.state == "success"
    assert rendered_fields(outcome, "edit", 0)["image"] == LABEL
    assert rendered_fields(outcome, "edit", 1)["image"] == str(PAPER_BOAT)
    assert [f["size"] for r in cometapi_emulator.requests for f in r["files"]] == [len(BOAT)] * 2
