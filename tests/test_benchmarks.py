"""The benchmarks' own calls of the operators still work (``make bench`` is not run by CI, and
an operator's changed return value once broke it unseen)."""

from __future__ import annotations

from airflow_provider_cometapi.samples import PAPER_BOAT
from benchmarks import bench_throughput


def test_the_throughput_benchmark_batch_runs_against_the_emulator(
    cometapi_conn, tmp_path, monkeypatch
):
    monkeypatch.setattr(bench_throughput, "EDITS", 2)
    sources = []
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(PAPER_BOAT.read_bytes())
        sources.append(str(tmp_path / name))

    seconds = bench_throughput._operator_batch(sources, tmp_path / "out")

    assert seconds > 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 2
