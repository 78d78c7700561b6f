"""No input string is ever echoed whole: labels, errors, logs and XComs show at most an excerpt."""

from __future__ import annotations

import base64
import json

import pytest

from airflow_provider_cometapi.exceptions import CometAPISourceError
from airflow_provider_cometapi.samples import PAPER_BOAT
from airflow_provider_cometapi.storage.sources import classify, classify_all, label_of

LONG = "!" + base64.b64encode(bytes(range(256)) * 80).decode()  # 27 KB: no path, no base64
LONG_PATH = f"/data/{'a' * 300}.png"


def shown(text: str) -> str:
    """How a long input appears: its first 79 and last 40 characters around an ellipsis."""
    return f"{text[:79]}…{text[-40:]}"


@pytest.mark.parametrize("source", [LONG, LONG_PATH], ids=["unreadable text", "missing path"])
def test_a_source_error_names_an_excerpt_of_the_input(source):
    with pytest.raises(CometAPISourceError) as raised:
        classify(source, "image", None).read("image")

    message = str(raised.value)  # names the resolved location, e.g. file:///data/aaa…aaa.png
    assert source[-40:] in message
    assert source[:200] not in message
    assert source[-200:] not in message
    assert len(message) < 400


def test_a_label_is_an_excerpt_even_for_a_list():
    assert classify(LONG, "image", None).label == shown(LONG)
    assert classify(str(PAPER_BOAT), "image", None).label == str(PAPER_BOAT)
    labels = label_of(classify_all([LONG_PATH] * 16, "image", None))
    assert len(labels) == 120
    assert labels.startswith(shown(LONG_PATH)[:79])


def test_a_long_unreadable_batch_source_is_echoed_only_as_an_excerpt(
    run_dag, tmp_path, cometapi_emulator, capfd
):
    outcome = run_dag(
        "from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator\n"
        f'CometImageEditBatchOperator(task_id="batch", prompt="x", sources=[{LONG!r}, '
        f'{str(PAPER_BOAT)!r}], output_path="{tmp_path}/out/", on_item_failure="continue")'
    )

    logs = "".join(capfd.readouterr())
    assert outcome.states() == {("batch", -1): "failed"}
    bad, good = outcome.xcom("batch", "items")
    assert bad["source"] == shown(LONG)
    assert bad["error"]["type"] == "CometAPISourceError"
    assert len(json.dumps(bad)) < 1024
    assert good["error"] is None
    assert len(cometapi_emulator.billed) == 1
    assert "CometAPIBatchError" in logs
    assert shown(LONG) in logs  # the excerpt is what the item failure logged
    assert LONG[:200] not in logs
    assert LONG[-200:] not in logs


def test_a_long_file_name_is_echoed_only_as_an_excerpt(cometapi_conn, cometapi_emulator):
    from airflow_provider_cometapi.exceptions import CometAPIValidationError
    from airflow_provider_cometapi.hooks.cometapi import CometApiHook

    name = "boat-" + "x" * 5000 + ".png"
    with pytest.raises(CometAPIValidationError) as raised:
        CometApiHook().edit_image((name, b"not an image at all"), "x")

    assert name[-40:] in str(raised.value)
    assert name[:200] not in str(raised.value)
    assert len(str(raised.value)) < 400
    assert cometapi_emulator.requests == []
