"""Batch throughput: ``CometImageEditBatchOperator`` against the ideal and a sequential SDK loop."""

from __future__ import annotations

import base64
import tempfile
import time
from pathlib import Path

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
            first = _operator_batch(sources, Path(work, "first"))
            second = _operator_batch(sources, Path(work, "second"))

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


def _operator_batch(sources: list[Path], output: Path) -> float:
    """Wall seconds of ``CometImageEditBatchOperator``'s edit loop over ``sources``."""
    from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator

    operator = CometImageEditBatchOperator(
        task_id="bench_batch",
        sources=[str(path) for path in sources],
        output_path=f"{output}/",
        prompt=PROMPT,
        model=MODEL,
        max_concurrency=CONCURRENCY,
    )
    plans, params = operator._plans(), operator._edit_params()
    start = time.perf_counter()
    results = operator._run_all(plans, params)
    seconds = time.perf_counter() - start
    failed = [result for result in results if result["error"]]
    if failed:
        raise RuntimeError(f"{len(failed)} of {EDITS} edits failed: {failed[0]['error']}")
    if len(list(output.glob("*.png"))) != EDITS:
        raise RuntimeError(f"expected {EDITS} output files in {output}")
    return seconds


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
    print(report(run()))
