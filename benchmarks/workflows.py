"""Workflow jobs: submit-to-result latency and jobs per second, local and Celery executors.

The workflow is one trivial node (``math.hypot``), so the figures are the job layer's cost:
submitting, a worker process or a Celery worker running ``ewoks.execute_graph``, the result
coming back and the job document written to Redis. The baseline is ``ewoks.execute_graph`` of
the same graph called directly in this process (no isolation, no cancel, no record).

- latency: median and p90 of one job at a time (``await run_job(...)``), warm workers;
- throughput: 30 jobs submitted at once, jobs/s until the last result (2 local workers; a
  Celery worker with concurrency 2);
- cold start: the first local job, which spawns a worker process that imports ewoks.

Runs its own Redis (unix sockets) and its own Celery worker.

    python benchmarks/workflows.py
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from blissng.redisdb import RedisUrls, start_redis
from blissng.redisdb.server import url_with_db
from blissng.testing.celery import start_celery_worker, stop_celery_worker
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
SEQUENTIAL = 20
BURST = 30
RESULTS: list[dict[str, object]] = []


def report(metric: str, value: float, unit: str, baseline: float | None, target: str) -> None:
    RESULTS.append(
        {
            "benchmark": "workflows",
            "metric": metric,
            "value": round(value, 3),
            "unit": unit,
            "baseline": None if baseline is None else round(baseline, 3),
            "target": target,
        }
    )


def baseline() -> tuple[list[float], float]:
    """``ewoks.execute_graph`` in this process: per-call latency (ms) and calls/s."""
    import ewoks

    ewoks.execute_graph(GRAPH)  # first call loads the task
    latencies = []
    for _ in range(SEQUENTIAL):
        t0 = time.perf_counter()
        ewoks.execute_graph(GRAPH)
        latencies.append((time.perf_counter() - t0) * 1e3)
    t0 = time.perf_counter()
    for _ in range(BURST):
        ewoks.execute_graph(GRAPH)
    return latencies, BURST / (time.perf_counter() - t0)


async def measure(jobs: JobManager, executor: str) -> tuple[list[float], float, float]:
    """(latencies ms, jobs/s, first-job ms) for one executor."""
    t0 = time.perf_counter()
    assert await jobs.run_job(GRAPH, executor=executor) == {"return_value": 5.0}
    first = (time.perf_counter() - t0) * 1e3
    # Both local workers warm before the measures.
    warm = [jobs.run_job(GRAPH, executor=executor) for _ in range(2)]
    for job in warm:
        await job
    latencies = []
    for _ in range(SEQUENTIAL):
        t0 = time.perf_counter()
        await jobs.run_job(GRAPH, executor=executor)
        latencies.append((time.perf_counter() - t0) * 1e3)
    t0 = time.perf_counter()
    burst = [jobs.run_job(GRAPH, executor=executor) for _ in range(BURST)]
    for job in burst:
        await job
    rate = BURST / (time.perf_counter() - t0)
    return latencies, rate, first


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


Figures = dict[str, tuple[list[float], float, float]]


async def run(stack_urls: RedisUrls, celery_url: str, queue: str) -> Figures:
    settings = {"queue": queue, "celery_url": celery_url, "local_workers": 2}
    figures: Figures = {}
    async with JobManager(stack_urls, settings=settings, session="bench") as jobs:
        figures["local"] = await measure(jobs, "local")
        figures["celery"] = await measure(jobs, "celery")
    return figures


def main() -> None:
    base_lat, base_rate = baseline()
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

    base_median = statistics.median(base_lat)
    print(f"{'executor':<10} {'median ms':>10} {'p90 ms':>10} {'jobs/s':>10} {'first job ms':>13}")
    base_p90 = p90(base_lat)
    print(f"{'in-process':<10} {base_median:>10.2f} {base_p90:>10.2f} {base_rate:>10.1f} {'-':>13}")
    for name, (lat, rate, first) in figures.items():
        median = statistics.median(lat)
        print(f"{name:<10} {median:>10.2f} {p90(lat):>10.2f} {rate:>10.1f} {first:>13.0f}")
        report(f"{name}_latency_median", median, "ms", base_median, "<= 50 ms")
        report(f"{name}_overhead_median", median - base_median, "ms", 0.0, "<= 50 ms")
        report(f"{name}_latency_p90", p90(lat), "ms", p90(base_lat), "<= 100 ms")
        report(f"{name}_jobs_per_second", rate, "jobs/s", base_rate, ">= 20 jobs/s")
        report(f"{name}_first_job", first, "ms", None, "<= 5000 ms (spawns and imports)")
    for line in RESULTS:
        print(json.dumps(line))


if __name__ == "__main__":
    main()
