"""Removing a deferred task's staged copies, on local disk."""

from __future__ import annotations

from airflow_provider_cometapi.storage.staging import STAGING_FOLDER, remove_staging


def test_removing_staging_stops_at_a_folder_another_task_still_uses(tmp_path):
    out = tmp_path / "out"
    runs = out / STAGING_FOLDER / "dag" / "run"
    for task in ("a-0", "b-0"):
        (runs / task / "image").mkdir(parents=True)
        (runs / task / "image" / "boat.staged").write_bytes(b"png")
        (runs / task / "plan.jsonl").write_text("{}\n")

    remove_staging(f"{runs}/a-0/", None)
    assert sorted(p.name for p in runs.iterdir()) == ["b-0"]

    remove_staging(f"file://{runs}/b-0/", None)
    assert out.is_dir()
    assert list(out.iterdir()) == []
