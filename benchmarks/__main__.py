"""``make bench``: run every benchmark in order and print the figures."""

from __future__ import annotations

import time

from benchmarks import (
    bench_composite,
    bench_deferrable,
    bench_hook,
    bench_memory,
    bench_parse,
    bench_scale,
    bench_throughput,
)

BENCHMARKS = (
    bench_throughput,
    bench_hook,
    bench_memory,
    bench_deferrable,
    bench_parse,
    bench_scale,
    bench_composite,
)


def main() -> None:
    """Run each benchmark and print its report as soon as it is done."""
    start = time.perf_counter()
    for bench in BENCHMARKS:
        print(bench.report(bench.run()), end="\n\n", flush=True)
    print(f"All benchmarks: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
