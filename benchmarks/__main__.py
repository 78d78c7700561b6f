"""``make bench``: run every benchmark in one process and print the figures."""

from __future__ import annotations

from benchmarks import bench_hook


def main() -> None:
    """Run each benchmark and print its report."""
    print(bench_hook.report(bench_hook.run()), flush=True)


if __name__ == "__main__":
    main()
