"""DAG parse cost: what ``import airflow_provider_cometapi.operators.image_edit`` adds."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from typing import Any

from benchmarks.support import ROOT, run_child

ROUNDS = 7
MODULE = "airflow_provider_cometapi.operators.image_edit"
HEAVY = (
    "PIL",
    "requests",
    "urllib3",
    "httpx",
    "openai",
    "fastapi",
    "starlette",
    "uvicorn",
    "airflow_provider_cometapi.emulator",
    "airflow_provider_cometapi.triggers",
    "airflow_provider_cometapi.hooks.cometapi_async",
)
"""Modules a DAG file should not pay for when it only declares the operator."""
CHILD = f"""
import json, sys, time
start = time.perf_counter()
import airflow.sdk
middle = time.perf_counter()
before = set(sys.modules)
import {MODULE}
end = time.perf_counter()
added = sorted(set(sys.modules) - before)
print(json.dumps({{"sdk_ms": (middle - start) * 1000, "added_ms": (end - middle) * 1000,
                  "modules": added, "present": sorted(sys.modules)}}))
"""


def run() -> dict[str, Any]:
    """Median milliseconds of the two imports, and the heavy modules the operator adds."""
    samples = [run_child(CHILD) for _ in range(ROUNDS)]
    added: list[str] = samples[0]["modules"]
    present: list[str] = samples[0]["present"]
    heavy_added = [name for name in HEAVY if _loaded(name, added)]
    return {
        "sdk_ms": statistics.median(float(sample["sdk_ms"]) for sample in samples),
        "added_ms": statistics.median(float(sample["added_ms"]) for sample in samples),
        "added_modules": len(added),
        "heavy_added": heavy_added,
        "heavy_already": [
            name for name in HEAVY if _loaded(name, present) and name not in heavy_added
        ],
        "chains": {name: _import_chain(name) for name in heavy_added},
    }


def _loaded(name: str, modules: list[str]) -> bool:
    return any(module == name or module.startswith(f"{name}.") for module in modules)


def _import_chain(name: str) -> list[str]:
    """Who imported ``name`` first during the operator import, read from ``-X importtime``."""
    code = f"import airflow.sdk\nimport {MODULE}"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=True,
    )
    # Lines are "import time: self | cumulative | <2 spaces per level>module", children first.
    entries = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or line.endswith("imported package"):
            continue
        label = line.rsplit("|", 1)[-1]
        module = label.strip()
        entries.append(((len(label) - len(label.lstrip()) - 1) // 2, module))
    top = next(i for i, (level, module) in enumerate(entries) if level == 0 and module == MODULE)
    start = max((i for i in range(top) if entries[i][0] == 0), default=-1) + 1
    window = range(start, top + 1)
    found = [i for i in window if entries[i][1] == name] or [
        i for i in window if entries[i][1].startswith(f"{name}.")
    ]
    if not found:
        return []
    level, module = entries[found[0]]
    chain = [module]
    for later_level, later in entries[found[0] + 1 : top + 1]:
        if later_level < level:
            chain.append(later)
            level = later_level
    return chain[::-1]


def report(figures: dict[str, Any]) -> str:
    """The figures as README-ready lines."""
    lines = [
        f"DAG parse cost (fresh interpreter, median of {ROUNDS}):",
        f"  import airflow.sdk {figures['sdk_ms']:.0f} ms; then import {MODULE} adds "
        f"{figures['added_ms']:.1f} ms ({figures['added_modules']} modules)",
    ]
    heavy_added = figures["heavy_added"]
    if heavy_added:
        lines.append(f"  heavy modules it pulls in: {', '.join(heavy_added)}")
        for name, chain in figures["chains"].items():
            lines.append(f"    {name}: {' -> '.join(chain)}")
    else:
        checked = ", ".join(name.removeprefix("airflow_provider_cometapi.") for name in HEAVY)
        lines.append(f"  heavy modules it pulls in: none (checked {checked})")
    if figures["heavy_already"]:
        lines.append(
            "  already loaded by airflow.sdk itself: " + ", ".join(figures["heavy_already"])
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
