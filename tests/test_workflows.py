"""Workflow jobs on the local executor: real worker processes, a real Redis for the records."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import anyio
import psutil
import pytest

from blissng.errors import Aborted
from blissng.redisdb import RedisUrls, async_client
from blissng.workflows import (
    JobFailed,
    JobManager,
    JobState,
    JobTimeout,
    WorkflowNotFound,
    list_jobs,
    read_job,
    run_job,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def graph(*nodes: dict, links: list[dict] | None = None, name: str = "g") -> dict:
    return {
        "graph": {"id": name, "schema_version": "1.2"},
        "nodes": list(nodes),
        "links": links or [],
    }


def node(node_id: str, function: str, *args: object) -> dict:
    return {
        "id": node_id,
        "task_type": "method",
        "task_identifier": function,
        "default_inputs": [{"name": i, "value": v} for i, v in enumerate(args)],
    }


def chain(source: str, target: str) -> dict:
    return {
        "source": source,
        "target": target,
        "data_mapping": [{"source_output": "return_value", "target_input": 0}],
    }


HYPOT = graph(node("hypot", "math.hypot", 3.0, 4.0), name="hypot")
SLEEP = graph(node("nap", "time.sleep", 60), name="sleep")
# sqrt(-4) fails in the second node, after the first one worked.
FAILING = graph(
    node("negate", "operator.neg", 4.0),
    node("square_root", "math.sqrt"),
    links=[chain("negate", "square_root")],
    name="failing",
)


@pytest.fixture
async def jobs(redis_urls: RedisUrls):
    async with JobManager(redis_urls, session="test") as manager:
        yield manager


async def test_success_returns_the_workflow_result_and_records_it(jobs, redis_urls):
    job = jobs.run_job(HYPOT)
    assert job.state is JobState.PENDING and job.id
    assert await job == {"return_value": 5.0}
    assert job.state is JobState.SUCCEEDED
    assert job.started is not None and job.ended is not None and job.ended >= job.started
    assert "succeeded" in job.__info__() and "5.0" in job.__info__()
    client = async_client(redis_urls.data)
    try:
        doc = await read_job(client, job.id)
        assert doc is not None
        assert doc["state"] == "succeeded" and doc["name"] == "hypot"
        assert doc["session"] == "test" and doc["executor"] == "local"
        assert doc["result"] == {"return_value": 5.0}
        assert 0 < await client.ttl(f"blissng:job:{job.id}") <= 24 * 3600
        states = [
            (e[b"id"].decode(), e[b"state"].decode())
            for _, e in await client.xrange("blissng:jobs")
        ]
        assert states == [(job.id, "pending"), (job.id, "running"), (job.id, "succeeded")]
        assert [d["id"] for d in await list_jobs(client)] == [job.id]
    finally:
        await client.aclose()


async def test_clients_follow_jobs_as_they_come(jobs, redis_urls):
    from blissng.workflows import follow_jobs

    client = async_client(redis_urls.data)
    seen: list[tuple[str, str]] = []
    try:
        async with anyio.create_task_group() as tg:

            async def follow() -> None:
                async for job_id, state, doc in follow_jobs(client, since="0", session="test"):
                    assert doc is not None and doc["id"] == job_id
                    seen.append((job_id, state))
                    if state == "failed":
                        tg.cancel_scope.cancel()

            tg.start_soon(follow)
            first = jobs.run_job(HYPOT)
            await first
            second = jobs.run_job(FAILING)
            with pytest.raises(JobFailed):
                await second
    finally:
        await client.aclose()
    assert seen == [
        (first.id, "pending"), (first.id, "running"), (first.id, "succeeded"),
        (second.id, "pending"), (second.id, "running"), (second.id, "failed"),
    ]  # fmt: skip


async def test_inputs_override_default_inputs_and_workers_are_reused(jobs):
    first = jobs.run_job(HYPOT, inputs=[{"id": "hypot", "name": 0, "value": 6.0}])
    assert await first == {"return_value": pytest.approx(7.2111025509)}
    second = jobs.run_job(HYPOT, inputs=[{"id": "hypot", "name": 1, "value": 8.0}])
    assert await second == {"return_value": 8.54400374531753}
    assert first.pid == second.pid  # the warm worker ran both


async def test_failure_names_the_node_and_the_error(jobs, redis_urls):
    job = jobs.run_job(FAILING)
    with pytest.raises(JobFailed) as info:
        await job
    error = info.value
    assert error.node == "square_root"
    assert error.error_type == "ValueError"
    assert "square_root" in str(error) and "math domain error" in str(error)
    assert job.id in str(error)
    assert "math.sqrt" in (error.remote_traceback or "") or "sqrt" in str(error)
    assert job.state is JobState.FAILED
    client = async_client(redis_urls.data)
    try:
        doc = await read_job(client, job.id)
        assert doc is not None and doc["state"] == "failed" and doc["node"] == "square_root"
    finally:
        await client.aclose()


async def test_cancel_terminates_the_running_process(jobs, redis_urls):
    job = jobs.run_job(SLEEP)
    while job.state is not JobState.RUNNING:  # the worker says "started" as it begins
        await anyio.sleep(0.01)
    pid = job.pid
    assert pid is not None and psutil.pid_exists(pid)
    assert job.cancel() is True
    with pytest.raises(Aborted):
        await job
    assert job.state is JobState.CANCELLED
    assert not psutil.pid_exists(pid)  # the driver reaped it before reporting the cancel
    assert job.cancel() is False
    client = async_client(redis_urls.data)
    try:
        doc = await read_job(client, job.id)
        assert doc is not None and doc["state"] == "cancelled"
    finally:
        await client.aclose()
    # A new worker replaces the terminated one.
    assert await jobs.run_job(HYPOT) == {"return_value": 5.0}


async def test_timeout_stops_the_job(jobs):
    # The timeout counts from submission (queueing and a worker's start included): warm the
    # worker first so that the job is surely running when its time is up.
    await jobs.run_job(HYPOT)
    job = jobs.run_job(SLEEP, timeout=3)
    with pytest.raises(JobTimeout, match="timeout of 3"):
        await job
    assert job.state is JobState.TIMED_OUT
    assert job.pid is not None and not psutil.pid_exists(job.pid)


async def test_result_and_cancel_from_a_worker_thread(jobs):
    """Console code runs in worker threads: run_job, result(timeout) and cancel work there."""

    def console_code() -> tuple[object, str, bool]:
        quick = run_job(HYPOT)
        value = quick.result(timeout=60)
        slow = run_job(SLEEP)
        with pytest.raises(TimeoutError, match="still"):
            slow.result(timeout=0.01)
        cancelled = slow.cancel()
        with pytest.raises(Aborted):
            slow.result(timeout=60)
        return value, threading.current_thread().name, cancelled

    value, thread, cancelled = await anyio.to_thread.run_sync(console_code)
    assert value == {"return_value": 5.0}
    assert thread != threading.main_thread().name
    assert cancelled


async def test_result_refuses_to_block_the_event_loop(jobs):
    job = jobs.run_job(HYPOT)
    with pytest.raises(RuntimeError, match="await job"):
        job.result(1)
    await job


async def test_workflows_from_files_names_and_the_configuration(jobs, tmp_path: Path, redis_urls):
    (tmp_path / "hypot.json").write_text(json.dumps(HYPOT))
    (tmp_path / "hypot.yml").write_text(
        "graph: {id: yaml_hypot}\nnodes:\n  - id: h\n    task_type: method\n"
        "    task_identifier: math.hypot\n    default_inputs:\n"
        "      - {name: 0, value: 5.0}\n      - {name: 1, value: 12.0}\n"
    )
    assert await jobs.run_job(tmp_path / "hypot.json") == {"return_value": 5.0}
    assert await jobs.run_job(str(tmp_path / "hypot.yml")) == {"return_value": 13.0}
    # On the event loop files are read off the loop: a bad name fails the job...
    missing = jobs.run_job(tmp_path / "nothere.json")
    assert missing.name == "nothere"
    with pytest.raises(WorkflowNotFound, match="nothere.json not found"):
        await missing
    assert missing.state is JobState.FAILED
    client = async_client(redis_urls.data)
    try:
        doc = await read_job(client, missing.id)
        assert doc is not None and doc["state"] == "failed" and "not found" in doc["error"]
    finally:
        await client.aclose()
    with pytest.raises(WorkflowNotFound, match="no workflow named 'fit'.*fit_peak"):
        await jobs.run_job("fit")
    # ... in a worker thread (console code) it raises at once; a bad dict does everywhere.
    with pytest.raises(WorkflowNotFound, match="no workflow named 'fit'.*fit_peak"):
        await anyio.to_thread.run_sync(jobs.run_job, "fit")
    with pytest.raises(WorkflowNotFound, match="'nodes'"):
        jobs.run_job({"graph": {"id": "x"}})

    settings = {"graphs": {"h": "hypot.yml", "inline": HYPOT}}
    async with JobManager(settings=settings, config_dir=tmp_path) as configured:
        assert await configured.run_job("h") == {"return_value": 13.0}
        assert await configured.run_job("inline") == {"return_value": 5.0}


async def test_leaving_the_manager_cancels_running_jobs():
    async with JobManager() as manager:
        job = manager.run_job(SLEEP)
        while job.state is not JobState.RUNNING:
            await anyio.sleep(0.01)
        pid = job.pid
    assert job.state is JobState.CANCELLED
    assert pid is not None and not psutil.pid_exists(pid)


def test_job_keys_share_the_data_model_prefix():
    from blissng.data import keys
    from blissng.workflows._record import PREFIX as JOBS_PREFIX

    assert JOBS_PREFIX == keys.PREFIX


async def test_run_job_without_a_manager_says_what_to_do():
    with pytest.raises(Exception, match="no JobManager is running"):
        run_job(HYPOT)


async def test_fit_task_finds_a_noisy_gaussian_peak(jobs):
    """The demo workflow's fit node on data given directly (the scan-fed case is in
    test_workflows_scans.py)."""
    import numpy as np

    rng = np.random.default_rng(7)
    x = np.linspace(-5.0, 15.0, 81)
    y = 250.0 * np.exp(-0.5 * ((x - 4.2) / 1.3) ** 2) + 20.0 + rng.normal(0.0, 5.0, x.size)
    fit = graph(
        {
            "id": "fit",
            "task_type": "class",
            "task_identifier": "blissng.workflows.tasks.FitGaussianPeak",
        },
        name="fit_only",
    )
    result = await jobs.run_job(
        fit, inputs={"data": {"m1": x, "diode": y}, "x": "m1", "y": "diode"}
    )
    assert result["position"] == pytest.approx(4.2, abs=0.05)
    assert result["sigma"] == pytest.approx(1.3, abs=0.05)
    assert result["fwhm"] == pytest.approx(1.3 * 2.3548, abs=0.12)
    assert result["height"] == pytest.approx(250.0, abs=8.0)
    assert result["background"] == pytest.approx(20.0, abs=3.0)


async def test_inputs_for_a_named_node(jobs):
    two = graph(
        node("first", "operator.neg", 1.0),
        node("second", "operator.add", 0.0, 10.0),
        links=[chain("first", "second")],
    )
    # first: -(2.0) = -2; second: -2 + 100 (its input 1 set by name)
    result = await jobs.run_job(two, inputs={"0": 2.0, "second": {"1": 100.0}})
    assert result == {"return_value": 98.0}


async def test_configuration_section_names_workflows_and_settings(write_config, config_dir):
    from blissng.config import Config

    write_config("flows/hypot.json", json.dumps(HYPOT))
    write_config(
        "flows/workflows.yml",
        """
        workflows:
          local_workers: 1
          graphs:
            h: hypot.json
        """,
    )
    config = Config(config_dir)
    async with JobManager.from_config(config, session="cfg") as configured:
        assert configured.settings.local_workers == 1
        assert await configured.run_job("h") == {"return_value": 5.0}

    write_config("flows/workflows.yml", "workflows:\n  executor: slurm\n")
    with pytest.raises(Exception, match=r"workflows\.yml:2.*workflows\.executor"):
        JobManager.from_config(Config(config_dir))


async def test_a_worker_that_dies_fails_its_job_and_is_replaced(jobs):
    dying = graph(node("exit", "os._exit", 7), name="dying")
    with pytest.raises(JobFailed, match="died \\(exit code 7\\)"):
        await jobs.run_job(dying)
    first = jobs.run_job(HYPOT)
    assert await first == {"return_value": 5.0}
    # An idle worker killed from outside is replaced too.
    assert first.pid is not None
    victim = psutil.Process(first.pid)
    victim.kill()
    await anyio.to_thread.run_sync(victim.wait, 30)
    second = jobs.run_job(HYPOT)
    assert await second == {"return_value": 5.0}
    assert second.pid != first.pid


async def test_a_cpu_bound_workflow_never_holds_the_event_loop(jobs):
    """The workflow computes in its worker process; the job layer waits without blocking."""
    import os

    from blissng.health import loop_monitor

    await jobs.run_job(HYPOT)  # a warm worker: the spawn is not what is measured
    n = 30_000_000
    cpu = graph(node("sum", "builtins.sum", range(n)), name="cpu")
    async with loop_monitor(threshold=0.05) as monitor:
        job = jobs.run_job(cpu)
        assert await job == {"return_value": n * (n - 1) // 2}
    assert job.pid != os.getpid()
    ours = [
        stall.describe()
        for stall in monitor.stats().stalls
        if any("blissng/workflows" in frame.filename for frame in stall.stack)
    ]
    assert not ours, "\n".join(ours)


def test_a_plain_script_uses_a_blocking_job_manager(redis_urls):
    """No event loop in the caller: the manager runs on one in a thread of its own."""
    from blissng.workflows import blocking_job_manager

    with blocking_job_manager(redis_urls, session="script") as manager:
        job = manager.run_job(HYPOT)
        assert job.result(timeout=60) == {"return_value": 5.0}
        slow = manager.run_job(SLEEP)
        with pytest.raises(TimeoutError):
            slow.result(timeout=0.01)
    assert slow.state is JobState.CANCELLED  # leaving the block stopped it


async def test_inputs_that_cannot_reach_a_worker_fail_the_job_clearly(jobs):
    with pytest.raises(JobFailed, match="inputs cannot be sent to a worker"):
        await jobs.run_job(HYPOT, inputs={"0": lambda: 1})
    assert await jobs.run_job(HYPOT) == {"return_value": 5.0}
