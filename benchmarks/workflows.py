"""Workflow jobs: submit-to-result latency and jobs per second, local and Celery executors.

The workflow is one trivial node (``math.hypot``), so the figures are the job layer's cost:
submitting, a worker process or a Celery worker running ``ewoks.execute_graph``, the result
coming back and the job document written to Redis. The baseline is ``ewoks.execute_graph`` of
the same graph called directly in this process (no isolation, no cancel, no record).

- latency: median and p90 of one job at a time (``await run_job(...)``), warm workers, the
  three ways interleaved so that they see the same load of a shared machine;
- throughput: 20 jobs submitted at once, jobs/s until the last result (2 local workers; a
  Celery worker with concurrency 2; the baseline one call at a time in one thread);
- cold start: the first local job, which spawns a worker process that imports ewoks.

Runs its own Redis (unix sockets) and its own Celery worker.

    python benchmarks/workflows.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
from _figures import figure, sized

from blissng.redisdb import RedisUrls, start_redis, url_with_db
from blissng.testing import start_celery_worker, stop_celery_worker
from blissng.workflows import CELERY_DB, JobManager

GRAPH = {
    "graph": {"id": "hypot", "schema_version": "1.2"},
    "nodes": [
        {
            "id": "hypot",
            "task_type": "method",
            "task_identifier": "math.hypot",
            "default_inputs": [{"name": 0, "value": 3.0}, {"name": 1, "value": 4.0}],
        }
    ],
    "links": [],
}
SEQUENTIAL = sized(15, 2)
BURST = sized(20, 2)
RESULTS: list[dict[str, Any]] = []


def report(metric: str, value: float, unit: str, baseline: float | None, target: str) -> None:
    """Collect a figure; all are printed after the table."""
    RESULTS.append(
        {"metric": metric, "value": value, "unit": unit, "baseline": baseline, "target": target}
    )


Call = Callable[[], Coroutine[Any, Any, Any]]


def in_process() -> None:
    import ewoks

    ewoks.execute_graph(GRAPH)


async def timed(call: Call) -> float:
    t0 = time.perf_counter()
    await call()
    return (time.perf_counter() - t0) * 1e3


async def burst_rate(call: Call, count: int = BURST) -> float:
    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(call)
    return count / (time.perf_counter() - t0)


Figures = dict[str, tuple[list[float], float, float]]


async def run(stack_urls: RedisUrls, celery_url: str, queue: str) -> Figures:
    """Latencies interleaved (in-process, local, Celery in turn) so that the three see the same
    load of a shared machine; then a burst of each."""
    settings = {"queue": queue, "celery_url": celery_url, "local_workers": 2}
    async with JobManager(stack_urls, settings=settings, session="bench") as jobs:

        async def baseline() -> None:
            # One thread at a time, like a single worker process would run them.
            await anyio.to_thread.run_sync(in_process, limiter=serial)

        serial = anyio.CapacityLimiter(1)
        calls: dict[str, Call] = {
            "in-process": baseline,
            "local": lambda: jobs.run_job(GRAPH, executor="local").wait(),
            "celery": lambda: jobs.run_job(GRAPH, executor="celery").wait(),
        }
        first = {name: await timed(call) for name, call in calls.items()}
        for call in calls.values():  # both local workers warm, ewoks loaded everywhere
            await burst_rate(call, 2)
        latencies: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(SEQUENTIAL):
            for name, call in calls.items():
                latencies[name].append(await timed(call))
        rates = {name: await burst_rate(call) for name, call in calls.items()}
    return {name: (latencies[name], rates[name], first[name]) for name in calls}


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="blissng-bench-") as tmp:
        stack = start_redis(Path(tmp) / "redis", url=None)
        worker = None
        try:
            url = url_with_db(stack.urls.settings, CELERY_DB)
            queue = f"bench-{os.getpid()}"
            worker = start_celery_worker(url, queue, Path(tmp) / "worker.log", concurrency=2)
            figures = anyio.run(run, stack.urls, url, queue)
        finally:
            if worker is not None:
                stop_celery_worker(worker)
            stack.stop()

    base_lat, base_rate, _ = figures.pop("in-process")
    base_median, base_p90 = statistics.median(base_lat), p90(base_lat)
    print(f"{'executor':<10} {'median ms':>10} {'p90 ms':>10} {'jobs/s':>10} {'first job ms':>13}")
    print(f"{'in-process':<10} {base_median:>10.2f} {base_p90:>10.2f} {base_rate:>10.1f} {'-':>13}")
    for name, (lat, rate, first) in figures.items():
        median = statistics.median(lat)
        print(f"{name:<10} {median:>10.2f} {p90(lat):>10.2f} {rate:>10.1f} {first:>13.0f}")
        report(f"{name}_latency_median", median, "ms", base_median, "<= 50 ms")
        report(f"{name}_overhead_median", median - base_median, "ms", 0.0, "<= 50 ms")
        report(f"{name}_latency_p90", p90(lat), "ms", base_p90, "<= 100 ms")
        report(f"{name}_jobs_per_second", rate, "jobs/s", base_rate, ">= 20 jobs/s")
        report(f"{name}_first_job", first, "ms", None, "<= 5000 ms (spawns and imports)")
    for row in RESULTS:
        figure("workflows", row["metric"], row["value"], row["unit"], baseline=row["baseline"],
               target=row["target"])  # fmt: skip


if __name__ == "__main__":
    main()
