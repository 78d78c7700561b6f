"""Rows: a batch's sources given one row per edit, each with its image, prompt and parameters.

Rows are a list of dicts with an ``image`` key, or a ``.jsonl``/``.ndjson``/``.csv`` file in
storage. Every row is read and checked here, before anything is sent; no image is read.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.text import excerpt
from airflow_provider_cometapi.exceptions import (
    CometAPIRowsError,
    CometAPISourceError,
    CometAPIValidationError,
)
from airflow_provider_cometapi.storage.outputs import safe_stem
from airflow_provider_cometapi.storage.paths import URI, storage_path
from airflow_provider_cometapi.storage.sources import as_source_list

if TYPE_CHECKING:
    from airflow_provider_cometapi.api.request import EditParams

ROWS_SUFFIXES = (".jsonl", ".ndjson", ".csv")
PARAM_FIELDS = ("prompt", "model", "size", "quality", "n", "output_format")
"""Row fields that set their row's edit parameter over the operator's."""
MAX_NAMED = 10
"""Bad rows that ``rows_error`` names one by one."""
_MAX_MESSAGE = 240
_MAX_CELL = 128 * 1024 * 1024
"""A CSV cell may hold a base64 image: more than the csv module's 128 KiB default."""

Fields = Mapping[str, Any]
Record = tuple[int, Fields | CometAPIValidationError]
"""A row as read from a file: its line number, and its fields or what makes it no row."""


@dataclass(frozen=True)
class Row:
    """One checked row: its image and mask as given, and its edit parameters.

    :param place: where the row was given: ``line 3 of s3://b/rows.jsonl`` or ``sources[2]``.
    :param mask: the row's mask, or ``None`` when it gives none.
    :param params: the operator's parameters with this row's over them, prompt filled, checked.
    :param output_name: the stem of the row's output names, in place of its source's stem.
    """

    place: str
    image: Any
    mask: Any | None
    params: EditParams
    output_name: str | None


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be edited: where it was given and what is wrong with it."""

    place: str
    error: CometAPIValidationError


def are_rows(value: Any) -> bool:
    """Whether ``sources`` (templates rendered) are rows: a rows file, or a list holding a dict
    with an ``image`` key (a list of ``{"b64_json": ...}`` images is not rows)."""
    if _rows_file(value) is not None:
        return True
    try:
        listed = as_source_list(value, "sources")
    except CometAPIValidationError:
        return False
    return any(isinstance(item, Mapping) and "image" in item for item in listed)


def read_rows(value: Any, defaults: EditParams, conn_id: str | None) -> list[Row | BadRow]:
    """Every row, in order, checked; a file that cannot be read or parsed at all raises
    ``CometAPIRowsError`` (``CometAPISourceError`` when it cannot be found or opened) naming it.

    :param defaults: the operator's parameters; its prompt may hold ``{column}`` placeholders.
    :param conn_id: the connection for a rows file's object-storage URI.
    """
    location = _rows_file(value)
    if location is None:
        listed = as_source_list(value, "sources")
        return [_check(row, f"sources[{i}]", defaults) for i, row in enumerate(listed)]
    where = excerpt(location)
    return [
        _check(row, f"line {line} of {where}", defaults)
        for line, row in _read_file(location, conn_id)
    ]


def rows_error(bad: list[BadRow], total: int) -> CometAPIRowsError:
    """One error naming the first ``MAX_NAMED`` bad rows (place and message) and how many more."""
    named = [f"  {row.place}: {row.error.message}" for row in bad[:MAX_NAMED]]
    if len(bad) > MAX_NAMED:
        named.append(f"  and {len(bad) - MAX_NAMED} more.")
    return CometAPIRowsError(
        f"sources: {len(bad)} of {total} rows are bad, so nothing was sent; fix them and run "
        "again:\n" + "\n".join(named),
        param="sources",
    )


def _rows_file(value: Any) -> str | None:
    """The location of a rows file, or ``None`` when ``value`` is not one."""
    if isinstance(value, str) and value.strip().lower().endswith(ROWS_SUFFIXES):
        return value.strip()
    return None


def _check(row: Any, place: str, defaults: EditParams) -> Row | BadRow:
    """The checked row, or a ``BadRow`` whose message shows at most an excerpt of any value."""
    try:
        return _checked_row(row, place, defaults)
    except CometAPIValidationError as exc:
        if len(exc.message) > _MAX_MESSAGE:
            exc = CometAPIValidationError(excerpt(exc.message, _MAX_MESSAGE), param=exc.param)
        return BadRow(place, exc)


def _checked_row(row: Any, place: str, defaults: EditParams) -> Row:
    """The row, checked; raise ``CometAPIValidationError`` naming the field at fault."""
    if isinstance(row, CometAPIValidationError):  # a line that could not be parsed
        raise row
    if not isinstance(row, Mapping):
        raise CometAPIValidationError(
            f"is a {type(row).__name__}, not a row: give a dict with an 'image' and, if it "
            "needs them, a 'prompt' and other fields."
        )
    given = {str(name): value for name, value in row.items() if value not in (None, "")}
    if "image" not in given:
        raise CometAPIValidationError(
            "image is missing: give each row its image (a path, a URI or base64).", param="image"
        )
    changes = {name: given[name] for name in PARAM_FIELDS if name in given}
    if "n" in changes:
        changes["n"] = _whole_number(changes["n"])
    if "extra_fields" in given:
        changes["extra_fields"] = {
            **(defaults.extra_fields or {}),
            **_extra_fields(given["extra_fields"]),
        }
    changes["prompt"] = _fill(changes.get("prompt", defaults.prompt), given)
    params = replace(defaults, **changes).checked()
    return Row(place, given["image"], given.get("mask"), params, _output_name(given))


def _fill(template: Any, fields: Fields) -> Any:
    """The prompt with its ``{column}`` placeholders filled from the row (``{{``/``}}``: braces)."""
    if not isinstance(template, str):
        return template  # check_prompt refuses it
    try:
        return template.format_map(_AsText(fields))
    except KeyError as exc:
        raise CometAPIValidationError(
            f"prompt uses {{{excerpt(str(exc.args[0]), 60)}}}, a column this row does not give: "
            "give it a value, or write {{ and }} for literal braces.",
            param="prompt",
        ) from None
    except (ValueError, IndexError, AttributeError, TypeError) as exc:
        raise CometAPIValidationError(
            f"prompt is not a valid template ({excerpt(str(exc), 80)}): name columns as "
            "{column}, and write {{ and }} for literal braces.",
            param="prompt",
        ) from None


class _AsText:
    """A row's values as the text placeholders show: strings as they are, lists and dicts as
    JSON, anything else as ``str()``; converted only when a placeholder asks."""

    def __init__(self, fields: Fields) -> None:
        self._fields = fields

    def __getitem__(self, name: str) -> str:
        value = self._fields[name]
        if isinstance(value, str):
            return value
        if isinstance(value, (Mapping, list)):
            return json.dumps(value, default=str)
        return str(value)


def _whole_number(value: Any) -> Any:
    """A whole number given as text or a float (``"2"``, ``"2.0"``, ``2.0``) as an ``int``;
    anything else as it is, for the model's rules to refuse by name."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
    if isinstance(number, float) and number.is_integer():
        return int(number)
    return value


def _extra_fields(value: Any) -> Mapping[str, Any]:
    """A row's ``extra_fields``: a dict, or a JSON object as text (a CSV cell)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, Mapping):
        raise CometAPIValidationError(
            'extra_fields is not a JSON object: give one such as {"background": "transparent"}.',
            param="extra_fields",
        )
    return value


def _output_name(given: Fields) -> str | None:
    """The row's ``output_name``: a plain file-name stem, kept as it is in output names."""
    name = given.get("output_name")
    if name is None:
        return None
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)
    if not isinstance(name, str) or safe_stem(name) != name:
        raise CometAPIValidationError(
            f"output_name is {excerpt(repr(name), 60)}; use at most 100 letters, digits, '.', "
            "'_' and '-', not starting with '.' or '_'.",
            param="output_name",
        )
    return name


def _read_file(location: str, conn_id: str | None) -> list[Record]:
    """Each row of a rows file with its line number, read line by line; a line that cannot be
    parsed as a row is its error. Raise when the file cannot be read, or holds no rows."""
    where = excerpt(location)
    kind = "CSV" if location.lower().endswith(".csv") else "JSON Lines"
    try:  # a local path is read without a connection, as sources are
        path = storage_path(location, conn_id if URI.match(location) else None)
    except Exception as exc:  # an unknown scheme, a storage provider not installed
        raise CometAPISourceError(
            f"sources: cannot open {where} ({type(exc).__name__}: {excerpt(str(exc))}); check "
            "its scheme, its connection and that the provider for that storage is installed.",
            param="sources",
        ) from None
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            rows = list(_csv_rows(handle, where) if kind == "CSV" else _jsonl_rows(handle))
    except CometAPIValidationError:
        raise
    except FileNotFoundError:
        raise CometAPISourceError(
            f"sources: nothing found at {where}; check the path and the source connection.",
            param="sources",
        ) from None
    except (IsADirectoryError, PermissionError) as exc:
        problem = "it is a folder" if isinstance(exc, IsADirectoryError) else "no permission"
        raise CometAPISourceError(
            f"sources: cannot read {where}: {problem}; name a rows file the source connection "
            "(or the worker's user) can read.",
            param="sources",
        ) from None
    except Exception as exc:  # not UTF-8, bad CSV quoting, storage back ends' own errors
        raise CometAPIRowsError(
            f"sources: cannot read {where} as {kind} ({type(exc).__name__}: "
            f"{excerpt(str(exc))}); save it as UTF-8 {kind} and check the source connection.",
            param="sources",
        ) from None
    if not rows:
        raise CometAPIRowsError(
            f"sources: {where} holds no rows; write one row per line"
            + (", under a header line naming the columns." if kind == "CSV" else ".")
            + " Nothing was sent.",
            param="sources",
        )
    return rows


def _jsonl_rows(lines: Iterator[str]) -> Iterator[Record]:
    """Each non-blank line's row, with its line number."""
    for line, text in enumerate(lines, start=1):
        if text.strip():
            yield line, _jsonl_row(text)


def _jsonl_row(text: str) -> Fields | CometAPIValidationError:
    """One line's JSON object, or the error that makes it no row."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        return CometAPIValidationError(
            f"is not valid JSON (column {exc.colno}: {exc.msg}); write one JSON object per line."
        )
    if not isinstance(row, dict):
        return CometAPIValidationError(
            f"is a JSON {type(row).__name__}, not an object; write one JSON object per line, "
            'such as {"image": "in/a.png", "prompt": "..."}.'
        )
    return row


def _csv_rows(lines: Iterator[str], where: str) -> Iterator[Record]:
    """Each record under the header line, with the line it starts on (the header is line 1);
    records with no value at all are skipped."""
    csv.field_size_limit(max(csv.field_size_limit(), _MAX_CELL))
    reader = csv.reader(lines, skipinitialspace=True)
    header = [name.strip() for name in next((cells for cells in reader if any(cells)), [])]
    if not header:
        return
    if "image" not in header:
        raise CometAPIRowsError(
            f"sources: {where} has no 'image' column (its header line names "
            f"{excerpt(', '.join(header), 80)}); name the image column 'image'.",
            param="sources",
        )
    end = reader.line_num
    for cells in reader:
        start, end = end + 1, reader.line_num
        if any(cells):
            yield start, _csv_row(header, cells)


def _csv_row(header: list[str], cells: list[str]) -> Fields | CometAPIValidationError:
    """A record's non-empty cells by column, or the error that makes it no row."""
    if len(cells) > len(header):
        return CometAPIValidationError(
            f"has {len(cells)} cells but the header names {len(header)} columns; quote cells "
            "that hold commas."
        )
    return {name: cell for name, cell in zip(header, cells, strict=False) if cell != ""}
