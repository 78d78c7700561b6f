"""The mask check and composite (``preserve_unmasked``): CPU time and peak memory a megapixel.

Each size runs in a fresh process that has only read its three PNGs (source, model output,
mask), so its peak RSS growth is the composite's own. Photo-like inputs (gradients with noise)
stand in for real images; the output is written as PNG.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks.support import run_child

SIDES = (1024, 2048, 4096)
ROUNDS = 3
CHILD = "from benchmarks.bench_composite import child; child()"


def run() -> dict[str, float]:
    """Median CPU ms and peak MiB of one composite at each size, and both a megapixel."""
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cometapi-bench-") as work:
        for side in SIDES:
            folder = Path(work, str(side))
            write_inputs(folder, side)
            runs = [run_child(CHILD, str(folder)) for _ in range(ROUNDS)]
            megapixels = side * side / 1e6
            cpu_ms = statistics.median(r["cpu_ms"] for r in runs)
            peak_mib = statistics.median(r["growth_kib"] for r in runs) / 1024
            figures[f"{side}_cpu_ms"] = cpu_ms
            figures[f"{side}_peak_mib"] = peak_mib
            figures[f"{side}_ms_per_mp"] = cpu_ms / megapixels
            figures[f"{side}_mib_per_mp"] = peak_mib / megapixels
    return figures


def write_inputs(folder: Path, side: int) -> None:
    """A source, a model output that repainted a third of everything, and a mask whose middle
    quarter is open to the edit."""
    import io

    from PIL import Image, ImageChops

    def png(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    grain = Image.effect_noise((side, side), 12).convert("RGB")
    sky = Image.linear_gradient("L").resize((side, side)).convert("RGB")
    source = ImageChops.add(sky, grain, scale=1.0, offset=-32)
    repaint = Image.effect_noise((side, side), 64).point(lambda v: 255 if v > 150 else 0)
    output = Image.composite(ImageChops.invert(source), source, repaint)
    mask = Image.new("RGBA", (side, side), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (side // 4, side // 4, 3 * side // 4, 3 * side // 4))
    folder.mkdir(parents=True)
    for name, image in (("source", source), ("output", output), ("mask", mask)):
        (folder / f"{name}.png").write_bytes(png(image))


def child() -> None:
    """In a fresh process: read the three PNGs, composite once, print CPU ms and peak growth."""
    import json
    import sys
    import time

    from airflow_provider_cometapi.api.compositing import check_output
    from benchmarks.support import memory_kib, reset_peak_rss

    folder = Path(sys.argv[1])
    source, output, mask = (folder / f"{n}.png" for n in ("source", "output", "mask"))
    inputs = source.read_bytes(), output.read_bytes(), mask.read_bytes()
    reset_peak_rss()
    before = memory_kib()["VmHWM"]
    started = time.process_time()
    result = check_output(inputs[1], inputs[0], inputs[2], mime_type="image/png", composite=True)
    cpu_ms = (time.process_time() - started) * 1000
    growth = memory_kib()["VmHWM"] - before
    print(json.dumps({"cpu_ms": cpu_ms, "growth_kib": growth, "bytes": len(result.data)}))


def report(figures: dict[str, float]) -> str:
    """The figures as text."""
    lines = ["Mask check + composite (preserve_unmasked), PNG, median of 3 fresh processes:"]
    for side in SIDES:
        lines.append(
            f"  {side}x{side}: {figures[f'{side}_cpu_ms']:.0f} ms CPU, "
            f"{figures[f'{side}_peak_mib']:.0f} MiB peak growth = "
            f"{figures[f'{side}_ms_per_mp']:.0f} ms and {figures[f'{side}_mib_per_mp']:.1f} MiB "
            "a megapixel"
        )
    return "\n".join(lines)
