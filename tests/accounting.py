"""The accounting identity: what a run's task instances report as paid is what was billed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.dagrun import Outcome


def reported_usage(outcome: Outcome) -> list[dict[str, Any]]:
    """The ``usage`` XCom of every task instance of the run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(
            dag_id=outcome.dag_id, run_id=outcome.run_id, key="usage"
        )
        return [row.value for row in rows]


class Accounts:
    """Checks, run after run, that the sum of ``usage["total_tokens"]`` over a run's task
    instances equals the tokens the emulator billed during that run."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self._seen = len(emulator.billed)

    def check(self, outcome: Outcome) -> int:
        """Assert the identity for the run just finished; return the tokens billed in it."""
        billed = self.emulator.billed
        tokens = sum(record["usage"]["total_tokens"] for record in billed[self._seen :])
        self._seen = len(billed)
        paid = sum(usage.get("total_tokens", 0) for usage in reported_usage(outcome))
        assert paid == tokens, f"the run reported {paid} tokens paid; {tokens} were billed"
        return tokens
