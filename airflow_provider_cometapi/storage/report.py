"""A batch's JSONL report in storage: one line per source, written in parts as items finish
(a killed task leaves its parts, each a readable JSONL file), then published whole, in
source order, when the task ends.

Where it lives, next to the outputs: ``<output folder>.cometapi-reports/<dag>/<run>/<task>[-<map
index>].jsonl``, its parts in ``… .parts/try-<n>-<part>.jsonl`` beside it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.storage.outputs import safe_stem
from airflow_provider_cometapi.storage.paths import (
    is_local,
    remove_empty_folders,
    storage_path,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_cometapi.pipeline.scope import TaskScope

REPORT_FOLDER = ".cometapi-reports"
PART_SECONDS = 5.0
"""A part is written at most this often (and when ``PART_LINES`` are waiting)."""
PART_LINES = 2_000
_now = time.monotonic


def report_folder(output_path: str) -> str:
    """The folder every output of ``output_path`` is in: its part before the first placeholder
    and the last ``/`` there (empty for a bare file name)."""
    head, slash, _ = output_path.split("{", 1)[0].rpartition("/")
    return head + slash


def report_location(output_path: str, scope: TaskScope) -> str:
    """The report's URI for this task instance, in ``report_folder(output_path)``."""
    folder = report_folder(output_path)
    task = scope.task_id if scope.map_index < 0 else f"{scope.task_id}-{scope.map_index}"
    parts = [safe_stem(part) for part in (scope.dag_id, scope.run_id, task)]
    return f"{folder}{REPORT_FOLDER}/{'/'.join(parts)}.jsonl"


class ReportParts:
    """The lines of one try, buffered and written as numbered parts: ``add`` never touches
    storage; ``write`` (blocking) writes what is waiting as the next part, and keeps it waiting
    when storage fails, for the next ``write``.

    :param location: the report's URI (``report_location``).
    """

    def __init__(self, location: str, conn_id: str | None, try_number: int) -> None:
        self.location, self.conn_id, self.try_number = location, conn_id, try_number
        self._waiting: list[str] = []
        self._written = 0
        self._last = _now()
        self._guard = threading.Lock()

    def add(self, line: dict[str, Any]) -> None:
        """One item's line, to be written with the next part."""
        text = json.dumps(line, sort_keys=True)
        with self._guard:
            self._waiting.append(text)

    @property
    def due(self) -> bool:
        """Whether enough lines or time went by for a part to be written."""
        return bool(self._waiting) and (
            len(self._waiting) >= PART_LINES or _now() - self._last >= PART_SECONDS
        )

    def write(self) -> None:
        """Write the waiting lines as the next part; raise the storage error, if any."""
        with self._guard:
            lines, self._last = list(self._waiting), _now()
        if not lines:
            return
        name = f"try-{self.try_number}-{self._written + 1:05d}.jsonl"
        part = storage_path(f"{parts_folder(self.location)}{name}", self.conn_id)
        if is_local(part):
            part.parent.mkdir(parents=True, exist_ok=True)
        part.write_text("".join(line + "\n" for line in lines))
        with self._guard:
            del self._waiting[: len(lines)]
            self._written += 1

    def unwritten(self) -> list[dict[str, Any]]:
        """The lines no part holds yet."""
        with self._guard:
            return [json.loads(line) for line in self._waiting]


def parts_folder(location: str) -> str:
    """Where a report's parts are written while its task runs."""
    return location.removesuffix(".jsonl") + ".parts/"


def read_parts(location: str, conn_id: str | None, try_number: int) -> list[dict[str, Any]]:
    """Every line one try's parts hold, in the order they were written."""
    lines: list[dict[str, Any]] = []
    for part in _parts(location, conn_id, f"try-{try_number}-"):
        lines.extend(json.loads(line) for line in part.read_text().splitlines() if line)
    return lines


def publish(location: str, conn_id: str | None, lines: Iterable[dict[str, Any]]) -> str:
    """Write the whole report (staged, then moved into place) and remove every try's parts."""
    final = storage_path(location, conn_id)
    if is_local(final):
        final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.partial"
    with staging.open("w") as handle:
        for line in lines:
            handle.write(json.dumps(line, sort_keys=True) + "\n")
    final.fs.mv(staging.path, final.path)
    for part in _parts(location, conn_id, "try-"):
        part.unlink()
    remove_empty_folders(parts_folder(location), conn_id, below=location.rpartition("/")[0])
    return str(final)


def _parts(location: str, conn_id: str | None, prefix: str) -> list[Any]:
    folder = storage_path(parts_folder(location), conn_id)
    try:
        found = [path for path in folder.iterdir() if path.name.startswith(prefix)]
    except FileNotFoundError:
        return []
    return sorted(found, key=lambda path: path.name)
