"""Name each edited image and write it through ``ObjectStoragePath``, leaving no partial file."""

from __future__ import annotations

import re
import string
import uuid
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.exceptions import CometAPIOutputError, CometAPIValidationError
from airflow_provider_cometapi.storage.paths import storage_path

if TYPE_CHECKING:
    from collections.abc import Sequence

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
    output_path: str, *, stem: str, extensions: Sequence[str], map_index: int
) -> list[str]:
    """The final location of each output, in order."""
    stem = safe_stem(stem)
    targets = []
    for index, ext in enumerate(extensions):
        if output_path.endswith("/"):
            mapped = f"-{map_index}" if map_index >= 0 else ""
            targets.append(f"{output_path}{stem}{mapped}-{index}.{ext}")
        elif _placeholders(output_path):
            values = {"stem": stem, "index": index, "ext": ext, "map_index": max(map_index, 0)}
            targets.append(output_path.format(**values))
        elif index == 0:
            targets.append(output_path)
        else:  # the server sent more images than asked for: keep them all, side by side
            base, dot, suffix = output_path.rpartition(".")
            targets.append(f"{base}-{index}.{suffix}" if dot else f"{output_path}-{index}")
    return targets


def safe_stem(stem: str) -> str:
    """A file-name stem that cannot leave the output folder: no separators, no leading dots."""
    cleaned = _UNSAFE.sub("_", stem.replace("/", "_").replace("\\", "_")).lstrip("._")
    return cleaned[:100] or "image"


def write_outputs(blobs: Sequence[bytes], targets: Sequence[str], conn_id: str | None) -> list[str]:
    """Write every blob to a hidden staging name, then move each into place.

    If anything fails, every staged file is removed, and no partial file is left at a target.
    """
    paths = [storage_path(target, conn_id) for target in targets]
    staged: list[tuple[Any, Any]] = []
    try:
        for data, path in zip(blobs, paths, strict=False):
            staging = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.partial"
            staged.append((staging, path))
            if path.protocol in ("", "file", "local"):
                path.parent.mkdir(parents=True, exist_ok=True)
            with staging.open("wb") as handle:
                handle.write(data)
        for staging, path in staged:
            path.fs.mv(staging.path, path.path)
    except Exception as exc:
        _discard(staged)
        raise CometAPIOutputError(
            f"Writing the edited image to {paths[len(staged) - 1] if staged else targets[0]} "
            f"failed ({type(exc).__name__}: {str(exc)[:200]}); nothing partial was left. Check "
            "output_path and output_conn_id, then retry the task."
        ) from exc
    return [str(path) for path in paths]


def _discard(staged: list[tuple[Any, Any]]) -> None:
    for staging, _ in staged:
        try:
            if staging.exists():
                staging.unlink()
        except Exception:  # best effort: the original error is what the caller needs
            continue


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
