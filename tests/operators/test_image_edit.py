"""CometImageEditOperator in ``dag.test()`` runs on SQLite, against the emulator over loopback."""

from __future__ import annotations

import base64
import json

import pytest

from airflow_provider_cometapi.samples import PAPER_BOAT, PAPER_BOAT_MASK
from tests.dagrun import files_in
from tests.imaging import decode, image_bytes
from tests.s3 import visible_keys

BOAT_B64 = base64.b64encode(PAPER_BOAT.read_bytes()).decode()


def edit_task(image: str, output: str, **extra: object) -> str:
    """DAG body: one edit task reading ``image`` (Python source) into ``output``."""
    options = "".join(f", {key}={value!r}" for key, value in extra.items())
    return (
        f'CometImageEditOperator(task_id="edit", prompt="Add a ribbon", image={image}, '
        f"output_path={output!r}{options})"
    )


def test_local_image_and_mask_edit_into_a_folder(run_dag, tmp_path, cometapi_emulator):
    outcome = run_dag(
        edit_task(repr(str(PAPER_BOAT)), f"{tmp_path}/", mask=str(PAPER_BOAT_MASK), n=2)
    )

    assert outcome.state == "success"
    written = outcome.xcom("edit")
    assert written == [f"file://{tmp_path}/paper-boat-0.png", f"file://{tmp_path}/paper-boat-1.png"]
    assert files_in(tmp_path) == ["paper-boat-0.png", "paper-boat-1.png"]
    first, second = (decode((tmp_path / f"paper-boat-{i}.png").read_bytes()) for i in (0, 1))
    assert first.size == second.size == (512, 384)
    assert first.tobytes() != second.tobytes()
    files = cometapi_emulator.requests[0]["files"]
    assert [(f["field"], f["filename"]) for f in files] == [
        ("image", "paper-boat.png"),
        ("mask", "paper-boat-mask.png"),
    ]


def test_usage_xcom_has_every_server_key_plus_model_images_and_request_id(
    run_dag, tmp_path, cometapi_emulator
):
    outcome = run_dag(edit_task(repr(str(PAPER_BOAT)), f"{tmp_path}/", model="qwen-image-edit"))

    usage = outcome.xcom("edit", "usage")
    (billed,) = cometapi_emulator.billed
    assert usage == {
        **billed["usage"],
        "model": "qwen-image-edit",
        "requests": 1,
        "images": 1,
        "request_id": billed["request_id"],
        "reused": {"requests": 0, "images": 0},
    }
    json.dumps(usage)


def test_one_info_line_summarises_each_edit(run_dag, tmp_path, cometapi_emulator, capfd):
    run_dag(edit_task(repr(str(PAPER_BOAT)), f"{tmp_path}/", n=2))

    usage = cometapi_emulator.billed[0]["usage"]
    line = (
        f"Edited 2 image(s) with gpt-image-2: {usage['input_tokens']} input + "
        f"{usage['output_tokens']} output = {usage['total_tokens']} total tokens "
        f"(request {cometapi_emulator.billed[0]['request_id']})"
    )
    assert line in "".join(capfd.readouterr())


def test_n_given_as_text_is_read_as_a_number(run_dag, tmp_path, cometapi_emulator):
    outcome = run_dag(
        edit_task(repr(str(PAPER_BOAT)), f"{tmp_path}/{{stem}}_{{index}}.{{ext}}", n="2")
    )

    assert outcome.state == "success"
    assert files_in(tmp_path) == ["paper-boat_0.png", "paper-boat_1.png"]
    assert cometapi_emulator.requests[0]["fields"]["n"] == "2"


SOURCE_FORMS = {
    "base64 text": repr(BOAT_B64),
    "data URI": repr("data:image/png;base64," + BOAT_B64),
    "dict with b64_json": repr({"b64_json": BOAT_B64, "filename": "paper-boat.png"}),
    "file:// URI": repr(f"file://{PAPER_BOAT}"),
    "ObjectStoragePath": f"__import__('airflow.sdk').sdk.ObjectStoragePath('file://{PAPER_BOAT}')",
    "raw bytes": f"open({str(PAPER_BOAT)!r}, 'rb').read()",
}


@pytest.mark.parametrize("source", SOURCE_FORMS.values(), ids=SOURCE_FORMS.keys())
def test_every_source_form_is_read(run_dag, tmp_path, cometapi_emulator, source):
    outcome = run_dag(edit_task(source, f"{tmp_path}/out/"))

    assert outcome.state == "success"
    (record,) = cometapi_emulator.requests
    assert record["files"][0]["content_type"] == "image/png"
    assert record["files"][0]["size"] == len(PAPER_BOAT.read_bytes())
    assert len(files_in(tmp_path / "out")) == 1


def test_memory_uri_source_and_output(run_dag, cometapi_emulator):
    outcome = run_dag(
        f"""
        @task
        def stage():
            from airflow.sdk import ObjectStoragePath
            ObjectStoragePath("memory://inbox/boat.png").write_bytes(
                base64.b64decode({BOAT_B64!r})
            )
            return "memory://inbox/boat.png"

        edit = {edit_task("stage()", "memory://edited/")}

        @task
        def check(paths):
            from airflow.sdk import ObjectStoragePath
            return [len(ObjectStoragePath(p).read_bytes()) for p in paths]

        check(edit.output)
        """
    )

    assert outcome.state == "success"
    assert outcome.xcom("edit") == ["memory://edited/boat-0.png"]
    assert outcome.xcom("check")[0] > 0


def test_images_handed_over_by_an_upstream_task_through_xcom(run_dag, tmp_path, cometapi_emulator):
    outcome = run_dag(
        f"""
        @task
        def produce():
            return [{BOAT_B64!r}, {BOAT_B64!r}]

        {edit_task("produce()", f"{tmp_path}/")}
        """
    )

    assert outcome.state == "success"
    files = cometapi_emulator.requests[0]["files"]
    assert [f["field"] for f in files] == ["image[]", "image[]"]
    assert outcome.xcom("edit") == [f"file://{tmp_path}/image-0.png"]


@pytest.mark.parametrize("native", [False, True], ids=["rendered as text", "native objects"])
def test_templated_xcom_pull_of_paths(run_dag, tmp_path, cometapi_emulator, native):
    other = tmp_path / "second.png"
    other.write_bytes(image_bytes((512, 384)))
    pulled = "\"{{ ti.xcom_pull(task_ids='paths') }}\""
    outcome = run_dag(
        f"""
        @task
        def paths():
            return [{str(PAPER_BOAT)!r}, {str(other)!r}]

        paths() >> {edit_task(pulled, f"{tmp_path}/out/")}
        """,
        native=native,
    )

    assert outcome.state == "success"
    names = [f["filename"] for f in cometapi_emulator.requests[0]["files"]]
    assert names == ["paper-boat.png", "second.png"]


def test_templated_prompt_and_output_path_are_rendered(run_dag, tmp_path, cometapi_emulator):
    outcome = run_dag(
        f"""
        CometImageEditOperator(
            task_id="edit",
            image={str(PAPER_BOAT)!r},
            prompt="Paint the {{{{ dag_run.conf['colour'] }}}} flag",
            output_path="{tmp_path}/{{{{ dag_run.conf['colour'] }}}}/{{stem}}.{{ext}}",
            extra_fields={{"user": "{{{{ dag_run.conf['user'] }}}}"}},
        )
        """,
        conf={"colour": "red", "user": "pipeline-7"},
    )

    assert outcome.state == "success"
    fields = cometapi_emulator.requests[0]["fields"]
    assert (fields["prompt"], fields["user"]) == ("Paint the red flag", "pipeline-7")
    assert (tmp_path / "red" / "paper-boat.png").is_file()


def test_output_names_follow_placeholders(run_dag, tmp_path, cometapi_emulator):
    outcome = run_dag(
        edit_task(
            repr(str(PAPER_BOAT)),
            f"{tmp_path}/{{stem}}_v{{index}}.{{ext}}",
            n=2,
            output_format="jpeg",
        )
    )

    assert outcome.state == "success"
    assert files_in(tmp_path) == ["paper-boat_v0.jpg", "paper-boat_v1.jpg"]


def test_outputs_return_through_xcom_as_base64_without_output_path(run_dag, cometapi_emulator):
    outcome = run_dag(  # two 512x384 images take at most 2 x 1 MiB of base64, even uncompressed
        f'CometImageEditOperator(task_id="edit", prompt="x", image={str(PAPER_BOAT)!r}, n=2, '
        'size="512x384", max_xcom_bytes=2 * 1024 * 1024)'
    )

    encoded = outcome.xcom("edit")
    assert len(encoded) == 2
    assert decode(base64.b64decode(encoded[0])).size == (512, 384)
    assert outcome.xcom("edit", "usage")["images"] == 2


def test_no_cap_takes_any_size_through_xcom(run_dag, cometapi_emulator):
    outcome = run_dag(
        f'CometImageEditOperator(task_id="edit", prompt="x", image={str(PAPER_BOAT)!r}, '
        "max_xcom_bytes=None)"
    )

    assert len(outcome.xcom("edit")) == 1


@pytest.mark.parametrize(
    ("options", "needed"),
    [
        ("", "an unknown number of bytes"),  # size auto: no bound, so no edit is paid for
        ('size="512x384", n=2', "up to 2097152 bytes"),  # over the 1 MiB default
        ('size="1024x1024"', "up to 5592408 bytes"),
    ],
    ids=["size unknown", "two over the default", "one large image"],
)
def test_outputs_the_xcom_cap_might_not_hold_are_refused_before_paying(
    run_dag, cometapi_emulator, capfd, options, needed
):
    outcome = run_dag(
        f'CometImageEditOperator(task_id="edit", prompt="x", image={str(PAPER_BOAT)!r}, {options})'
    )

    assert outcome.states() == {("edit", -1): "failed"}
    logs = "".join(capfd.readouterr())
    assert "max_xcom_bytes=1048576" in logs
    assert needed in logs
    assert "Set output_path" in logs
    assert "nothing was sent" in logs
    assert cometapi_emulator.requests == []
    assert outcome.xcom("edit") is None


def test_s3_source_and_output_through_a_real_s3_server(run_dag, s3, cometapi_emulator):
    s3.create_bucket(Bucket="cometapi-in")
    s3.create_bucket(Bucket="cometapi-out")
    s3.put_object(Bucket="cometapi-in", Key="boats/paper-boat.png", Body=PAPER_BOAT.read_bytes())

    outcome = run_dag(
        edit_task(
            repr("s3://cometapi-in/boats/paper-boat.png"),
            "s3://s3_test@cometapi-out/edited/",
            source_conn_id="s3_test",
            n=2,
        )
    )

    assert outcome.state == "success"
    assert outcome.xcom("edit") == [
        "s3://s3_test@cometapi-out/edited/paper-boat-0.png",
        "s3://s3_test@cometapi-out/edited/paper-boat-1.png",
    ]
    assert visible_keys(s3, "cometapi-out") == [
        "edited/paper-boat-0.png",
        "edited/paper-boat-1.png",
    ]
    body = s3.get_object(Bucket="cometapi-out", Key="edited/paper-boat-0.png")["Body"].read()
    assert decode(body).size == (512, 384)


def test_mapped_edits_never_collide(run_dag, tmp_path, cometapi_emulator):
    sources = []
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "boat.png").write_bytes(PAPER_BOAT.read_bytes())
        sources.append(str(tmp_path / folder / "boat.png"))

    outcome = run_dag(
        f"""
        CometImageEditOperator.partial(
            task_id="edit", prompt="x", n=2, output_path="{tmp_path}/out/"
        ).expand(image={sources!r})
        """
    )

    assert outcome.state == "success"
    written = files_in(tmp_path / "out")
    assert written == [f"boat-{m}-{i}.png" for m in range(3) for i in range(2)]
    assert len(outcome.xcoms("edit", "usage")) == 3


def test_expand_kwargs_with_placeholders(run_dag, tmp_path, cometapi_emulator):
    outcome = run_dag(
        f"""
        CometImageEditOperator.partial(
            task_id="edit", output_path="{tmp_path}/{{map_index}}-{{stem}}.{{ext}}"
        ).expand_kwargs([
            {{"image": {str(PAPER_BOAT)!r}, "prompt": "red"}},
            {{"image": {str(PAPER_BOAT)!r}, "prompt": "blue", "output_format": "jpeg"}},
        ])
        """
    )

    assert outcome.state == "success"
    assert files_in(tmp_path) == ["0-paper-boat.png", "1-paper-boat.jpg"]
    prompts = sorted(r["fields"]["prompt"] for r in cometapi_emulator.requests)
    assert prompts == ["blue", "red"]


# --- failures: typed errors, no API call, nothing partial ------------------------------------

BAD_INPUTS = {
    "missing source": (repr("/nowhere/boat.png"), {}, "CometAPISourceError", "/nowhere/boat.png"),
    "undecodable image": (
        repr(base64.b64encode(b"not an image, just some text " * 3).decode()),
        {},
        "CometAPIValidationError",
        "not a readable image",
    ),
    "mask without alpha": (
        repr(str(PAPER_BOAT)),
        {"mask": str(PAPER_BOAT)},
        "CometAPIValidationError",
        "no alpha channel",
    ),
    "missing s3 object": (
        repr("s3://s3_test@cometapi-empty/none.png"),
        {},
        "CometAPISourceError",
        "none.png",
    ),
    "single file path with n=2": (
        repr(str(PAPER_BOAT)),
        {"n": 2, "output_path": "/tmp/x.png"},
        "CometAPIValidationError",
        "{index}",
    ),
}


@pytest.mark.parametrize(
    ("image", "extra", "error", "detail"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys()
)
def test_bad_input_fails_the_task_before_any_api_call(
    run_dag, tmp_path, s3, cometapi_emulator, capfd, image, extra, error, detail
):
    s3.create_bucket(Bucket="cometapi-empty")
    output = extra.pop("output_path", f"{tmp_path}/out/")
    outcome = run_dag(edit_task(image, output, **extra))

    assert outcome.states() == {("edit", -1): "failed"}
    logs = "".join(capfd.readouterr())
    assert error in logs
    assert detail in logs
    assert cometapi_emulator.requests == []
    assert not (tmp_path / "out").exists()


def test_failed_local_write_leaves_nothing_behind(run_dag, tmp_path, cometapi_emulator, capfd):
    (tmp_path / "1").write_text("a file where output 1's folder should be")

    outcome = run_dag(edit_task(repr(str(PAPER_BOAT)), f"{tmp_path}/{{index}}/edit.{{ext}}", n=2))

    assert outcome.states() == {("edit", -1): "failed"}
    assert "CometAPIOutputError" in "".join(capfd.readouterr())
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["0", "1"]
    assert list((tmp_path / "0").iterdir()) == []


def test_a_missing_output_bucket_fails_before_paying(run_dag, s3, cometapi_emulator, capfd):
    s3.create_bucket(Bucket="cometapi-out-0")  # cometapi-out-1 does not exist

    outcome = run_dag(
        edit_task(repr(str(PAPER_BOAT)), "s3://s3_test@cometapi-out-{index}/edit.{ext}", n=2)
    )

    assert outcome.states() == {("edit", -1): "failed"}
    logs = "".join(capfd.readouterr())
    assert "CometAPIOutputError" in logs
    assert "cometapi-out-1" in logs
    assert "The bucket does not exist" in logs
    assert s3.list_objects_v2(Bucket="cometapi-out-0").get("Contents", []) == []
    assert cometapi_emulator.requests == []  # every output's folder was probed first
