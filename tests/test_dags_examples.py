"""The example DAGs parse cleanly and run end to end with ``dag.test()`` against the emulator."""

from __future__ import annotations

import json

import pytest

from airflow_provider_cometapi.samples import PAPER_BOAT, PAPER_BOAT_MASK
from tests.dagrun import files_in
from tests.imaging import decode
from tests.naming import batch_output
from tests.s3 import visible_keys
from tests.settings import EXAMPLE_DAGS

TOKENS = ("input_tokens", "output_tokens", "total_tokens")

EXAMPLES = {
    "cometapi_edit_local_image",
    "cometapi_xcom_usage_report",
    "cometapi_edit_storage_prefix",
    "cometapi_batch_deferrable",
    "cometapi_edited_images_report",
}


def example(run_dag, dag_id, conf):
    return run_dag.run_file(EXAMPLE_DAGS / f"{dag_id}.py", dag_id, conf=conf)


def test_example_dags_parse_without_import_errors():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXAMPLES


def parsed_examples() -> dict[str, dict]:
    """Each example DAG as the DAG processor serializes it: params, template fields and all."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    assert bag.import_errors == {}
    return {dag_id: DagSerialization.to_dict(dag) for dag_id, dag in bag.dags.items()}


def test_example_dags_parse_the_same_whatever_the_environment(monkeypatch, tmp_path):
    """A worker started with another environment than the scheduler sees the same DAGs."""
    names = ("COMETAPI_EXAMPLES_OUTPUT", "COMETAPI_DEMO_OUTPUT", "HOME", "USER")
    parsed = []
    for side in ("scheduler", "worker"):
        for name in names:
            monkeypatch.setenv(name, str(tmp_path / side / name.lower()))
        parsed.append(parsed_examples())

    assert set(parsed[0]) == EXAMPLES
    assert parsed[0] == parsed[1]


def test_local_image_example_writes_two_edits(run_dag, tmp_path, cometapi_emulator):
    outcome = example(run_dag, "cometapi_edit_local_image", {"output_dir": str(tmp_path)})

    assert outcome.state == "success"
    folder = tmp_path / "local-edit"
    assert files_in(folder) == ["paper-boat-0.png", "paper-boat-1.png"]
    files = cometapi_emulator.requests[0]["files"]
    assert [f["size"] for f in files] == [PAPER_BOAT.stat().st_size, PAPER_BOAT_MASK.stat().st_size]


def test_xcom_example_writes_a_token_report_of_paid_apart_from_reused(
    run_dag, tmp_path, cometapi_emulator
):
    outcome = example(run_dag, "cometapi_xcom_usage_report", {"output_dir": str(tmp_path)})

    assert outcome.state == "success"
    report = json.loads((tmp_path / "xcom-edit" / "tokens.json").read_text())
    (billed,) = cometapi_emulator.billed
    assert report["paid"]["total_tokens"] == billed["usage"]["total_tokens"]
    assert report["reused"] == {
        "images": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
    }
    assert report["request_id"] == billed["request_id"]
    assert report["outputs"] == [f"file://{tmp_path}/xcom-edit/image-0.png"]
    (request,) = cometapi_emulator.requests
    assert [(f["field"], f["content_type"]) for f in request["files"]] == [
        ("image[]", "image/png")
    ] * 2
    assert outcome.xcom("token_report") == report

    again = example(run_dag, "cometapi_xcom_usage_report", {"output_dir": str(tmp_path)})
    rerun = json.loads((tmp_path / "xcom-edit" / "tokens.json").read_text())
    assert again.state == "success"
    assert len(cometapi_emulator.billed) == 1
    assert rerun["paid"] == {"images": 0, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    assert rerun["reused"] == {"images": 1, **{k: billed["usage"][k] for k in TOKENS}}


def test_prefix_example_maps_over_local_files(run_dag, tmp_path, cometapi_emulator):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (inbox / name).write_bytes(PAPER_BOAT.read_bytes())
    (inbox / "notes.txt").write_text("not an image")

    outcome = example(
        run_dag,
        "cometapi_edit_storage_prefix",
        {"source_prefix": f"file://{inbox}/", "output_prefix": f"file://{tmp_path}/edited/"},
    )

    assert outcome.state == "success"
    edited = files_in(tmp_path / "edited")
    assert edited == ["a-0-0.png", "b-1-0.png", "c-2-0.png"]
    assert len(cometapi_emulator.billed) == 3


@pytest.mark.parametrize("images", [4])
def test_prefix_example_maps_over_an_s3_prefix(run_dag, s3, cometapi_emulator, images):
    s3.create_bucket(Bucket="cometapi-prefix")
    for i in range(images):
        s3.put_object(
            Bucket="cometapi-prefix", Key=f"inbox/boat{i}.png", Body=PAPER_BOAT.read_bytes()
        )

    outcome = example(
        run_dag,
        "cometapi_edit_storage_prefix",
        {
            "source_prefix": "s3://s3_test@cometapi-prefix/inbox/",
            "output_prefix": "s3://s3_test@cometapi-prefix/edited/",
        },
    )

    assert outcome.state == "success"
    keys = visible_keys(s3, "cometapi-prefix", "edited/")
    assert keys == [f"edited/boat{i}-{i}-0.png" for i in range(images)]
    body = s3.get_object(Bucket="cometapi-prefix", Key=keys[0])["Body"].read()
    assert decode(body).size == (512, 384)


def test_deferrable_batch_example_announces_its_outputs_on_the_asset(
    run_dag, tmp_path, cometapi_emulator
):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a.png", "b.png"):
        (inbox / name).write_bytes(PAPER_BOAT.read_bytes())

    outcome = example(
        run_dag,
        "cometapi_batch_deferrable",
        {"source_prefix": f"file://{inbox}/", "output_prefix": f"file://{tmp_path}/edited/"},
    )

    assert outcome.state == "success"
    outputs = [
        f"file://{tmp_path}/edited/{batch_output(name, f'file://{inbox}/{name}.png')}"
        for name in ("a", "b")
    ]
    assert outcome.outputs("edit_folder") == outputs
    assert outcome.xcom("edit_folder", "usage")["requests"] == 2

    def extras(run_id: str) -> list[dict]:
        with create_session() as session:
            events = (
                session.query(AssetEvent)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .filter(
                    AssetModel.name == "cometapi_edited_images",
                    AssetEvent.source_run_id == run_id,
                )
                .all()
            )
            return [event.extra for event in events]

    (extra,) = extras(outcome.run_id)
    assert (extra["edited"], extra["reused"], extra["report"]) == (
        2,
        0,
        outcome.xcom("edit_folder", "report"),
    )
    again = example(
        run_dag,
        "cometapi_batch_deferrable",
        {"source_prefix": f"file://{inbox}/", "output_prefix": f"file://{tmp_path}/edited/"},
    )
    assert again.state == "success"
    assert len(cometapi_emulator.billed) == 2  # the second run reused both, and says so
    (extra,) = extras(again.run_id)
    assert (extra["edited"], extra["reused"]) == (0, 2)
    assert again.outputs("edit_folder") == outputs
