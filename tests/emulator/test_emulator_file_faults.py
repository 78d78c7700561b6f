"""File faults: a fault for the requests that upload one named image, by constructor, setter
and ``--fault-for``; how they match, count ``times=N`` and rank against the other faults."""

from __future__ import annotations

import pytest
import requests

from airflow_provider_cometapi.emulator import EmulatorServer
from airflow_provider_cometapi.emulator.__main__ import main
from tests.emulator.helpers import KEY, emulator_cli, png_part
from tests.imaging import mask_bytes

FAULT = "x-emulator-fault"


def post_named(url, *names, headers=None, field="image", extra=()):
    """POST one edit whose image parts carry ``names``; return the response."""
    return requests.post(
        f"{url}/v1/images/edits",
        files=[png_part(name=name, field=field) for name in names] + list(extra),
        data={"prompt": "x"},
        headers={"Authorization": f"Bearer {KEY}", **(headers or {})},
        timeout=10,
    )


def test_named_image_is_refused_while_the_others_of_the_run_succeed_and_are_billed():
    with EmulatorServer(file_faults={"b3.png": "status=400"}) as server:
        statuses = [post_named(server.url, f"b{i}.png").status_code for i in range(1, 6)]
        refused = post_named(server.url, "b3.png")
        requests_seen, billed = server.requests, server.billed

    assert statuses == [200, 200, 400, 200, 200]
    assert refused.json()["error"]["type"] == "invalid_request_error"
    assert [r["files"][0]["filename"] for r in requests_seen if r["billed"]] == [
        "b1.png",
        "b2.png",
        "b4.png",
        "b5.png",
    ]
    faults = [r["fault"] for r in requests_seen]
    assert faults == [None, None, "status=400", None, None, "status=400"]
    billed_ids = {b["request_id"] for b in billed}
    assert len(billed) == 4
    assert not billed_ids & {r["request_id"] for r in requests_seen if r["fault"]}


def test_any_image_part_of_a_multi_image_edit_matches_but_the_mask_does_not(
    cometapi_emulator,
):
    cometapi_emulator.set_file_faults({"b3.png": "status=422"})
    url = cometapi_emulator.url

    multi = post_named(url, "b1.png", "b3.png", field="image[]")
    masked = post_named(url, "b1.png", extra=[png_part(mask_bytes(), "b3.png", "mask")])

    assert (multi.status_code, masked.status_code) == (422, 200)
    assert [r["fault"] for r in cometapi_emulator.requests] == ["status=422", None]
    assert len(cometapi_emulator.billed) == 1


def test_times_fails_the_first_call_of_one_idempotency_key_then_succeeds(cometapi_emulator):
    cometapi_emulator.set_file_faults({"b3.png": "status=503; times=1"})
    url = cometapi_emulator.url

    first, again = (
        post_named(url, "b3.png", headers={"Idempotency-Key": "item-3"}).status_code
        for _ in range(2)
    )
    other_key = post_named(url, "b3.png", headers={"Idempotency-Key": "item-3b"}).status_code

    assert (first, again, other_key) == (503, 200, 503)
    assert [r["fault"] for r in cometapi_emulator.requests] == [
        "status=503; times=1",
        None,
        "status=503; times=1",
    ]
    assert [b["idempotency_key"] for b in cometapi_emulator.billed] == ["item-3"]


def test_equal_specs_of_two_files_count_apart(cometapi_emulator):
    spec = "status=503;times=1"
    cometapi_emulator.set_file_faults({"b3.png": spec, "b5.png": spec})
    url = cometapi_emulator.url

    statuses = [post_named(url, name).status_code for name in ("b3.png", "b3.png", "b5.png")]
    statuses.append(post_named(url, "b5.png").status_code)

    assert statuses == [503, 200, 503, 200]
    assert len(cometapi_emulator.billed) == 2


def test_reset_restarts_the_times_count(cometapi_emulator):
    cometapi_emulator.set_file_faults({"b3.png": "status=500;times=1"})
    url = cometapi_emulator.url
    assert [post_named(url, "b3.png").status_code for _ in range(2)] == [500, 200]

    cometapi_emulator.reset()

    assert post_named(url, "b3.png").status_code == 500


def test_a_name_without_extension_matches_the_stem_and_an_exact_name_wins(cometapi_emulator):
    cometapi_emulator.set_file_faults({"b3": "status=500", "b3.png": "status=400"})
    url = cometapi_emulator.url

    statuses = {
        name: post_named(url, name).status_code
        for name in ("b3.png", "b3.jpeg", "b3", "b30.png", "a.b3.png", "b3.png.png")
    }

    assert statuses == {
        "b3.png": 400,
        "b3.jpeg": 500,
        "b3": 500,
        "b30.png": 200,
        "a.b3.png": 200,
        "b3.png.png": 400,
    }


def test_a_name_with_extension_matches_only_that_file_name(cometapi_emulator):
    cometapi_emulator.set_file_faults({"b3.png": "status=400"})
    url = cometapi_emulator.url

    statuses = [post_named(url, name).status_code for name in ("b3.jpeg", "B3.png", "b3")]

    assert statuses == [200, 200, 200]
    assert len(cometapi_emulator.billed) == 3


def test_file_fault_wins_over_the_server_fault_and_the_header_wins_over_both(
    cometapi_emulator,
):
    cometapi_emulator.set_fault("status=500")
    cometapi_emulator.set_file_faults({"b3.png": "status=400"})
    url = cometapi_emulator.url

    named = post_named(url, "b3.png")
    other = post_named(url, "b1.png")
    header = post_named(url, "b3.png", headers={FAULT: "status=429"})

    assert (named.status_code, other.status_code, header.status_code) == (400, 500, 429)
    assert [r["fault"] for r in cometapi_emulator.requests] == [
        "status=400",
        "status=500",
        "status=429",
    ]


def test_a_used_up_file_fault_leaves_the_request_unfaulted_like_a_used_up_header(
    cometapi_emulator,
):
    cometapi_emulator.set_fault("status=500")
    cometapi_emulator.set_file_faults({"b3.png": "status=400;times=1"})
    url = cometapi_emulator.url

    assert [post_named(url, "b3.png").status_code for _ in range(2)] == [400, 200]
    assert [r["fault"] for r in cometapi_emulator.requests] == ["status=400;times=1", None]


def test_file_fault_wins_over_random_faults():
    with EmulatorServer(random_faults={"500": 1.0}, file_faults={"b3.png": "status=400"}) as server:
        statuses = [post_named(server.url, name).status_code for name in ("b1.png", "b3.png")]

    assert statuses == [500, 400]


def test_setter_changes_a_running_server_and_none_clears_it(cometapi_emulator):
    url = cometapi_emulator.url
    before = post_named(url, "b3.png").status_code
    cometapi_emulator.set_file_faults({"b3.png": "status=400"})
    during = post_named(url, "b3.png").status_code
    cometapi_emulator.set_file_faults({"b4.png": "status=503"})
    replaced = [post_named(url, name).status_code for name in ("b3.png", "b4.png")]
    cometapi_emulator.set_file_faults(None)
    after = post_named(url, "b4.png").status_code

    assert (before, during, replaced, after) == (200, 400, [200, 503], 200)


def test_a_bad_spec_from_the_setter_names_the_file_and_changes_nothing(cometapi_emulator):
    cometapi_emulator.set_file_faults({"b3.png": "status=400"})

    with pytest.raises(ValueError, match=r"file fault for 'b4\.png': unknown fault item"):
        cometapi_emulator.set_file_faults({"b3.png": "status=500", "b4.png": "explode"})

    assert post_named(cometapi_emulator.url, "b3.png").status_code == 400


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"b3.png": "status=200"}, r"file fault for 'b3\.png': fault item 'status' must be"),
        ({"b3.png": ""}, r"file fault for 'b3\.png': empty fault spec"),
        ({"": "status=400"}, r"non-empty file names"),
        ({"b3.png": 400}, r"file fault for 'b3\.png' must be a spec string"),
    ],
)
def test_the_constructor_refuses_bad_file_faults(faults, message):
    with pytest.raises(ValueError, match=message):
        EmulatorServer(file_faults=faults)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fault-for", "b3.png"], "'b3.png' must look like NAME=SPEC"),
        (["--fault-for", "=status=400"], "'=status=400' must look like NAME=SPEC"),
        (["--fault-for", "b3.png=explode"], "file fault for 'b3.png': unknown fault item"),
        (["--fault-for", "b3.png="], "file fault for 'b3.png': empty fault spec"),
        (
            ["--fault-for", "b3.png=status=400", "--fault-for", "b3.png=status=500"],
            "'b3.png' is given twice",
        ),
    ],
)
def test_cli_refuses_bad_fault_for_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)

    assert info.value.code == 2
    assert f"error: argument --fault-for: {message}" in capsys.readouterr().err


def test_cli_fault_for_is_repeatable_and_splits_at_the_first_equals_sign():
    options = ["--fault", "status=500", "--fault-for", "b3.png=status=400"]
    with emulator_cli(*options, "--fault-for", "b4=status=503;retry_after=4") as url:
        answers = [post_named(url, name) for name in ("b3.png", "b4.jpeg", "b1.png")]

        assert [a.status_code for a in answers] == [400, 503, 500]
        assert answers[1].headers["Retry-After"] == "4"
