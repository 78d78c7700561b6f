"""Rows as batch sources: detected, read from real files (local and S3) and checked up front."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from airflow_provider_cometapi.api.request import EditParams
from airflow_provider_cometapi.exceptions import CometAPIRowsError, CometAPISourceError
from airflow_provider_cometapi.pipeline.rows import BadRow, Row, are_rows, read_rows, rows_error
from tests.s3 import S3_CONN_ID

DEFAULTS = EditParams(prompt="Paint the boat {colour}.", model="gpt-image-2", size="1024x1024")
PLAIN = EditParams(prompt="Add a red ribbon.", model="gpt-image-2")
IMAGE_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40).decode()


def write_jsonl(path, rows) -> str:
    path.write_text("".join(f"{json.dumps(row)}\n" for row in rows))
    return str(path)


def only_rows(read) -> list[Row]:
    assert all(isinstance(row, Row) for row in read), [r for r in read if isinstance(r, BadRow)]
    return read


def bad_rows(read) -> dict[str, BadRow]:
    return {row.place: row for row in read if isinstance(row, BadRow)}


def test_a_list_of_dicts_sets_each_rows_parameters_over_the_operators():
    rows = only_rows(
        read_rows(
            [
                {"image": "in/a.png", "colour": "red"},
                {"image": {"b64_json": IMAGE_B64}, "mask": "in/m.png", "colour": "blue", "n": 2},
                {"image": "in/c.png", "prompt": "Remove the boat.", "size": "auto"},
            ],
            DEFAULTS,
            None,
        )
    )

    assert [row.place for row in rows] == ["sources[0]", "sources[1]", "sources[2]"]
    assert [row.params.prompt for row in rows] == [
        "Paint the boat red.",
        "Paint the boat blue.",
        "Remove the boat.",
    ]
    assert [row.params.size for row in rows] == ["1024x1024", "1024x1024", "auto"]
    assert [row.params.n for row in rows] == [None, 2, None]
    assert rows[1].image == {"b64_json": IMAGE_B64}  # passed on as given
    assert [row.mask for row in rows] == [None, "in/m.png", None]


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_a_jsonl_file_is_read_by_path_and_by_file_uri(tmp_path, scheme):
    location = write_jsonl(
        tmp_path / "rows.jsonl",
        [
            {"image": "s3://b/in/a.png", "colour": "green", "output_name": "boat-green"},
            {"image": "s3://b/in/b.png", "colour": "gold", "quality": "high"},
        ],
    )

    rows = only_rows(read_rows(f"{scheme}{location}", DEFAULTS, None))

    assert [row.place for row in rows] == [
        f"line 1 of {scheme}{location}",
        f"line 2 of {scheme}{location}",
    ]
    assert [row.image for row in rows] == ["s3://b/in/a.png", "s3://b/in/b.png"]
    assert [row.params.prompt for row in rows] == ["Paint the boat green.", "Paint the boat gold."]
    assert [row.params.quality for row in rows] == [None, "high"]
    assert [row.output_name for row in rows] == ["boat-green", None]


def test_blank_jsonl_lines_are_skipped_and_line_numbers_stay_physical(tmp_path):
    path = tmp_path / "rows.NDJSON"
    path.write_text(
        '\n{"image": "a.png", "colour": "red"}\n\n  \n'
        '{"image": "b.png", "colour": "red", "size": "big"}\n'
    )

    read = read_rows(f"  {path}  ", DEFAULTS, None)

    assert [row.place for row in read] == [f"line 2 of {path}", f"line 5 of {path}"]
    assert isinstance(read[0], Row)
    assert isinstance(read[1], BadRow)
    assert read[1].error.param == "size"


def test_a_csv_file_reads_text_cells_as_parameters(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(
        "image,mask,colour,n,quality,extra_fields,output_name\n"
        'in/a.png,,red,2,,"{""background"": ""transparent""}",first\n'
        "in/b.png,in/m.png,blue,2.0,low,,\n"
        "in/c.png,,teal,,,,\n"
    )
    operator = EditParams(
        prompt="Paint the boat {colour}.",
        model="gpt-image-2",
        extra_fields={"moderation": "low", "background": "opaque"},
    )

    rows = only_rows(read_rows(str(path), operator, None))

    assert [row.place for row in rows] == [f"line {line} of {path}" for line in (2, 3, 4)]
    assert [row.params.n for row in rows] == [2, 2, None]
    assert [row.mask for row in rows] == [None, "in/m.png", None]  # an empty cell: not given
    assert [row.params.quality for row in rows] == [None, "low", None]
    assert rows[0].params.extra_fields == {"moderation": "low", "background": "transparent"}
    assert rows[1].params.extra_fields == {"moderation": "low", "background": "opaque"}
    assert [row.output_name for row in rows] == ["first", None, None]
    assert rows[2].params.prompt == "Paint the boat teal."


def test_a_csv_record_over_several_lines_keeps_later_line_numbers_physical(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(
        '\ufeffimage, prompt\nin/a.png, "Two lines,\nof prompt."\nin/b.png,\n,,\nin/c.png, Hi.\n'
    )

    rows = only_rows(read_rows(str(path), PLAIN, None))

    assert [row.place for row in rows] == [f"line {line} of {path}" for line in (2, 4, 6)]
    assert rows[0].params.prompt == "Two lines,\nof prompt."
    assert rows[1].params.prompt == "Add a red ribbon."  # the operator's, the cell being empty
    assert rows[2].params.prompt == "Hi."


def test_a_csv_cell_may_hold_a_base64_image_over_128_kib(tmp_path):
    image = IMAGE_B64 * 20  # 270 KB, over the csv module's default cell limit
    path = tmp_path / "rows.csv"
    path.write_text(f"image,prompt\n{image},Hi.\n")

    [row] = only_rows(read_rows(str(path), PLAIN, None))

    assert row.image == image


@pytest.mark.parametrize(
    ("cell", "expected"), [("2", 2), ("2.0", 2), (" 3 ", 3), ("2.5", None), ("two", None)]
)
def test_csv_n_must_be_a_whole_number(tmp_path, cell, expected):
    path = tmp_path / "rows.csv"
    path.write_text(f'image,n\nin/a.png,"{cell}"\n')

    [row] = read_rows(str(path), PLAIN, None)

    if expected is None:
        assert isinstance(row, BadRow)
        assert row.place == f"line 2 of {path}"
        assert row.error.param == "n"
        assert "whole number" in row.error.message
    else:
        assert isinstance(row, Row)
        assert row.params.n == expected


def test_placeholders_fill_from_the_row_and_double_braces_stay_braces():
    operator = EditParams(prompt="{{Style}}: {style}; {count} boats, {tags}", model="m")

    [row] = only_rows(
        read_rows([{"image": "a.png", "style": "ink", "count": 3, "tags": ["a"]}], operator, None)
    )

    assert row.params.prompt == '{Style}: ink; 3 boats, ["a"]'


def test_a_placeholder_naming_a_missing_column_is_a_bad_row_naming_line_and_column(tmp_path):
    location = write_jsonl(
        tmp_path / "rows.jsonl",
        [{"image": "a.png", "colour": "red"}, {"image": "b.png"}, {"image": "c.png", "colour": ""}],
    )

    read = read_rows(location, DEFAULTS, None)

    assert isinstance(read[0], Row)
    bad = bad_rows(read)
    assert sorted(bad) == [f"line 2 of {location}", f"line 3 of {location}"]
    for row in bad.values():
        assert row.error.param == "prompt"
        assert "{colour}" in row.error.message


@pytest.mark.parametrize("template", ["Paint it {", "Paint it {0}", "Paint it {}", "{c.x}"])
def test_a_malformed_template_is_a_bad_row(template):
    operator = EditParams(prompt=template, model="m")

    [row] = read_rows([{"image": "a.png", "c": "x"}], operator, None)

    assert isinstance(row, BadRow)
    assert row.error.param == "prompt"
    assert "{{ and }}" in row.error.message


@pytest.mark.parametrize(
    ("field", "value", "advice"),
    [
        ("size", "big", "WIDTHxHEIGHT"),
        ("n", 0, "from 1 to 10"),
        ("output_format", "gif", "png, jpeg, webp"),
        ("quality", "best", "high, medium"),
        ("extra_fields", "not json", "JSON object"),
        ("extra_fields", {"prompt": "x"}, "pass it as the prompt argument"),
        ("output_name", "../escape", "letters, digits"),
        ("prompt", " ", "prompt is empty"),
    ],
)
def test_a_bad_field_is_reported_with_its_line(tmp_path, field, value, advice):
    location = write_jsonl(
        tmp_path / "rows.jsonl",
        [{"image": "a.png", "colour": "red"}, {"image": "b.png", "colour": "red", field: value}],
    )

    read = read_rows(location, DEFAULTS, None)

    assert isinstance(read[0], Row)
    assert isinstance(read[1], BadRow)
    assert read[1].place == f"line 2 of {location}"
    assert read[1].error.param == field
    assert advice in read[1].error.message


def test_a_csv_record_with_more_cells_than_columns_is_bad(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('image,prompt\nin/a.png,Paint it red, then blue.\nin/b.png,"Red, then blue."\n')

    read = read_rows(str(path), PLAIN, None)

    assert isinstance(read[0], BadRow)
    assert read[0].place == f"line 2 of {path}"
    assert "has 3 cells but the header names 2 columns" in read[0].error.message
    assert isinstance(read[1], Row)
    assert read[1].params.prompt == "Red, then blue."


def test_a_row_without_an_image_is_bad(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("image,colour\nin/a.png,red\n,blue\n")

    read = read_rows(str(path), DEFAULTS, None)

    assert isinstance(read[0], Row)
    assert isinstance(read[1], BadRow)
    assert (read[1].place, read[1].error.param) == (f"line 3 of {path}", "image")


def test_a_jsonl_line_that_is_not_an_object_is_a_bad_row_not_a_bad_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"image": "a.png", "colour": "red"}\n["b.png"]\n{"image": "c.png",\n"c.png"\n')

    read = read_rows(str(path), DEFAULTS, None)

    assert isinstance(read[0], Row)
    assert [row.place for row in read[1:]] == [f"line {n} of {path}" for n in (2, 3, 4)]
    assert "is a JSON list, not an object" in read[1].error.message
    assert "is not valid JSON" in read[2].error.message
    assert "is a JSON str, not an object" in read[3].error.message


@pytest.mark.parametrize(
    ("name", "text"), [("rows.jsonl", ""), ("rows.jsonl", "\n \n"), ("rows.csv", "image,prompt\n")]
)
def test_a_file_without_rows_is_refused_whole(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)

    with pytest.raises(CometAPIRowsError) as raised:
        read_rows(str(path), PLAIN, None)

    assert f"{path} holds no rows" in str(raised.value)


def test_a_csv_without_an_image_column_is_refused_whole(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("picture,prompt\na.png,Hi\n")

    with pytest.raises(CometAPIRowsError) as raised:
        read_rows(str(path), PLAIN, None)

    message = str(raised.value)
    assert f"{path} has no 'image' column" in message
    assert "picture, prompt" in message


def test_a_file_that_is_not_utf8_is_refused_whole(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(b"image\n\xff\xfe.png\n")

    with pytest.raises(CometAPIRowsError) as raised:
        read_rows(str(path), PLAIN, None)

    assert f"cannot read {path} as CSV" in str(raised.value)


def test_a_missing_file_is_a_source_error_naming_it(tmp_path):
    location = f"{tmp_path}/nowhere/rows.jsonl"

    with pytest.raises(CometAPISourceError) as raised:
        read_rows(location, PLAIN, None)

    assert f"nothing found at {location}" in str(raised.value)


def test_rows_are_read_from_s3(s3):
    bucket = f"rows-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    body = "image,colour,n\ns3://in/a.png,red,1\ns3://in/b.png,blue,11\n"
    s3.put_object(Bucket=bucket, Key="batch/rows.csv", Body=body.encode())
    location = f"s3://{bucket}/batch/rows.csv"

    read = read_rows(location, DEFAULTS, S3_CONN_ID)

    assert isinstance(read[0], Row)
    assert read[0].params.prompt == "Paint the boat red."
    assert isinstance(read[1], BadRow)
    assert (read[1].place, read[1].error.param) == (f"line 3 of {location}", "n")


def test_a_missing_s3_object_is_a_source_error(s3):
    bucket = f"rows-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)

    with pytest.raises(CometAPISourceError) as raised:
        read_rows(f"s3://{S3_CONN_ID}@{bucket}/rows.jsonl", PLAIN, None)

    assert "nothing found at" in str(raised.value)


@pytest.mark.parametrize(
    "value",
    [
        [{"image": "a.png"}],
        [{"image": "a.png"}, {"imgae": "b.png"}],  # a typo is a bad row, not a plain source
        [{"b64_json": IMAGE_B64, "image": "a.png"}],
        "[{'image': 'a.png', 'prompt': 'Hi'}]",  # a list a template rendered to text
        "s3://b/rows.jsonl",
        " in/rows.NDJSON ",
        "file:///data/Rows.CSV",
    ],
)
def test_rows_are_recognised(value):
    assert are_rows(value)


@pytest.mark.parametrize(
    "value",
    [
        [{"b64_json": IMAGE_B64}, {"b64_json": IMAGE_B64}],
        ["in/{colour}.png", {"b64_json": IMAGE_B64}],
        "in/a.png",
        "s3://b/inbox/",
        "s3://b/rows.jsonl.png",
        IMAGE_B64,
        None,
        [],
    ],
)
def test_images_and_prefixes_are_not_rows(value):
    assert not are_rows(value)


def test_a_list_element_that_is_not_a_row_is_a_bad_row():
    read = read_rows([{"image": "a.png"}, "b.png", {"imgae": "c.png"}], PLAIN, None)

    bad = bad_rows(read)
    assert sorted(bad) == ["sources[1]", "sources[2]"]
    assert "is a str, not a row" in bad["sources[1]"].error.message
    assert bad["sources[2]"].error.param == "image"


def test_ten_thousand_rows_are_read_with_each_bad_one_found(tmp_path):
    rows = [
        {"image": f"s3://b/in/{i}.png", "colour": "red", "n": 0 if i % 1000 == 999 else 1}
        for i in range(10_000)
    ]
    location = write_jsonl(tmp_path / "rows.jsonl", rows)

    read = read_rows(location, DEFAULTS, None)

    assert len(read) == 10_000
    assert sorted(bad_rows(read)) == sorted(
        f"line {i} of {location}" for i in range(1000, 10_001, 1000)
    )
    assert read[-2].image == "s3://b/in/9998.png"


def test_rows_error_names_the_first_ten_bad_rows_and_counts_the_rest(tmp_path):
    location = write_jsonl(
        tmp_path / "rows.jsonl", [{"image": f"{i}.png", "size": "huge"} for i in range(13)]
    )
    bad = [row for row in read_rows(location, PLAIN, None) if isinstance(row, BadRow)]

    error = rows_error(bad, 20)

    message = str(error)
    assert isinstance(error, CometAPIRowsError)
    assert error.param == "sources"
    assert message.startswith("sources: 13 of 20 rows are bad, so nothing was sent")
    for line in range(1, 11):
        assert f"line {line} of {location}: size is 'huge'" in message
    assert f"line 11 of {location}" not in message
    assert message.endswith("and 3 more.")


def test_a_bad_row_never_echoes_a_long_value(tmp_path):
    location = write_jsonl(
        tmp_path / "rows.jsonl",
        [{"image": IMAGE_B64, "size": IMAGE_B64, "output_name": IMAGE_B64}, {"image": IMAGE_B64}],
    )

    read = read_rows(location, PLAIN, None)

    message = str(rows_error([row for row in read if isinstance(row, BadRow)], len(read)))
    assert f"line 1 of {location}: size is" in message
    assert IMAGE_B64[:200] not in message
    assert len(message) < 500
    assert isinstance(read[1], Row)
    assert read[1].image == IMAGE_B64
