"""Workflow jobs on Celery: a real worker process (session fixture ``celery_worker``) on the
test Redis, database CELERY_DB, which per-test isolation never flushes."""

from __future__ import annotations

import anyio
import psutil
import pytest

from blissng.errors import Aborted
from blissng.redisdb import RedisUrls, async_client
from blissng.testing import RESERVED_DBS
from blissng.workflows import (
    CELERY_DB,
    JobFailed,
    JobManager,
    JobState,
    JobTimeout,
    read_job,
)
from test_workflows import FAILING, HYPOT, SLEEP, graph

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]


@pytest.fixture
async def jobs(celery_worker, redis_urls: RedisUrls):
    async with JobManager(redis_urls, settings=celery_worker.settings(), session="c") as manager:
        yield manager


def test_the_test_plugin_reserves_the_database_celery_uses():
    assert CELERY_DB in RESERVED_DBS


async def test_celery_job_returns_the_result(jobs, celery_worker, redis_urls):
    job = jobs.run_job(HYPOT)
    assert job.executor == "celery"
    assert await job == {"return_value": 5.0}
    assert job.state is JobState.SUCCEEDED
    assert job.worker == celery_worker.hostname
    assert job.started is not None and job.ended is not None and job.ended >= job.started
    assert job.pid in [p.pid for p in psutil.Process(celery_worker.pid).children()]
    client = async_client(redis_urls.data)
    try:
        doc = await read_job(client, job.id)
        assert doc is not None and doc["state"] == "succeeded"
        assert doc["executor"] == "celery" and doc["worker"] == celery_worker.hostname
    finally:
        await client.aclose()


async def test_celery_returns_numpy_arrays(jobs):
    import numpy as np

    linspace = graph(
        {
            "id": "ramp",
            "task_type": "method",
            "task_identifier": "numpy.linspace",
            "default_inputs": [{"name": 0, "value": 0.0}, {"name": 1, "value": 1.0}],
        }
    )
    result = await jobs.run_job(linspace)
    np.testing.assert_allclose(result["return_value"], np.linspace(0.0, 1.0))


async def test_celery_failure_names_the_node(jobs):
    with pytest.raises(JobFailed) as info:
        await jobs.run_job(FAILING)
    assert info.value.node == "square_root"
    assert "math domain error" in str(info.value)


async def test_celery_cancel_terminates_the_task_process(jobs, celery_worker):
    job = jobs.run_job(SLEEP)
    while job.state is not JobState.RUNNING:
        await anyio.sleep(0.01)
    pid = job.pid
    assert pid is not None and psutil.pid_exists(pid)
    assert pid != celery_worker.pid  # a pool process, not the worker itself
    job.cancel()
    with pytest.raises(Aborted):
        await job
    assert job.state is JobState.CANCELLED
    # The worker records the revocation once it has killed the process; reaping is its own.
    await anyio.to_thread.run_sync(_gone, pid)
    assert celery_worker.process.poll() is None  # the worker itself lives on
    assert await jobs.run_job(HYPOT) == {"return_value": 5.0}


async def test_celery_timeout_stops_the_task(jobs):
    job = jobs.run_job(SLEEP, timeout=4)
    with pytest.raises(JobTimeout):
        await job
    assert job.state is JobState.TIMED_OUT
    if job.pid is not None:
        await anyio.to_thread.run_sync(_gone, job.pid)


def _gone(pid: int) -> None:
    try:
        psutil.Process(pid).wait(timeout=30)
    except psutil.NoSuchProcess:
        pass


def test_worker_command_needs_to_know_the_broker(tmp_path):
    import os
    import subprocess
    import sys

    from blissng.workflows._worker import broker_url, configure

    env = {k: v for k, v in os.environ.items() if k != "BLISSNG_REDIS_URL"}
    out = subprocess.run(
        [sys.executable, "-m", "blissng.workflows"],
        capture_output=True, text=True, timeout=50, env=env, check=False,
    )  # fmt: skip
    assert out.returncode != 0 and "give --redis URL" in out.stderr

    import argparse

    parser = argparse.ArgumentParser()
    configure(parser)
    given = parser.parse_args(["--redis", "redis://host:6379/0"])
    assert broker_url(given) == f"redis://host:6379/{CELERY_DB}"
    exact = parser.parse_args(["--broker", "redis://host:6379/5"])
    assert broker_url(exact) == "redis://host:6379/5"


async def test_a_job_waiting_for_a_missing_worker_says_so(celery_worker, redis_urls):
    import redis

    nobody = f"{celery_worker.queue}-nobody"
    settings = celery_worker.settings(queue=nobody)
    async with JobManager(redis_urls, settings=settings, session="c") as jobs:
        job = jobs.run_job(HYPOT)
        while job.note is None:  # checked once, NO_WORKER_CHECK s after submission
            await anyio.sleep(0.05)
        assert f"no Celery worker serves the queue {nobody!r}" in job.note
        assert "blissng worker" in job.note and job.state is JobState.PENDING
        client = async_client(redis_urls.data)
        try:
            doc = await read_job(client, job.id)
            assert doc is not None and doc["note"] == job.note
        finally:
            await client.aclose()
        job.cancel()
        with pytest.raises(Aborted):
            await job
    broker = redis.Redis.from_url(celery_worker.url)
    try:
        broker.delete(nobody)  # the message nobody will take
    finally:
        broker.close()
