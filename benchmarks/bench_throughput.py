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
    """Wall seconds of the provider's batch loop and of a sequential ``openai`` loop."""
    from openai import OpenAI

    from airflow_provider_cometapi.operators.image_edit import CometImageEditBatchOperator

    source = gradient_png(IMAGE_SIDE)
    with tempfile.TemporaryDirectory(prefix="cometapi-bench-") as work:
        inbox, provider_out, sdk_out = (Path(work, name) for name in ("in", "provider", "sdk"))
        for folder in (inbox, provider_out, sdk_out):
            folder.mkdir()
        sources = []
        for index in range(EDITS):
            path = inbox / f"boat{index:02d}.png"
            path.write_bytes(source)
            sources.append(str(path))

        with emulator_process(latency=LATENCY) as url, cometapi_connection(url, max_retries=0):
            operator = CometImageEditBatchOperator(
                task_id="bench_batch",
                sources=sources,
                output_path=f"{provider_out}/",
                prompt=PROMPT,
                model=MODEL,
                max_concurrency=CONCURRENCY,
            )
            plans, params = operator._plans(), operator._edit_params()
            start = time.perf_counter()
            results = operator._run_all(plans, params)
            provider_wall = time.perf_counter() - start
            failed = [result for result in results if result["error"]]
            if failed:
                raise RuntimeError(f"{len(failed)} provider edits failed: {failed[0]['error']}")
            written = len(list(provider_out.iterdir()))

            client = OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)
            start = time.perf_counter()
            for index, path in enumerate(sources):
                result = client.images.edit(
                    model=MODEL, image=Path(path), prompt=PROMPT
                )
                data = base64.b64decode((result.data or [])[0].b64_json or "")
                (sdk_out / f"boat{index:02d}-0.png").write_bytes(data)
            sdk_wall = time.perf_counter() - start
            client.close()

    ideal = EDITS / CONCURRENCY * LATENCY
    return {
        "provider_s": provider_wall,
        "sdk_s": sdk_wall,
        "ideal_s": ideal,
        "efficiency": ideal / provider_wall,
        "speedup": sdk_wall / provider_wall,
        "written": written,
    }


def report(figures: dict[str, float]) -> str:
    """The figures as README-ready lines."""
    return (
        f"Batch throughput ({EDITS} edits of {IMAGE_SIDE}x{IMAGE_SIDE} PNGs, emulator latency "
        f"{LATENCY:.1f} s, max_concurrency={CONCURRENCY}):\n"
        f"  CometImageEditBatchOperator {figures['provider_s']:.2f} s for "
        f"{figures['written']:.0f} files, ideal {figures['ideal_s']:.2f} s: "
        f"efficiency {figures['efficiency']:.2f}\n"
        f"  sequential openai SDK loop {figures['sdk_s']:.2f} s: "
        f"operator is {figures['speedup']:.1f}x faster"
    )


if __name__ == "__main__":
    print(report(run()))
