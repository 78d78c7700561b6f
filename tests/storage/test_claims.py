"""Claims on real storage: created exclusively, held while live, taken over when expired or own."""

from __future__ import annotations

import threading
import uuid

import pytest

from airflow_provider_cometapi.storage import claims
from airflow_provider_cometapi.storage.outputs import StagedOutputs

FINGERPRINT = "f" * 64
FIRST = {"dag_id": "d", "run_id": "r1", "task_id": "t", "map_index": -1, "try_number": 1}
SECOND = {**FIRST, "run_id": "r2"}


def owned_by(owner):
    """``ours`` for a claimant: the same DAG, run, task and map index, whatever the try."""
    keys = ("dag_id", "run_id", "task_id", "map_index")
    return lambda held: all(held.get(key) == owner[key] for key in keys)


@pytest.fixture(params=["local", "s3"])
def sink(request, tmp_path):
    if request.param == "local":
        return StagedOutputs(f"{tmp_path}/out/", stem="boat", map_index=-1, conn_id=None)
    s3 = request.getfixturevalue("s3")
    bucket = f"cometapi-claims-{uuid.uuid4().hex[:12]}"  # nothing left by another test
    s3.create_bucket(Bucket=bucket)
    folder = f"s3://s3_test@{bucket}/out/"
    return StagedOutputs(folder, stem="boat", map_index=-1, conn_id=None)


def test_a_live_claim_is_held_against_another_task_instance(sink):
    assert claims.take(sink, FINGERPRINT, FIRST, owned_by(FIRST)) is None

    held = claims.take(sink, FINGERPRINT, SECOND, owned_by(SECOND))

    assert held is not None
    assert held["owner"] == FIRST


def test_a_retry_takes_its_own_claim_over(sink):
    claims.take(sink, FINGERPRINT, FIRST, owned_by(FIRST))

    assert claims.take(sink, FINGERPRINT, {**FIRST, "try_number": 2}, owned_by(FIRST)) is None


def test_an_expired_claim_is_taken_over(sink, monkeypatch):
    claims.take(sink, FINGERPRINT, FIRST, owned_by(FIRST))
    later = claims.now() + claims.CLAIM_SECONDS + 1
    monkeypatch.setattr(claims, "now", lambda: later)

    assert claims.take(sink, FINGERPRINT, SECOND, owned_by(SECOND)) is None
    monkeypatch.undo()
    assert claims.take(sink, FINGERPRINT, FIRST, owned_by(FIRST))["owner"] == SECOND


def test_a_released_claim_is_free(sink):
    claims.take(sink, FINGERPRINT, FIRST, owned_by(FIRST))
    claims.release(sink, FINGERPRINT)

    assert claims.take(sink, FINGERPRINT, SECOND, owned_by(SECOND)) is None


def test_a_claim_left_half_written_by_a_killed_writer_is_taken_over(tmp_path):
    import os

    sink = StagedOutputs(f"{tmp_path}/out/", stem="boat", map_index=-1, conn_id=None)
    folder = tmp_path / "out" / claims.CLAIM_FOLDER
    folder.mkdir(parents=True)
    empty = folder / f"{FINGERPRINT}.json"
    empty.write_bytes(b"")  # created exclusively, then the writer was killed

    held = claims.take(sink, FINGERPRINT, SECOND, owned_by(SECOND))
    assert held is not None  # it may still be being written: look again
    assert "unknown" in held["owner"]

    old = claims.now() - claims.UNREADABLE_SECONDS - 1
    os.utime(empty, (old, old))
    assert claims.take(sink, FINGERPRINT, SECOND, owned_by(SECOND)) is None
    assert claims.take(sink, FINGERPRINT, FIRST, owned_by(FIRST))["owner"] == SECOND


@pytest.mark.parametrize("shared", [False, True], ids=["own-edits", "one-edit"])
def test_claims_taken_and_released_at_once_in_one_folder_never_fail(tmp_path, shared):
    """Four items claim and release edits in one folder at once; each release that empties the
    folder removes it, under another's claim being made (for one edit, each takes the other's
    claim over as its own). No take fails or names another owner: losing a race to the folder's
    removal at most reports a holder it cannot name, which an item waits on and asks again."""
    sink = StagedOutputs(f"{tmp_path}/out/", stem="boat", map_index=-1, conn_id=None)
    start, errors, unnamed = threading.Barrier(4), [], []

    def claim_and_release(worker: int) -> None:
        owner = {**FIRST, "try_number": worker}
        start.wait()
        for turn in range(300):
            fingerprint = FINGERPRINT if shared else f"{worker}-{turn}"
            try:
                while (held := claims.take(sink, fingerprint, owner, owned_by(owner))) is not None:
                    unnamed.append(held["owner"].keys() == {"unknown"})
                claims.release(sink, fingerprint)
            except Exception as exc:  # every failure is the finding
                errors.append(repr(exc))

    workers = [threading.Thread(target=claim_and_release, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert (errors, all(unnamed)) == ([], True)
    assert not (tmp_path / "out" / claims.CLAIM_FOLDER).exists()
