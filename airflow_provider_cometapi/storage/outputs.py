"""Name each edited image and write it through ``ObjectStoragePath``, leaving no partial file."""

from __future__ import annotations

import re
import string
import uuid
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.results import EXTENSIONS
from airflow_provider_cometapi.api.text import excerpt
from airflow_provider_cometapi.exceptions import CometAPIOutputError, CometAPIValidationError
from airflow_provider_cometapi.storage.paths import storage_path

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PLACEHOLDERS = frozenset({"stem", "index", "ext", "map_index"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def check_output_path(output_path: str, *, n: int, mapped: bool) -> None:
    """Refuse, before any paid call, an ``output_path`` whose names could collide."""
    if output_path.endswith("/"):
        return
    used = _placeholders(output_path)
    if not used:
        if n > 1 or mapped:
            raise CometAPIValidationError(
                f"output_path {output_path!r} names one file, but this task writes "
                f"{'several outputs' if n > 1 else 'one output per mapped task instance'}: end "
                "it with '/' to write into a folder, or use {index} and {map_index}.",
                param="output_path",
            )
        return
    if n > 1 and "index" not in used:
        raise CometAPIValidationError(
            f"output_path {output_path!r} has no {{index}} but n={n}: add {{index}} so the "
            "outputs do not overwrite each other.",
            param="output_path",
        )
    if mapped and "map_index" not in used:
        raise CometAPIValidationError(
            f"output_path {output_path!r} has no {{map_index}} in a mapped task: add it so the "
            "mapped task instances do not overwrite each other.",
            param="output_path",
        )


def output_targets(
    output_path: str,
    *,
    stem: str,
    extensions: Sequence[str],
    map_index: int,
    first_index: int = 0,
) -> list[str]:
    """The final location of each output, in order."""
    stem = safe_stem(stem)
    targets = []
    for index, ext in enumerate(extensions, start=first_index):
        if output_path.endswith("/"):
            mapped = f"-{map_index}" if map_index >= 0 else ""
            targets.append(f"{output_path}{stem}{mapped}-{index}.{ext}")
        else:
            used = _placeholders(output_path)
            values = {"stem": stem, "index": index, "ext": ext, "map_index": max(map_index, 0)}
            target = output_path.format(**values) if used else output_path
            targets.append(target if index == 0 or "index" in used else _beside(target, index))
    return targets


def _beside(target: str, index: int) -> str:
    """``out/boat.png`` -> ``out/boat-2.png``: room for more outputs than the name allows."""
    folder, _, name = target.rpartition("/")
    base, dot, suffix = name.rpartition(".")
    name = f"{base}-{index}.{suffix}" if dot else f"{name}-{index}"
    return f"{folder}/{name}" if folder else name


def output_folder(output_path: str, *, stem: str = "image", map_index: int = -1) -> str:
    """The folder of the first output (placeholders filled in), ending with ``/``."""
    (first,) = output_targets(output_path, stem=stem, extensions=["png"], map_index=map_index)
    return first.rpartition("/")[0] + "/"


def safe_stem(stem: str) -> str:
    """A file-name stem that cannot leave the output folder: no separators, no leading dots.

    Of a path (``a/b/../c.png``, ``..\\..\\c.png``) only the last part counts, so a source name
    gives the same stem whether it arrives as a stem (sync) or as a staged file name (deferrable).
    """
    last = re.split(r"[/\\]", stem.rstrip("/\\"))[-1]
    cleaned = _UNSAFE.sub("_", last).lstrip("._")
    return cleaned[:100] or "image"


class StagedOutputs:
    """An image sink that stages each output next to its target and moves them in on commit.

    Nothing reaches a final path until every output is complete: ``discard()`` (or a failed
    ``commit()``) removes what was staged, so no partial file is ever left behind.
    """

    def __init__(self, output_path: str, *, stem: str, map_index: int, conn_id: str | None) -> None:
        self.output_path = output_path
        self.stem = stem
        self.map_index = map_index
        self.conn_id = conn_id
        self._staged: dict[int, tuple[Any, Any, Any]] = {}

    def open_writer(self, slot: int, mime_type: str) -> Any:
        """Open the staging file for output ``slot``."""
        (target,) = output_targets(
            self.output_path,
            stem=self.stem,
            extensions=[EXTENSIONS[mime_type]],
            map_index=self.map_index,
            first_index=slot,
        )
        final = storage_path(target, self.conn_id)
        staging = final.parent / f".{final.name}.{uuid.uuid4().hex[:12]}.partial"
        try:
            if final.protocol in ("", "file", "local"):
                final.parent.mkdir(parents=True, exist_ok=True)
            handle = staging.open("wb")
        except Exception as exc:
            raise self._failed(exc) from exc
        self._staged[slot] = (staging, final, handle)
        return _GuardedWriter(handle, self._failed)

    @property
    def folder(self) -> str:
        """The folder of this sink's first output."""
        return output_folder(self.output_path, stem=self.stem, map_index=self.map_index)

    @property
    def targets(self) -> list[str]:
        """The final URIs, in slot order."""
        return [str(self._staged[slot][1]) for slot in sorted(self._staged)]

    def commit(self) -> list[str]:
        """Move every staged output into place; return the final URIs in slot order."""
        moved = []
        try:
            for slot in sorted(self._staged):
                staging, final, handle = self._staged[slot]
                handle.close()
                final.fs.mv(staging.path, final.path)
                moved.append(final)
        except Exception as exc:
            self.discard()
            for final in moved:  # all or nothing: no output of a half-committed edit stays
                _remove(final)
            raise self._failed(exc) from exc
        return self.targets

    def _failed(self, exc: Exception) -> CometAPIOutputError:
        return CometAPIOutputError(
            f"Writing the edited images to {excerpt(self.output_path)} failed "
            f"({type(exc).__name__}: {excerpt(str(exc), 200)}); nothing partial was left. Check "
            "output_path and output_conn_id, then retry the task."
        )

    def discard(self) -> None:
        """Abort open writes and remove every staged file (best effort)."""
        for staging, _, handle in self._staged.values():
            # Abort (s3fs drops its multipart upload), then close anyway: a local file cannot
            # discard and would keep its descriptor, and an s3fs file left open fails when
            # collected. Whatever closing writes goes with the staged file below.
            for step in (getattr(handle, "discard", None), handle.close):
                try:
                    if callable(step):
                        step()
                except Exception:  # the original error is what the caller needs
                    pass
            _remove(staging)


def _placeholders(template: str) -> set[str]:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise CometAPIValidationError(
            f"output_path {template!r} has unbalanced braces ({exc}).", param="output_path"
        ) from None
    unknown = names - PLACEHOLDERS
    if unknown:
        raise CometAPIValidationError(
            f"output_path uses unknown placeholder(s) {sorted(unknown)}; use "
            f"{{stem}}, {{index}}, {{ext}} or {{map_index}}.",
            param="output_path",
        )
    return names


def _remove(path: Any) -> None:
    """Delete a file if it is there (best effort: the caller is already handling an error)."""
    try:
        if path.exists():
            path.unlink()
    except Exception:
        return


class _GuardedWriter:
    """A staged file's writer whose storage errors surface as ``CometAPIOutputError``."""

    def __init__(self, handle: Any, failed: Callable[[Exception], CometAPIOutputError]) -> None:
        self._handle, self._failed = handle, failed

    def write(self, data: bytes) -> object:
        try:
            return self._handle.write(data)
        except Exception as exc:
            raise self._failed(exc) from exc

    def close(self) -> None:
        try:
            self._handle.close()
        except Exception as exc:
            raise self._failed(exc) from exc
