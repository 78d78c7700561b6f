"""Where one item's inputs come from and where its outputs go."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.storage.sources import StoredSource

if TYPE_CHECKING:
    from airflow_provider_cometapi.storage.sources import Source


@dataclass(frozen=True)
class ItemPlan:
    """One item: its sources and mask (classified once), its label, and its output location.

    :param map_index: the item's slot in output names (its position in a batch, or the mapped
        task's index).
    """

    sources: list[Source]
    mask: Source | None
    output_path: str
    output_conn_id: str | None
    map_index: int
    label: str

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON, for the triggerer: stored locations only (stage inline ones first)."""
        return {
            "sources": [_stored(source).to_json() for source in self.sources],
            "mask": _stored(self.mask).to_json() if self.mask is not None else None,
            "output_path": self.output_path,
            "output_conn_id": self.output_conn_id,
            "map_index": self.map_index,
            "label": self.label,
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
        )


def _stored(source: Source) -> StoredSource:
    if not isinstance(source, StoredSource):
        raise TypeError(f"{source.label} is not stored: stage it before deferring")
    return source
