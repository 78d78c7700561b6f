"""Name each edited image and write it through ``ObjectStoragePath``, leaving no partial file."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import re
import string
import tempfile
import uuid
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.results import EXTENSIONS
from airflow_provider_cometapi.api.sinks import SPOOL_IN_MEMORY
from airflow_provider_cometapi.api.text import excerpt
from airflow_provider_cometapi.exceptions import (
    CometAPIOutputConflictError,
    CometAPIOutputError,
    CometAPIValidationError,
)
from airflow_provider_cometapi.storage.paths import is_local, storage_path

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

PLACEHOLDERS = frozenset({"stem", "index", "ext", "map_index", "item"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def check_output_path(output_path: str, *, n: int, mapped: bool, items: int = 1) -> None:
    """Refuse, before any paid call, an ``output_path`` whose names could collide.

    :param items: how many batch items share the path (each needs ``{item}`` in a template).
    """
    if output_path.endswith("/"):
        return
    used = _placeholders(output_path)
    if not used:
        if n > 1 or mapped or items > 1:
            what = "several outputs" if n > 1 or items > 1 else "one output per mapped task"
            raise CometAPIValidationError(
                f"output_path {output_path!r} names one file, but this task writes {what}: end "
                "it with '/' to write into a folder, or use {item}, {index} and {map_index}.",
                param="output_path",
            )
        return
    if items > 1 and "item" not in used:
        raise CometAPIValidationError(
            f"output_path {output_path!r} has no {{item}} but the batch has {items} items: add "
            "{item} (each source's short id) so the items do not overwrite each other.",
            param="output_path",
        )
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
    item: str | None = None,
    first_index: int = 0,
) -> list[str]:
    """The final location of each output, in order.

    In a folder: ``{stem}[-{item}][-{map_index}]-{index}.{ext}``, the item's short id for batch
    items and the map index for mapped tasks; a template fills in the same values.
    """
    stem = safe_stem(stem)
    targets = []
    for index, ext in enumerate(extensions, start=first_index):
        if output_path.endswith("/"):
            parts = [stem, item, str(map_index) if map_index >= 0 else None, str(index)]
            targets.append(f"{output_path}{'-'.join(p for p in parts if p)}.{ext}")
        else:
            used = _placeholders(output_path)
            values = {
                "stem": stem,
                "index": index,
                "ext": ext,
                "map_index": max(map_index, 0),
                "item": item or "",
            }
            target = output_path.format(**values) if used else output_path
            targets.append(target if index == 0 or "index" in used else _beside(target, index))
    return targets


def _beside(target: str, index: int) -> str:
    """``out/boat.png`` -> ``out/boat-2.png``: room for more outputs than the name allows."""
    folder, _, name = target.rpartition("/")
    base, dot, suffix = name.rpartition(".")
    name = f"{base}-{index}.{suffix}" if dot else f"{name}-{index}"
    return f"{folder}/{name}" if folder else name


def output_folder(
    output_path: str, *, stem: str = "image", map_index: int = -1, item: str | None = None
) -> str:
    """The folder of the first output (placeholders filled in), ending with ``/``."""
    (first,) = output_targets(
        output_path, stem=stem, extensions=["png"], map_index=map_index, item=item
    )
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
    ``commit()``) removes what was staged, so no partial file is ever left behind. Each
    output's size and sha256 are taken while it streams, for the manifest, and a local spool
    keeps a copy until the commit, so that a paid edit still has its images when storage fails
    it (``kept_images``).

    :param item: the batch item's short id, part of its output names.
    :param replace: overwrite whatever the final names hold; otherwise ``commit`` never
        overwrites an object it was not told it may replace.
    """

    def __init__(
        self,
        output_path: str,
        *,
        stem: str,
        map_index: int,
        conn_id: str | None,
        item: str | None = None,
        replace: bool = False,
    ) -> None:
        self.output_path = output_path
        self.stem = stem
        self.map_index = map_index
        self.conn_id = conn_id
        self.item = item
        self.replace = replace
        self._staged: dict[int, tuple[Any, Any, _CheckedWriter]] = {}

    def targets_for(self, extensions: Sequence[str]) -> list[str]:
        """The final URIs of outputs with these extensions, in slot order."""
        return output_targets(
            self.output_path,
            stem=self.stem,
            extensions=extensions,
            map_index=self.map_index,
            item=self.item,
        )

    def open_writer(self, slot: int, mime_type: str) -> Any:
        """Open the staging file for output ``slot``."""
        (target,) = output_targets(
            self.output_path,
            stem=self.stem,
            extensions=[EXTENSIONS[mime_type]],
            map_index=self.map_index,
            item=self.item,
            first_index=slot,
        )
        final = storage_path(target, self.conn_id)
        staging = final.parent / f".{final.name}.{uuid.uuid4().hex[:12]}.partial"
        writer = _CheckedWriter(self._failed, mime_type)
        self._staged[slot] = (staging, final, writer)
        try:
            if is_local(final):
                final.parent.mkdir(parents=True, exist_ok=True)
            writer.start(staging.open("wb"))
        except Exception as exc:
            writer.give_up(exc)
        return writer

    @property
    def folder(self) -> str:
        """The folder of this sink's first output."""
        return output_folder(
            self.output_path, stem=self.stem, map_index=self.map_index, item=self.item
        )

    @property
    def targets(self) -> list[str]:
        """The final URIs, in slot order."""
        return [str(self._staged[slot][1]) for slot in sorted(self._staged)]

    def files(self) -> list[dict[str, Any]]:
        """Each output's final URI, size and sha256, in slot order (for the manifest)."""
        return [
            {"uri": str(final), "bytes": writer.size, "sha256": writer.digest.hexdigest()}
            for _, final, writer in (self._staged[slot] for slot in sorted(self._staged))
        ]

    def kept_images(self) -> list[dict[str, str]]:
        """Each output as streamed (``mime_type`` and base64 ``b64``), from the local spools,
        in slot order: what a paid edit still has when storage failed it."""
        return [writer.kept() for _, _, writer in (self._staged[s] for s in sorted(self._staged))]

    def commit(self, replaceable: Collection[str] = ()) -> list[str]:
        """Move every staged output into place; return the final URIs in slot order.

        :param replaceable: final URIs known to hold this very edit's earlier outputs, which
            may be overwritten. Any other object in the way (unless ``replace``) fails the
            commit with ``CometAPIOutputConflictError``, and the staged outputs are kept
            under their own names beside it, never lost.
        """
        moved: list[Any] = []
        try:
            for slot in sorted(self._staged):
                staging, final, writer = self._staged[slot]
                writer.close()
                if writer.error is not None:  # a storage error while the answer streamed in
                    raise writer.error
                if self.replace or str(final) in replaceable:
                    final.fs.mv(staging.path, final.path)
                else:
                    _move_if_absent(staging, final)
                moved.append(final)
        except FileExistsError as exc:
            raise self._keep(moved, exc) from exc
        except Exception as exc:
            self._remove_staged()  # the spools stay: kept_images() may still want them
            for final in moved:  # all or nothing: no output of a half-committed edit stays
                _remove(final)
            if isinstance(exc, CometAPIOutputError):
                raise
            raise self._failed(exc) from exc
        for _, _, writer in self._staged.values():
            writer.drop_spool()
        return self.targets

    def _keep(self, moved: list[Any], exc: FileExistsError) -> CometAPIOutputConflictError:
        """Another writer took a final name: keep every output of this edit beside it."""
        kept = []
        for slot in sorted(self._staged):
            staging, final, writer = self._staged[slot]
            writer.drop_spool()  # kept in storage instead
            source = final if final in moved else staging
            place = final.parent / _kept_name(final.name, staging.name)
            try:
                source.fs.mv(source.path, place.path)
                kept.append(str(place))
            except Exception:  # it stays where it is; still name it
                kept.append(str(source))
        self._staged.clear()
        return CometAPIOutputConflictError(
            f"{excerpt(str(exc.filename or exc), 300)} was written by another task while this "
            f"edit ran; nothing was overwritten. This edit was paid for: its outputs are kept at "
            f"{', '.join(kept)}. Give each task its own output_path (template it with "
            "{{ run_id }} or the task id), or pass replace=True to overwrite on purpose."
        )

    def _failed(self, exc: Exception) -> CometAPIOutputError:
        return CometAPIOutputError(
            f"Writing the edited images to {excerpt(self.output_path)} failed "
            f"({type(exc).__name__}: {excerpt(str(exc), 200)}); nothing partial was left. Check "
            "output_path and output_conn_id, then retry the task."
        )

    def discard(self) -> None:
        """Abort open writes, remove every staged file and free the local copies (best
        effort)."""
        self._remove_staged()
        for _, _, writer in self._staged.values():
            writer.drop_spool()

    def _remove_staged(self) -> None:
        for staging, _, writer in self._staged.values():
            writer.abort()
            _remove(staging)


def _move_if_absent(staging: Any, final: Any) -> None:
    """Move a staged file to a final name that must not exist yet; ``FileExistsError`` if it
    does. Exclusive on local disks (a hard link fails on an existing name); elsewhere the name
    is checked just before the move."""
    if is_local(final):
        try:
            os.link(staging.path, final.path)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, "exists", str(final)) from None
        os.unlink(staging.path)
        return
    if final.exists():
        raise FileExistsError(errno.EEXIST, "exists", str(final))
    final.fs.mv(staging.path, final.path)


def _kept_name(final_name: str, staging_name: str) -> str:
    """``boat-0.png`` -> ``boat-0.kept-<staging token>.png``."""
    token = staging_name.rsplit(".", 2)[-2]
    base, dot, suffix = final_name.rpartition(".")
    return f"{base}.kept-{token}.{suffix}" if dot else f"{final_name}.kept-{token}"


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


class _CheckedWriter:
    """A staged file's writer: the bytes written are counted, hashed and copied to a local
    spool on the way.

    A storage error does not stop the response: the writer drops the staged file and keeps only
    the spool, so the edit's answer (its usage, its bill) is still read whole, its images are
    still at hand, and the error is raised by ``commit``.
    """

    def __init__(self, failed: Callable[[Exception], CometAPIOutputError], mime_type: str) -> None:
        self._handle: Any = None
        self._failed = failed
        self.mime_type = mime_type
        self.digest = hashlib.sha256()
        self.size = 0
        self.error: CometAPIOutputError | None = None
        self._spool: Any = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - see drop_spool
            max_size=SPOOL_IN_MEMORY
        )

    def start(self, handle: Any) -> None:
        """Write into ``handle`` (the opened staging file) from now on."""
        self._handle = handle

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        if self._spool is not None:
            self._spool.write(data)
        if self.error is None:
            try:
                self._handle.write(data)
            except Exception as exc:
                self.give_up(exc)
        return len(data)

    def close(self) -> None:
        if self.error is None:
            try:
                self._handle.close()
            except Exception as exc:
                self.give_up(exc)

    def kept(self) -> dict[str, str]:
        """The output as spooled: its type and its bytes as base64."""
        assert self._spool is not None
        self._spool.seek(0)
        return {"mime_type": self.mime_type, "b64": base64.b64encode(self._spool.read()).decode()}

    def drop_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def give_up(self, exc: Exception) -> None:
        """Keep ``exc`` for ``commit`` and drop the staged file; later bytes are only counted."""
        self.error = self._failed(exc)
        self.error.__cause__ = exc
        self.abort()

    def abort(self) -> None:
        """Drop the write (s3fs abandons its multipart upload), then close anyway: a local
        file cannot discard and would keep its descriptor, and an s3fs file left open fails
        when collected. Best effort: the caller is already handling an error."""
        for step in (getattr(self._handle, "discard", None), getattr(self._handle, "close", None)):
            try:
                if callable(step):
                    step()
            except Exception:
                pass
