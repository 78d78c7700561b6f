"""The benchmarks' own calls of the operators still work (``make bench`` is not run by CI, and
an operator's changed return value once broke it unseen). Run in a child process: importing
``benchmarks`` sets the environment (Airflow home, log level) for the benchmarks alone."""

from __future__ import annotations

import json
import subprocess
import sys

from airflow_provider_cometapi.samples import PAPER_BOAT

CHILD = """
import json, sys
from pathlib import Path
from benchmarks import bench_throughput
bench_throughput.EDITS = 2
sources = json.loads(sys.argv[1])
print(bench_throughput._operator_batch(sources, Path(sys.argv[2])))
"""


def test_the_throughput_benchmark_batch_runs_against_the_emulator(cometapi_conn, tmp_path):
    sources = []
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(PAPER_BOAT.read_bytes())
        sources.append(str(tmp_path / name))

    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(sources), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.splitlines()[-1]) > 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 2


COMPOSITE_CHILD = """
import json
from benchmarks import bench_composite
bench_composite.SIDES = (256,)
bench_composite.ROUNDS = 1
print(json.dumps(bench_composite.run()))
"""


def test_the_composite_benchmark_measures_a_small_size():
    done = subprocess.run(
        [sys.executable, "-c", COMPOSITE_CHILD],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures["256_cpu_ms"] > 0
    assert figures["256_peak_mib"] >= 0
