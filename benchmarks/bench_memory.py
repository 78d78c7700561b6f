"""Peak memory of one large edit (``n=4`` noisy 2048x2048 PNGs): provider against the SDK."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.support import (
    API_KEY,
    cometapi_connection,
    emulator_process,
    gradient_png,
    memory_kib,
    noise_png,
    reset_peak_rss,
    run_child,
)

SIDE = 2048
OUTPUTS = 4
ROUNDS = 1
PROMPT = "Add a small red ribbon to the paper boat."
MODEL = "gpt-image-2"
CLIENTS = ("staged", "in_memory", "openai")
"""``staged``: the operator's path to ``output_path``; ``in_memory``: ``edit_image``."""
CHILD = "from benchmarks.bench_memory import child; child()"


def run() -> dict[str, float]:
    """Peak RSS growth (MiB) of each client, each measured in a fresh process (median)."""
    with tempfile.TemporaryDirectory(prefix="cometapi-bench-") as work:
        source = Path(work, "noise.png")
        source.write_bytes(noise_png(SIDE))
        growth: dict[str, list[float]] = {client: [] for client in CLIENTS}
        with emulator_process() as url, cometapi_connection(url, max_retries=0):
            for round_ in range(ROUNDS):
                for client in CLIENTS:
                    folder = Path(work, f"{client}-{round_}")
                    figures = run_child(CHILD, client, url, str(source), str(folder))
                    if figures["written"] != OUTPUTS:
                        raise RuntimeError(f"{client} wrote {figures['written']} outputs")
                    growth[client].append(figures["growth_kib"] / 1024)
        response_mib = figures["response_bytes"] / 2**20
    medians = {f"{client}_mib": statistics.median(values) for client, values in growth.items()}
    return {
        **medians,
        "outputs_mib": response_mib,
        "staged_vs_openai": medians["staged_mib"] / medians["openai_mib"],
        "in_memory_vs_openai": medians["in_memory_mib"] / medians["openai_mib"],
    }


def child() -> None:
    """In a fresh process: warm up, edit once, print the growth of peak RSS as JSON.

    ``sys.argv``: client name, emulator URL, input PNG, output folder.
    """
    client, url, source_path, folder = sys.argv[1:5]
    source = Path(source_path).read_bytes()
    tiny = gradient_png(64)
    Path(folder).mkdir()
    edit = {"staged": _staged, "in_memory": _in_memory, "openai": _openai}[client](url)
    edit(tiny, f"{folder}/warm-up/", 1)  # imports, the connection pool, the storage registry
    for path in Path(folder, "warm-up").iterdir():
        path.unlink()
    before = memory_kib()["VmRSS"]
    reset_peak_rss()
    written = edit(source, f"{folder}/", OUTPUTS)
    peak = memory_kib()["VmHWM"]
    print(json.dumps({"growth_kib": peak - before, "written": len(written), **_sizes(written)}))


def _staged(url: str):
    from airflow_provider_cometapi.api.request import EditParams, edit_request
    from airflow_provider_cometapi.hooks.cometapi import CometApiHook
    from airflow_provider_cometapi.storage.outputs import StagedOutputs

    hook = CometApiHook()

    def edit(image: bytes, folder: str, n: int) -> list[str]:
        request = edit_request(("noise.png", image), EditParams(prompt=PROMPT, model=MODEL, n=n))
        sink = StagedOutputs(folder, stem="noise", map_index=-1, conn_id=None)
        hook.run_edit(request, sink)
        return sink.commit()

    return edit


def _in_memory(url: str):
    from airflow_provider_cometapi.hooks.cometapi import CometApiHook

    hook = CometApiHook()

    def edit(image: bytes, folder: str, n: int) -> list[str]:
        result = hook.edit_image(("noise.png", image), PROMPT, model=MODEL, n=n)
        Path(folder).mkdir(exist_ok=True)
        written = []
        for index, output in enumerate(result.images):
            target = Path(folder, f"noise-{index}.png")
            target.write_bytes(output.data)
            written.append(str(target))
        return written

    return edit


def _openai(url: str):
    import base64

    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)

    def edit(image: bytes, folder: str, n: int) -> list[str]:
        result = client.images.edit(
            model=MODEL, image=("noise.png", image, "image/png"), prompt=PROMPT, n=n
        )
        Path(folder).mkdir(exist_ok=True)
        written = []
        for index, output in enumerate(result.data or []):
            target = Path(folder, f"noise-{index}.png")
            target.write_bytes(base64.b64decode(output.b64_json or ""))
            written.append(str(target))
        return written

    return edit


def _sizes(written: list[str]) -> dict[str, int]:
    total = sum(Path(path.removeprefix("file://")).stat().st_size for path in written)
    return {"response_bytes": total}


def report(figures: dict[str, float]) -> str:
    """The figures as README-ready lines."""
    return (
        f"Peak memory of one edit returning n={OUTPUTS} noisy {SIDE}x{SIDE} PNGs "
        f"({figures['outputs_mib']:.0f} MiB of images, {figures['outputs_mib'] * 4 / 3:.0f} MiB "
        f"as base64); peak RSS growth during the call, each client in a fresh process:\n"
        f"  operator path (run_edit into StagedOutputs, commit) {figures['staged_mib']:.1f} MiB, "
        f"openai SDK {figures['openai_mib']:.1f} MiB: "
        f"{figures['staged_vs_openai']:.2f}x the SDK\n"
        f"  CometApiHook.edit_image (outputs kept in memory) {figures['in_memory_mib']:.1f} MiB: "
        f"{figures['in_memory_vs_openai']:.2f}x the SDK"
    )


if __name__ == "__main__":
    print(report(run()))
