"""The names batch outputs get, computed the way the operator computes them, for assertions."""

from __future__ import annotations

from typing import Any


def item_of(value: Any, occurrence: int = 0) -> str:
    """The short id of a batch item given as ``value`` (a stored location, as listed, or an
    in-memory input), the ``occurrence``-th of that input in its batch."""
    from airflow_provider_cometapi.pipeline.plans import item_id
    from airflow_provider_cometapi.storage.sources import classify

    return item_id([classify(value, "sources", None)], occurrence)


def batch_output(stem: str, value: Any, index: int = 0, ext: str = "png") -> str:
    """``{stem}-{item}-{index}.{ext}``: a batch output's file name in a folder."""
    return f"{stem}-{item_of(value)}-{index}.{ext}"
