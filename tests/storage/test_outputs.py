"""Output naming and the all-or-nothing commit of ``StagedOutputs``."""

from __future__ import annotations

import pytest

from airflow_provider_cometapi.exceptions import CometAPIOutputError
from airflow_provider_cometapi.storage.outputs import StagedOutputs, output_targets


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("out/{stem}.{ext}", ["out/boat.png", "out/boat-1.png", "out/boat-2.png"]),
        ("out/{stem}-{index}.{ext}", ["out/boat-0.png", "out/boat-1.png", "out/boat-2.png"]),
        ("out/one.png", ["out/one.png", "out/one-1.png", "out/one-2.png"]),
    ],
)
def test_more_outputs_than_the_name_allows_never_share_a_name(template, expected):
    targets = output_targets(template, stem="boat", extensions=["png"] * 3, map_index=-1)
    assert targets == expected


def test_a_failed_commit_leaves_no_output_of_that_edit(tmp_path):
    sink = StagedOutputs(f"{tmp_path}/", stem="boat", map_index=-1, conn_id=None)
    for slot in (0, 1):
        writer = sink.open_writer(slot, "image/png")
        writer.write(b"\x89PNG\r\n\x1a\n" + bytes(64))
        writer.close()
    (second,) = tmp_path.glob(".boat-1.png.*.partial")
    second.unlink()  # the second output's staged file is lost before the commit

    with pytest.raises(CometAPIOutputError, match="nothing partial"):
        sink.commit()

    assert list(tmp_path.iterdir()) == []  # the first output was moved in, then taken back
