"""Where one item's inputs come from and where its outputs go."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.request import EditParams
from airflow_provider_cometapi.storage.sources import StoredSource

if TYPE_CHECKING:
    from airflow_provider_cometapi.storage.sources import Source


@dataclass(frozen=True)
class ItemPlan:
    """One item: its sources and mask (classified once), its label, and its output location.

    :param map_index: the mapped task instance's index (-1 when not mapped).
    :param item: a batch item's short id (``item_id`` of its sources), part of its output
        names; ``None`` for the single-image operator.
    :param params: a row's own edit parameters (``None``: the batch's).
    :param stem: a row's own name for its outputs (``None``: the first source's stem).
    """

    sources: list[Source]
    mask: Source | None
    output_path: str
    output_conn_id: str | None
    map_index: int
    label: str
    item: str | None = None
    params: EditParams | None = None
    stem: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON, for the triggerer: stored locations only (stage inline ones first)."""
        return {
            "sources": [_stored(source).to_json() for source in self.sources],
            "mask": _stored(self.mask).to_json() if self.mask is not None else None,
            "output_path": self.output_path,
            "output_conn_id": self.output_conn_id,
            "map_index": self.map_index,
            "label": self.label,
            "item": self.item,
            "params": self.params.to_dict() if self.params is not None else None,
            "stem": self.stem,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ItemPlan:
        """The plan ``to_json`` gave."""
        mask = data["mask"]
        return cls(
            sources=[StoredSource(**source) for source in data["sources"]],
            mask=StoredSource(**mask) if mask is not None else None,
            output_path=data["output_path"],
            output_conn_id=data["output_conn_id"],
            map_index=data["map_index"],
            label=data["label"],
            item=data["item"],
            params=EditParams(**data["params"]) if data.get("params") else None,
            stem=data.get("stem"),
        )


def item_id(sources: list[Source], occurrence: int = 0) -> str:
    """A batch item's short id: 8 hex digits of sha256 over its sources' identities (stored
    location, or content hash for in-memory input), the same wherever the item sorts.

    :param occurrence: how many items with the same sources came before it in the batch.
    """
    identities = "\n".join(source.identity for source in sources)
    if occurrence:
        identities += f"\n#{occurrence}"
    return hashlib.sha256(identities.encode()).hexdigest()[:8]


def _stored(source: Source) -> StoredSource:
    if not isinstance(source, StoredSource):
        raise TypeError(f"{source.label} is not stored: stage it before deferring")
    return source
