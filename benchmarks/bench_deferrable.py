"""Deferrable capacity: 200 edits in flight in one ``CometImageEditTrigger``, one process."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.support import (
    cometapi_connection,
    emulator_process,
    gradient_png,
    memory_kib,
    reset_peak_rss,
    run_child,
)

if TYPE_CHECKING:
    from airflow_provider_cometapi.pipeline.runners import Work

EDITS = 200
LATENCY = 5.0
IMAGE_SIDE = 64
PROMPT = "Add a small red ribbon to the paper boat."
MODEL = "gpt-image-2"
CHILD = "from benchmarks.bench_deferrable import child; child()"


def run() -> dict[str, float]:
    """Wall seconds and peak RSS growth of one trigger run, measured in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="cometapi-bench-") as work:
        inbox = Path(work, "in")
        inbox.mkdir()
        source = gradient_png(IMAGE_SIDE)
        for index in range(EDITS):
            (inbox / f"boat{index:03d}.png").write_bytes(source)
        with emulator_process(latency=LATENCY) as url, cometapi_connection(url, max_retries=0):
            figures = run_child(CHILD, str(inbox), work)
    if figures["written"] != EDITS or figures["failed"]:
        raise RuntimeError(f"the trigger run went wrong: {figures}")
    return {**figures, "latency_multiple": figures["wall_s"] / LATENCY}


def child() -> None:
    """In a fresh process: warm up with a one-item trigger, then time the full one.

    ``sys.argv``: the input folder, a work folder for the outputs.
    """
    import asyncio

    from airflow_provider_cometapi.api.request import EditParams
    from airflow_provider_cometapi.pipeline.plans import ItemPlan, item_id
    from airflow_provider_cometapi.pipeline.scope import TaskScope
    from airflow_provider_cometapi.storage.sources import StoredSource
    from airflow_provider_cometapi.storage.staging import write_plan
    from airflow_provider_cometapi.triggers.image_edit import CometImageEditTrigger

    inbox, work = Path(sys.argv[1]), Path(sys.argv[2])
    params = EditParams(prompt=PROMPT, model=MODEL).to_dict()
    sources = sorted(inbox.iterdir())

    def trigger(count: int, output: str) -> CometImageEditTrigger:
        plans: list[Work] = [
            ItemPlan(
                sources=[StoredSource(str(path))],
                mask=None,
                output_path=output,
                output_conn_id=None,
                map_index=-1,
                label=str(path),
                item=item_id([StoredSource(str(path))]),
            )
            for path in sources[:count]
        ]
        return CometImageEditTrigger(
            plan=write_plan(plans, f"{output}.plan/", None),
            conn_id=None,
            params=params,
            scope=TaskScope("bench", "bench", "bench_deferred", -1, 1).to_json(),
            cometapi_conn_id="cometapi_default",
            max_concurrency=count,
        )

    async def fire(run: CometImageEditTrigger) -> list[dict]:
        events = [event async for event in run.run()]
        (event,) = events
        lines: list[dict] = event.payload["lines"]  # no report: the event has every line
        return lines

    # One item first: imports, the connection lookup and the storage registry, as in a warm
    # triggerer. The figures below are for the 200-item trigger alone.
    asyncio.run(fire(trigger(1, f"{work}/warm-up/")))
    full = trigger(EDITS, f"{work}/out/")
    before = memory_kib()["VmRSS"]
    reset_peak_rss()
    start = time.perf_counter()
    results = asyncio.run(fire(full))
    wall = time.perf_counter() - start
    peak = memory_kib()["VmHWM"]
    print(
        json.dumps(
            {
                "wall_s": wall,
                "growth_mib": (peak - before) / 1024,
                "written": len(list(Path(work, "out").glob("*.png"))),
                "failed": sum(bool(result["error"]) for result in results),
            }
        )
    )


def report(figures: dict[str, float]) -> str:
    """The figures as README-ready lines."""
    return (
        f"Deferrable capacity ({EDITS} edits of {IMAGE_SIDE}x{IMAGE_SIDE} PNGs in flight in one "
        f"CometImageEditTrigger, emulator latency {LATENCY:.0f} s, fresh process after a "
        "one-item warm-up):\n"
        f"  wall {figures['wall_s']:.2f} s = {figures['latency_multiple']:.2f}x the latency, "
        f"peak RSS growth {figures['growth_mib']:.1f} MiB"
    )


if __name__ == "__main__":
    print(report(run()))
