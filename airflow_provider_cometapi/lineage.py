"""OpenLineage datasets for what an edit read from storage and what it wrote."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from airflow_provider_cometapi.storage.paths import URI
from airflow_provider_cometapi.storage.sources import GLOB

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow.providers.openlineage.extractors import OperatorLineage


def dataset_name(location: str) -> tuple[str, str]:
    """``(namespace, name)`` of a stored location, by OpenLineage's naming rules.

    ``s3://conn@bucket/key`` is ``("s3://bucket", "key")``; a local path or ``file://`` URI is
    ``("file", "/abs/path")``; a prefix or glob names its folder. No storage is touched.
    """
    if not URI.match(location):
        location = "file://" + os.path.abspath(location)
    parts = urlsplit(location)
    path = parts.path
    glob = GLOB.search(path)
    if glob:
        path = path[: glob.start()].rpartition("/")[0]
    path = path.rstrip("/") or "/"
    bucket = parts.netloc.rpartition("@")[2]
    if not bucket:
        return parts.scheme, path
    return f"{parts.scheme}://{bucket}", path.lstrip("/")


def operator_lineage(inputs: Iterable[str], outputs: Iterable[str]) -> OperatorLineage:
    """The ``OperatorLineage`` of an edit (imported here: the OpenLineage provider is optional)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    def datasets(locations: Iterable[str]) -> list[Dataset]:
        named = dict.fromkeys(dataset_name(location) for location in locations)
        return [Dataset(namespace=namespace, name=name) for namespace, name in named]

    return OperatorLineage(inputs=datasets(inputs), outputs=datasets(outputs))
