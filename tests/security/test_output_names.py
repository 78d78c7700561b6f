"""Output names built from source names stay inside ``output_path``, whatever the source is called.

A source's name reaches the output name through ``{stem}`` (and the ``<stem>-…`` names of folder
mode), so hostile names are tried through ``safe_stem``/``output_targets`` directly, as a property
over arbitrary text, and in real ``dag.test()`` runs of both operators, sync and deferrable.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_cometapi.samples import PAPER_BOAT
from airflow_provider_cometapi.storage.outputs import output_targets, safe_stem
from airflow_provider_cometapi.storage.sources import source_stem
from tests.naming import item_of

BOAT_B64 = base64.b64encode(PAPER_BOAT.read_bytes()).decode()
CLEAN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
"""A safe file name: ASCII letters, digits, ``._-``; no separator, control char or leading dot."""

# source name -> the stem its outputs are named by
HOSTILE = {
    "parent traversal": ("../../evil.png", "evil"),
    "absolute path": ("/etc/passwd.png", "passwd"),
    "windows traversal": ("..\\..\\win.png", "win"),
    "hidden file": (".hidden.png", "hidden"),
    "dot segments": ("a/b/../c.png", "c"),
    "spaces": ("my holiday photo.png", "my_holiday_photo"),
    "unicode": ("фото café 日本.png", "caf_"),
    "newline": ("line1\nline2.png", "line1_line2"),
    "url-encoded traversal": ("%2e%2e%2f%2e%2e%2fevil.png", "2e_2e_2f_2e_2e_2fevil"),
    "very long": ("x" * 300 + ".png", "x" * 100),
    "only dots": ("..", "image"),
    "control characters": ("tab\tand\x1b[0mesc.png", "tab_and_0mesc"),
}
MORE_HOSTILE = {
    **HOSTILE,
    "three dots": ("...png", "image"),
    "unicode slashes": ("..\u2215..\u2215evil.png", "evil"),
    "fullwidth traversal": ("\uff0e\uff0e\uff0fevil.png", "evil"),
    "windows drive": ("C:\\Windows\\evil.png", "evil"),
    "home": ("~/evil.png", "evil"),
    "trailing slash": ("evil.png/", "evil"),
    "nul byte": ("nul\x00byte.png", "nul_byte"),
    "blank": ("   .png", "image"),
    "crlf": ("\r\n.png", "image"),
    "empty": ("", "image"),
}
MARKERS = ("evil", "passwd", "hidden", "holiday", "line1", "xxxxxxxxxx", ".png", ".partial")
"""Parts of a name that would show an output written where it should not be."""


def assert_inside(target: str, folder: Path) -> None:
    """``target`` names a clean file directly in ``folder``, with no ``.``/``..`` segment."""
    path = target.removeprefix("file://")
    assert os.path.normpath(path) == path
    assert Path(path).resolve().parent == folder.resolve()
    assert CLEAN.fullmatch(Path(path).name)
    assert len(Path(path).name.encode()) <= 255


@pytest.mark.parametrize(("name", "stem"), MORE_HOSTILE.values(), ids=MORE_HOSTILE.keys())
def test_hostile_source_names_become_clean_stems(name, stem):
    assert safe_stem(source_stem(name)) == stem
    assert CLEAN.fullmatch(safe_stem(name))  # also safe when handed the whole name


@pytest.mark.parametrize(("name", "stem"), MORE_HOSTILE.values(), ids=MORE_HOSTILE.keys())
@pytest.mark.parametrize(
    ("template", "first"),
    [
        ("{out}/", "{stem}-0.png"),
        ("{out}/{{stem}}-{{index}}.{{ext}}", "{stem}-0.png"),
        ("{out}/{{stem}}.{{ext}}", "{stem}.png"),
        ("file://{out}/{{map_index}}_{{stem}}_{{index}}.{{ext}}", "0_{stem}_0.png"),
    ],
    ids=["folder", "stem and index", "stem only", "file URI with map_index"],
)
def test_output_targets_stay_in_the_output_folder(tmp_path, name, stem, template, first):
    out = tmp_path / "out"
    output_path = template.format(out=out)

    targets = output_targets(
        output_path,
        stem=source_stem(name),
        extensions=["png", "jpg"],
        map_index=-1,
    )

    assert targets[0].rsplit("/", 1)[1] == first.format(stem=stem)
    for target in targets:
        assert_inside(target, out)


NASTY = st.lists(
    st.sampled_from(["..", ".", "/", "\\", "%2e", "%2f", "\n", "\x00", " ", "é", "∕", "~", ":"])
    | st.text(max_size=5),
    max_size=30,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(name=NASTY | st.text(max_size=400), map_index=st.integers(-1, 10_000))
def test_any_source_name_stays_in_the_output_folder(tmp_path_factory, name, map_index):
    out = tmp_path_factory.getbasetemp() / "out"
    stem = safe_stem(source_stem(name))
    assert CLEAN.fullmatch(stem)
    assert len(stem) <= 100
    for output_path in (f"{out}/", f"{out}/{{stem}}_{{item}}_{{map_index}}_{{index}}.{{ext}}"):
        targets = output_targets(
            output_path,
            stem=source_stem(name),
            extensions=["png", "webp"],
            map_index=map_index,
            item="0a1b2c3d",
        )
        for target in targets:
            assert_inside(target, out)


# --- real runs: sources carrying hostile names, through both operators ---------------------------

BATCH = """
from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator
B64 = {b64!r}
CometImageEditBatchOperator(
    task_id="edit", prompt="Add a ribbon", output_path={output_path!r}, deferrable={deferrable},
    max_concurrency=4, sources=[{sources}],
)
"""
MAPPED = """
B64 = {b64!r}
CometImageEditOperator.partial(
    task_id="edit", prompt="Add a ribbon", output_path={output_path!r}, deferrable={deferrable},
).expand(image=[{sources}])
"""
TEMPLATE = "{out}/{{stem}}_{{map_index}}.{{ext}}"
BATCH_TEMPLATE = "{out}/{{stem}}_{{item}}.{{ext}}"
RUNS = {
    "batch, folder, sync": (BATCH, "{out}/", False, "{stem}-{item}-0.png"),
    "batch, template, deferrable": (BATCH, BATCH_TEMPLATE, True, "{stem}_{item}.png"),
    "mapped, folder, deferrable": (MAPPED, "{out}/", True, "{stem}-{slot}-0.png"),
    "mapped, template, sync": (MAPPED, TEMPLATE, False, "{stem}_{slot}.png"),
}


def escape_candidates(tmp_path: Path) -> dict[Path, set[str]]:
    """What is in each folder a traversal from ``tmp_path/out`` or an absolute name could reach."""
    folders = {tmp_path.parent, tmp_path.parent.parent, Path("/etc"), Path("/"), Path.cwd()}
    return {folder: set(os.listdir(folder)) for folder in folders}


@pytest.mark.parametrize(
    ("body", "template", "deferrable", "pattern"), RUNS.values(), ids=RUNS.keys()
)
def test_hostile_source_names_are_written_inside_the_output_folder(
    run_dag, tmp_path, cometapi_emulator, body, template, deferrable, pattern
):
    out = tmp_path / "out"
    sources = [
        # the batch also takes (filename, bytes) pairs; a mapped literal list keeps only JSON
        f"({name!r}, base64.b64decode(B64))"
        if body is BATCH and slot % 3 == 2
        else f'{{"b64_json": B64, "filename": {name!r}}}'
        for slot, (name, _) in enumerate(HOSTILE.values())
    ]
    output_path = template.format(out=out)
    before = escape_candidates(tmp_path)

    outcome = run_dag(
        body.format(
            b64=BOAT_B64, output_path=output_path, deferrable=deferrable, sources=", ".join(sources)
        )
    )

    assert outcome.state == "success"
    assert len(cometapi_emulator.billed) == len(HOSTILE)
    if body is BATCH:
        written = outcome.outputs("edit")
    else:
        written = [uri for uris in outcome.xcoms("edit").values() for uri in uris]
    expected = [  # every source has the same bytes: batch items differ by occurrence
        pattern.format(stem=stem, slot=slot, item=item_of(BOAT_B64, slot))
        for slot, (_, stem) in enumerate(HOSTILE.values())
    ]
    assert sorted(uri.rsplit("/", 1)[1] for uri in written) == sorted(expected)
    for uri in written:
        assert_inside(uri, out)
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted(expected)
    outside = [p for p in tmp_path.rglob("*") if p != out and out not in p.parents]
    assert outside == []
    for path in out.rglob("*"):  # the provider's own bookkeeping folders are clean too
        assert all(CLEAN.fullmatch(part) for part in path.relative_to(out).parts[1:])
    for folder, names in escape_candidates(tmp_path).items():
        new = names - before[folder]
        assert [n for n in new if any(marker in n for marker in MARKERS)] == [], folder
