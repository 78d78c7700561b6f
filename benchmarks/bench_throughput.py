"""Batch throughput: ``CometImageEditBatchOperator`` against the ideal and a sequential SDK loop."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.support import API_KEY, cometapi_connection, emulator_process, gradient_png

EDITS = 64
CONCURRENCY = 16
LATENCY = 1.0
IMAGE_SIDE = 256
PROMPT = "Add a small red ribbon to the paper boat."
MODEL = "gpt-image-2"


def run() -> dict[str, float]:
    """Wall seconds of the provider's batch loop (first and second run) and of the SDK loop."""
    from openai import OpenAI

    source = gradient_png(IMAGE_SIDE)
    with tempfile.TemporaryDirectory(prefix="cometapi-bench-") as work:
        inbox = Path(work, "in")
        inbox.mkdir()
        sources = []
        for index in range(EDITS):
            path = inbox / f"boat{index:02d}.png"
            path.write_bytes(source)
            sources.append(path)

        with emulator_process(latency=LATENCY) as url, cometapi_connection(url, max_retries=0):
            client = OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)

            def sdk_edit(path: Path, target: Path) -> None:
                result = client.images.edit(model=MODEL, image=path, prompt=PROMPT)
                target.write_bytes(base64.b64decode((result.data or [])[0].b64_json or ""))

            sdk_edit(sources[0], Path(work, "warm-up.png"))  # the emulator's own first-call costs
            first, second = _fresh_worker_batches(inbox, Path(work))

            sdk_out = Path(work, "sdk")
            sdk_out.mkdir()
            start = time.perf_counter()
            for path in sources:
                sdk_edit(path, sdk_out / f"{path.stem}-0.png")
            sdk = time.perf_counter() - start
            client.close()

    ideal = EDITS / CONCURRENCY * LATENCY
    return {
        "first_s": first,
        "second_s": second,
        "sdk_s": sdk,
        "ideal_s": ideal,
        "first_efficiency": ideal / first,
        "second_efficiency": ideal / second,
        "first_speedup": sdk / first,
        "second_speedup": sdk / second,
    }


def _fresh_worker_batches(inbox: Path, work: Path) -> tuple[float, float]:
    """Two batches in a new process, as a worker runs a task: its first and second wall time."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_throughput", str(inbox), str(work)],
        capture_output=True,
        text=True,
        check=True,
    )
    first, second = json.loads(done.stdout.splitlines()[-1])
    return first, second


class _RecordingTaskInstance:
    """Just what ``execute()`` uses of a task instance: who it is, and ``xcom_push``."""

    dag_id, run_id, task_id, map_index, try_number = "bench", "bench", "bench_batch", -1, 1

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def _operator_batch(sources: list[str], output: Path) -> float:
    """Wall seconds of ``CometImageEditBatchOperator.execute()`` over ``sources``."""
    from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator

    operator = CometImageEditBatchOperator(
        task_id="bench_batch",
        sources=sources,
        output_path=f"{output}/",
        prompt=PROMPT,
        model=MODEL,
        max_concurrency=CONCURRENCY,
    )
    ti = _RecordingTaskInstance()
    start = time.perf_counter()
    operator.execute({"ti": ti})  # type: ignore[typeddict-item]
    seconds = time.perf_counter() - start
    edited = ti.xcoms["summary"]["edited"]
    if edited != EDITS or len(list(output.glob("*.png"))) != EDITS:
        raise RuntimeError(f"expected {EDITS} outputs in {output}, got {edited}")
    return seconds


def _worker_main(inbox: str, work: str) -> None:
    """The child process: what a worker has loaded after parsing the DAG file, then two batches."""
    import airflow_provider_cometapi.operators.image_edit  # noqa: F401 - the DAG file's import

    sources = sorted(str(path) for path in Path(inbox).glob("*.png"))
    first = _operator_batch(sources, Path(work, "first"))
    second = _operator_batch(sources, Path(work, "second"))
    print(json.dumps([first, second]))


def report(figures: dict[str, float]) -> str:
    """The figures as README-ready lines."""
    return (
        f"Batch throughput ({EDITS} edits of {IMAGE_SIDE}x{IMAGE_SIDE} PNGs, emulator latency "
        f"{LATENCY:.1f} s, max_concurrency={CONCURRENCY}, ideal "
        f"{figures['ideal_s']:.2f} s):\n"
        f"  CometImageEditBatchOperator, first batch in the process {figures['first_s']:.2f} s "
        f"(efficiency {figures['first_efficiency']:.2f}), "
        f"second batch {figures['second_s']:.2f} s "
        f"(efficiency {figures['second_efficiency']:.2f})\n"
        f"  sequential openai SDK loop {figures['sdk_s']:.2f} s: the operator is "
        f"{figures['first_speedup']:.1f}x (first) / {figures['second_speedup']:.1f}x (second) "
        "faster"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3:
        _worker_main(*sys.argv[1:])
    else:
        print(report(run()))
