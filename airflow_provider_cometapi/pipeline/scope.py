"""The task instance that runs the items: who pays, which key it sends, what it may reuse."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

_OWNER_KEYS = ("dag_id", "run_id", "task_id", "map_index")


@dataclass(frozen=True)
class TaskScope:
    """One task instance (over all its tries) and its choices about earlier outputs.

    :param reuse_outputs: reuse outputs that another task instance or an earlier run paid for;
        a task instance's own outputs (from an earlier try) are reused either way.
    :param replace: overwrite objects in the way of the output names.
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    reuse_outputs: bool = True
    replace: bool = False

    @classmethod
    def of(cls, context: Context, *, reuse_outputs: bool, replace: bool) -> TaskScope:
        """The scope of the running task instance."""
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return cls(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=map_index if isinstance(map_index, int) else -1,
            try_number=getattr(ti, "try_number", 1) or 1,
            reuse_outputs=reuse_outputs,
            replace=replace,
        )

    def payer(self) -> dict[str, Any]:
        """Who pays, as a manifest records it."""
        return {key: getattr(self, key) for key in (*_OWNER_KEYS, "try_number")}

    def paid_for(self, manifest: Mapping[str, Any]) -> bool:
        """Whether this task instance (in any try) paid for the edit a manifest records."""
        payer = manifest.get("paid_by")
        return isinstance(payer, Mapping) and self.is_me(payer)

    def is_me(self, owner: Mapping[str, Any]) -> bool:
        """Whether ``owner`` (a payer or a claim's owner) is this task instance, in any try."""
        return all(owner.get(key) == getattr(self, key) for key in _OWNER_KEYS)

    def idempotency_key(self, fingerprint: str) -> str:
        """The same for every try of this task instance and item; never for another run."""
        owner = [getattr(self, key) for key in _OWNER_KEYS]
        return hashlib.sha256(json.dumps([*owner, fingerprint]).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """The scope as JSON, for the triggerer."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskScope:
        """The scope ``to_json`` gave."""
        return cls(**data)
