"""Per-edit client overhead: ``CometApiHook.edit_image`` against raw ``requests`` and ``openai``."""

from __future__ import annotations

import base64

from benchmarks.support import (
    API_KEY,
    cometapi_connection,
    emulator_process,
    gradient_png,
    median_seconds,
)

ROUNDS = 40
PROMPT = "Add a small red ribbon to the paper boat."


def run() -> dict[str, float]:
    """Median seconds per edit for each client, and the ratios to raw ``requests``."""
    import requests
    from openai import OpenAI

    from airflow_provider_cometapi.hooks.cometapi import CometApiHook

    source = gradient_png(1024)
    with emulator_process() as url, cometapi_connection(url):
        session = requests.Session()
        client = OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)
        hook = CometApiHook()

        def raw_requests() -> bytes:
            response = session.post(
                f"{url}/v1/images/edits",
                headers={"Authorization": f"Bearer {API_KEY}"},
                data={"prompt": PROMPT, "model": "gpt-image-2"},
                files={"image": ("boat.png", source, "image/png")},
                timeout=60,
            )
            response.raise_for_status()
            return base64.b64decode(response.json()["data"][0]["b64_json"])

        def openai_sdk() -> bytes:
            result = client.images.edit(
                model="gpt-image-2", image=("boat.png", source, "image/png"), prompt=PROMPT
            )
            return base64.b64decode((result.data or [])[0].b64_json or "")

        def provider_hook() -> bytes:
            return hook.edit_image(("boat.png", source), PROMPT).images[0].data

        medians = median_seconds(
            {"requests": raw_requests, "openai": openai_sdk, "hook": provider_hook}, ROUNDS
        )
        hook.close()
        session.close()
        client.close()
    return {
        **{f"{name}_ms": seconds * 1000 for name, seconds in medians.items()},
        "hook_vs_requests": medians["hook"] / medians["requests"],
        "hook_vs_openai": medians["hook"] / medians["openai"],
    }


def report(figures: dict[str, float]) -> str:
    """The figures as README-ready lines."""
    return (
        "Per-edit overhead (1024x1024 PNG in, one PNG out, emulator with no added latency, "
        f"median of {ROUNDS}):\n"
        f"  raw requests {figures['requests_ms']:.1f} ms, "
        f"openai SDK {figures['openai_ms']:.1f} ms, CometApiHook {figures['hook_ms']:.1f} ms\n"
        f"  hook / raw requests = {figures['hook_vs_requests']:.3f}x, "
        f"hook / openai SDK = {figures['hook_vs_openai']:.3f}x"
    )


if __name__ == "__main__":
    print(report(run()))
