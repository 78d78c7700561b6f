"""Scale: 10,000-item batches on the worker and deferred, and what a DAG run of mapped batch
tasks adds to the metadata DB and storage, for an estimate of 100,000 items in one run.

Each case is a real DAG run with ``dag.test()`` on Airflow's SQLite metadata DB, in a fresh
process with its own Airflow home, logging at INFO (a deployment's default) into a captured
file, after a one-item warm-up run; the emulator answers from its own process.
``BENCH_SCALE=small`` runs smaller batches (for development).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.scale_dag import (
    BATCH,
    DEFINITION_TABLES,
    MAPPED,
    TaskLog,
    home_env,
    load_dag,
    rows_added,
    storage_objects,
    table_rows,
    xcoms,
)
from benchmarks.support import (
    ROOT,
    cometapi_connection,
    emulator_process,
    memory_kib,
    reset_peak_rss,
)

SMALL = os.environ.get("BENCH_SCALE") == "small"
ITEMS = 1_000 if SMALL else 10_000
CONCURRENCY = 128
LATENCY = 1.0
IMAGE_SIDE = 64
MAPPED_TASKS = 4 if SMALL else 10
MAPPED_ITEMS = 50 if SMALL else 200
"""The fan-out whose growth figures are measured (emulator latency 0)."""
ESTIMATE_TASKS = 50
ESTIMATE_ITEMS = 100_000
PROMPT = "Add a small red ribbon to the paper boat."
GOAL_EFFICIENCY = 0.85
GOAL_RSS_MIB = 150
GOAL_PAYLOAD_BYTES = 16_000
GOAL_LOG_LINES_PER_10K = 200
LEFT_BEHIND = (".cometapi-claims", ".cometapi-staging")
"""Bookkeeping a finished run should not leave in the output folder."""
CHILD = "from benchmarks.bench_scale import child; child()"
CHILD_TIMEOUT = 900
START_LINE = r"^Editing \d+ item"
END_LINE = r"^(\d+)/\1 done"
"""The batch's last progress line: every item done."""


def run() -> dict[str, Any]:
    """Each case in its own process: a worker batch and a deferrable one (latency
    ``LATENCY``), then the mapped fan-out (latency 0)."""
    with tempfile.TemporaryDirectory(prefix="cometapi-bench-") as folder:
        work = Path(folder)
        _distinct_pngs(work / "warm-up", 1, first=0)
        _distinct_pngs(work / "in", ITEMS, first=1)
        for task in range(MAPPED_TASKS):
            part = work / "fan-in" / f"part{task:02d}"
            _distinct_pngs(part, MAPPED_ITEMS, first=1 + ITEMS + task * MAPPED_ITEMS)
        spent = _children_cpu()
        with emulator_process(latency=LATENCY) as url, cometapi_connection(url, max_retries=0):
            worker = _case("worker", work)
            deferred = _case("deferred", work)
        emulator_cpu = _children_cpu() - spent - worker["total_cpu_s"] - deferred["total_cpu_s"]
        with emulator_process() as url, cometapi_connection(url, max_retries=0):
            mapped = _case("mapped", work)
    return {
        "worker": worker,
        "deferred": deferred,
        "mapped": mapped,
        "emulator_ms_per_edit": emulator_cpu / (2 * ITEMS) * 1000,
    }


def _children_cpu() -> float:
    """CPU seconds of this process's children that have ended (the cases, the emulator)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _distinct_pngs(folder: Path, count: int, first: int) -> None:
    """``count`` gradient PNGs, each with its own number in its corner pixel."""
    import io

    from PIL import Image

    folder.mkdir(parents=True)
    base = Image.linear_gradient("L").resize((IMAGE_SIDE, IMAGE_SIDE)).convert("RGB")
    for number in range(first, first + count):
        image = base.copy()
        image.putpixel((0, 0), (number % 256, number // 256 % 256, 7))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        (folder / f"img{number:06d}.png").write_bytes(buffer.getvalue())


def _case(name: str, work: Path) -> dict[str, Any]:
    """Run one case in a fresh process (its log captured in a file); its figures, with those
    read from its log."""
    log_path, figures_path = work / f"{name}.log", work / f"{name}.json"
    env = {**os.environ, **home_env(work / f"home-{name}")}
    load = os.getloadavg()[0]
    with log_path.open("w") as log_file:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, name, str(work), str(figures_path)],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"the {name} case failed ({done.returncode}):\n{tail}")
    figures: dict[str, Any] = json.loads(figures_path.read_text())
    figures["load"] = (load, os.getloadavg()[0])
    since, until = (datetime.fromisoformat(at) for at in figures.pop("window"))
    log = TaskLog.read(log_path, since, until)
    figures["log_lines"] = len(log.provider)
    figures["log_per_item_lines"] = log.per_item()
    figures["log_by_source"] = log.by_source()
    figures["airflow_lines"] = log.airflow
    start, end = log.first(START_LINE), log.first(END_LINE)
    if start is not None and end is not None:
        figures["before_items_s"] = (start - since).total_seconds()
        figures["items_s"] = (end - start).total_seconds()
        figures["after_items_s"] = (until - end).total_seconds()
    figures["batch_spans_s"] = log.spans(START_LINE, END_LINE)
    return figures


def child() -> None:
    """In a fresh process: a one-item warm-up run, then the case; its figures go to a file.

    ``sys.argv``: the case (``worker``, ``deferred`` or ``mapped``), the work folder, the
    figures file.
    """
    import resource

    from airflow.utils import db

    name, folder, figures_path = sys.argv[1:4]
    work = Path(folder)
    db.initdb()
    warm_up = load_dag(
        "scale_warm_up",
        BATCH,
        prompt=PROMPT,
        sources=f"{work}/warm-up/",
        output=f"{work}/warm-up-out/{name}/",
        concurrency=1,
        deferrable=name == "deferred",
    )
    if str(warm_up.test().state) != "success":
        raise RuntimeError("the warm-up run failed")
    case = {"worker": _worker, "deferred": _deferred, "mapped": _mapped}[name]
    figures = case(work)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["total_cpu_s"] = usage.ru_utime + usage.ru_stime
    Path(figures_path).write_text(json.dumps(figures))


def _worker(work: Path) -> dict[str, Any]:
    dag = load_dag(
        "scale_worker",
        BATCH,
        prompt=PROMPT,
        sources=f"{work}/in/",
        output=f"{work}/worker-out/",
        concurrency=CONCURRENCY,
        deferrable=False,
    )
    return _measured(dag, work / "worker-out", ITEMS)


def _deferred(work: Path) -> dict[str, Any]:
    """As ``_worker``, deferred: ``dag.test()`` runs the trigger in line, rebuilt from its
    serialized kwargs; wrapped here to measure the trigger alone and its payloads."""
    import airflow.sdk.definitions.dag as dag_module

    inline = dag_module._run_inline_trigger
    trigger_figures: dict[str, Any] = {}

    def measured_trigger(trigger: Any, ti: Any) -> Any:
        trigger_figures["kwargs_bytes"] = len(json.dumps(trigger.serialize()[1]))
        trigger_figures["peak_before_kib"] = memory_kib()["VmHWM"]
        before = memory_kib()["VmRSS"]
        reset_peak_rss()
        start = time.perf_counter()
        event = inline(trigger, ti)
        trigger_figures["trigger_s"] = time.perf_counter() - start
        trigger_figures["trigger_growth_mib"] = (memory_kib()["VmHWM"] - before) / 1024
        trigger_figures["event_bytes"] = len(json.dumps(event.payload)) if event else 0
        return event

    dag = load_dag(
        "scale_deferred",
        BATCH,
        prompt=PROMPT,
        sources=f"{work}/in/",
        output=f"{work}/deferred-out/",
        concurrency=CONCURRENCY,
        deferrable=True,
    )
    dag_module._run_inline_trigger = measured_trigger
    try:
        figures = _measured(dag, work / "deferred-out", ITEMS)
    finally:
        dag_module._run_inline_trigger = inline
    peak_before = trigger_figures.pop("peak_before_kib")
    # the peak was reset when the trigger started: the run's peak is the larger of the two
    figures["growth_mib"] = max(figures["growth_mib"], (peak_before - figures["rss_kib"]) / 1024)
    return {**figures, **trigger_figures}


def _mapped(work: Path) -> dict[str, Any]:
    folders = [f"{work}/fan-in/part{task:02d}/" for task in range(MAPPED_TASKS)]
    dag = load_dag(
        "scale_mapped",
        MAPPED,
        prompt=PROMPT,
        sources=folders,
        output=f"{work}/mapped-out/",
        concurrency=CONCURRENCY,
    )
    return _measured(dag, work / "mapped-out", MAPPED_TASKS * MAPPED_ITEMS)


def _measured(dag: Any, output: Path, items: int) -> dict[str, Any]:
    """``dag.test()`` once: wall time, peak RSS growth, rows added, XComs, storage objects."""
    rows_before = table_rows()
    before = memory_kib()["VmRSS"]
    reset_peak_rss()
    since = datetime.now(timezone.utc)
    start, cpu = time.perf_counter(), time.process_time()
    dag_run = dag.test()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    until = datetime.now(timezone.utc)
    peak = memory_kib()["VmHWM"]
    stored = xcoms(dag.dag_id, dag_run.run_id)
    summaries = [json.loads(value) for key, value in stored if key == "summary"]
    edited = sum(summary["edited"] for summary in summaries)
    failed = sum(summary["failed"] + summary["not_started"] for summary in summaries)
    if str(dag_run.state) != "success" or edited != items or failed:
        raise RuntimeError(f"the run went wrong: {dag_run.state}, {edited} of {items} edited")
    return {
        "items": items,
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_kib": before,
        "growth_mib": (peak - before) / 1024,
        "xcom_bytes": sum(len(value) for _, value in stored),
        "xcom_rows": len(stored),
        "rows_added": rows_added(rows_before, table_rows()),
        "objects": storage_objects(output),
        "window": [since.isoformat(), until.isoformat()],
    }


def report(figures: dict[str, Any]) -> str:
    """The figures as README-ready lines, with the estimate for 100,000 items."""
    worker, deferred, mapped = figures["worker"], figures["deferred"], figures["mapped"]
    ideal = ITEMS / CONCURRENCY * LATENCY
    lines = [
        f"Scale ({IMAGE_SIDE}x{IMAGE_SIDE} PNGs, each its own file; each case a DAG run with "
        "dag.test() on SQLite in a fresh process, log level INFO, after a one-item warm-up run; "
        "the emulator in its own process):",
        *_batch_lines(f"{ITEMS:,}-item worker batch", worker, ideal),
        *_batch_lines(f"{ITEMS:,}-item deferrable batch", deferred, ideal),
        f"    trigger alone {deferred['trigger_s']:.1f} s, its peak RSS growth "
        f"{deferred['trigger_growth_mib']:.1f} MiB; trigger kwargs "
        f"{deferred['kwargs_bytes']:,} bytes + event payload {deferred['event_bytes']:,} bytes "
        f"+ XComs {deferred['xcom_bytes']:,} bytes = "
        f"{_payload(deferred):,} bytes (goal < {GOAL_PAYLOAD_BYTES:,})"
        f"{_missed(_payload(deferred) < GOAL_PAYLOAD_BYTES)}",
        f"  the emulator spent {figures['emulator_ms_per_edit']:.1f} ms of CPU per edit "
        f"({figures['emulator_ms_per_edit'] * CONCURRENCY / LATENCY / 1000:.2f} cores at the "
        f"ideal {CONCURRENCY / LATENCY:.0f} edits/s), on the same {os.cpu_count()} cores",
        *_growth_lines(mapped, worker),
        *_estimate_lines(mapped, worker),
    ]
    return "\n".join(lines)


def _batch_lines(what: str, case: dict[str, Any], ideal: float) -> list[str]:
    efficiency = ideal / case["wall_s"]
    per_10k = case["log_lines"] / case["items"] * 10_000
    sources = ", ".join(f"{name} {count:,}" for name, count in case["log_by_source"].items())
    return [
        f"  {what}, emulator latency {LATENCY:.1f} s, max_concurrency={CONCURRENCY}: "
        f"dag.test() wall {case['wall_s']:.1f} s vs ideal {ideal:.1f} s: efficiency "
        f"{efficiency:.2f} (goal >= {GOAL_EFFICIENCY}){_missed(efficiency >= GOAL_EFFICIENCY)}",
        f"    {case['before_items_s']:.1f} s before the batch's start line (Airflow, listing, "
        f"planning), {case['items_s']:.1f} s from it to its end line, "
        f"{case['after_items_s']:.1f} s after (report, XComs, Airflow)",
        f"    CPU of the process over the run {case['cpu_s']:.1f} s = "
        f"{case['cpu_s'] / case['items'] * 1000:.1f} ms per item, "
        f"{case['cpu_s'] / case['wall_s']:.2f} cores on average; machine load average "
        f"{case['load'][0]:.1f} before, {case['load'][1]:.1f} after",
        f"    peak RSS growth {case['growth_mib']:.1f} MiB (goal < {GOAL_RSS_MIB})"
        f"{_missed(case['growth_mib'] < GOAL_RSS_MIB)}; XComs {case['xcom_bytes']:,} bytes in "
        f"{case['xcom_rows']} rows (goal < {GOAL_PAYLOAD_BYTES:,})"
        f"{_missed(case['xcom_bytes'] < GOAL_PAYLOAD_BYTES)}",
        f"    log lines at INFO or above from the provider's loggers: {case['log_lines']:,} = "
        f"{per_10k:,.0f} per 10,000 items (goal < {GOAL_LOG_LINES_PER_10K})"
        f"{_missed(per_10k < GOAL_LOG_LINES_PER_10K)}: {sources}; "
        f"besides, {case['airflow_lines']} of Airflow's task runner",
    ]


def _growth_lines(mapped: dict[str, Any], worker: dict[str, Any]) -> list[str]:
    tasks, items = MAPPED_TASKS, mapped["items"]
    run_rows = _run_rows(mapped)
    tables = ", ".join(
        f"{table} {count}"
        for table, count in mapped["rows_added"].items()
        if table not in DEFINITION_TABLES
    )
    once = sum(mapped["rows_added"].get(table, 0) for table in DEFINITION_TABLES)
    objects = ", ".join(f"{kind} {count:,}" for kind, count in mapped["objects"].items())
    per_item, per_task = _objects_split(mapped)
    left = {kind: mapped["objects"].get(kind, 0) for kind in LEFT_BEHIND}
    spent = sum(mapped["batch_spans_s"])
    return [
        f"  Mapped fan-out, {tasks} tasks x {MAPPED_ITEMS} items, emulator latency 0, "
        f"max_concurrency={CONCURRENCY}: dag.test() wall {mapped['wall_s']:.1f} s",
        f"    metadata DB rows added by the run: {run_rows} ({tables}) = "
        f"{run_rows / tasks:.1f} per task instance, {run_rows / items:.3f} per item; "
        f"{once} more once for the new DAG; the {ITEMS:,}-item task added "
        f"{_run_rows(worker)}",
        f"    storage objects: {sum(mapped['objects'].values()):,} ({objects}) = "
        f"{per_item:.2f} per item + {per_task:.1f} per task instance (the reports); left "
        f"behind: {', '.join(f'{kind} {count}' for kind, count in left.items())}",
        f"    per task instance: {mapped['wall_s'] / tasks:.2f} s of the run's wall (items' "
        f"ideal 0 at latency 0), of which {spent / tasks:.2f} s the batch's own work (start "
        f"to end line, {spent / items * 1000:.1f} ms per item) and "
        f"{_overhead(mapped):.2f} s scheduling and dag.test() overhead",
    ]


def _estimate_lines(mapped: dict[str, Any], worker: dict[str, Any]) -> list[str]:
    tasks, items = ESTIMATE_TASKS, ESTIMATE_ITEMS
    per_task_items = items // tasks
    rows = _run_rows(mapped) / MAPPED_TASKS
    per_item, per_task = _objects_split(mapped)
    xcom = mapped["xcom_bytes"] / MAPPED_TASKS
    hook_lines = mapped["log_per_item_lines"] / mapped["items"]
    task_lines = (mapped["log_lines"] - mapped["log_per_item_lines"]) / MAPPED_TASKS
    efficiency = ITEMS / CONCURRENCY * LATENCY / worker["wall_s"]
    batch = per_task_items / CONCURRENCY * LATENCY / efficiency
    overhead = _overhead(mapped)
    return [
        f"  Estimate for {items:,} items in one DAG run as {tasks} mapped tasks x "
        f"{per_task_items:,} (from the per-task and per-item figures above):",
        f"    metadata DB rows: {tasks} x {rows:.1f} = {tasks * rows:,.0f}",
        f"    storage objects: {items:,} x {per_item:.2f} + {tasks} x {per_task:.1f} = "
        f"{items * per_item + tasks * per_task:,.0f}",
        f"    XComs: {tasks} x {xcom:,.0f} bytes = {tasks * xcom:,.0f} bytes",
        f"    log lines: {items:,} x {hook_lines:.2f} (hooks, per request) + {tasks} x "
        f"{task_lines:.1f} (operator) = {items * hook_lines + tasks * task_lines:,.0f}, plus "
        "a progress line every 10 s of each batch",
        f"    time with one task instance at a time, as dag.test() runs them: {tasks} x "
        f"({per_task_items:,} / {CONCURRENCY} x {LATENCY:.0f} s / {efficiency:.2f} worker "
        f"efficiency + {overhead:.2f} s overhead) = {tasks * (batch + overhead):,.0f} s",
    ]


def _run_rows(case: dict[str, Any]) -> int:
    """Rows a run added, less those of the DAG's definition."""
    added: dict[str, int] = case["rows_added"]
    return sum(count for table, count in added.items() if table not in DEFINITION_TABLES)


def _objects_split(case: dict[str, Any]) -> tuple[float, float]:
    """Storage objects per item (all but reports) and per task instance (the reports)."""
    objects: dict[str, int] = case["objects"]
    reports = objects.get(".cometapi-reports", 0)
    return (sum(objects.values()) - reports) / case["items"], reports / MAPPED_TASKS


def _overhead(case: dict[str, Any]) -> float:
    """Seconds per task instance of the run's wall outside the batches' own work."""
    return (case["wall_s"] - sum(case["batch_spans_s"])) / MAPPED_TASKS


def _payload(case: dict[str, Any]) -> int:
    return int(case["kwargs_bytes"] + case["event_bytes"] + case["xcom_bytes"])


def _missed(met: bool) -> str:
    return "" if met else " MISSED"


if __name__ == "__main__":
    print(report(run()))
