"""Workflows triggered by scans: ``ascan(..., workflow="fit_peak")`` submits the demo workflow
when the scan ends; it reads the scan through the reader API in its worker process and fits
the simulated counter's peak."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from blissng.redisdb import RedisUrls, async_client
from blissng.scans import ascan
from blissng.sim import MockupController, SimCounterController
from blissng.testing import redis_scan_context
from blissng.workflows import JobFailed, JobManager, JobState, read_job

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

# The demo beamline's diode (blissng/demo/config/counters.yml): a peak at m1 = 1.0.
CENTER, FWHM, HEIGHT, BACKGROUND, NOISE = 1.0, 0.4, 1000.0, 10.0, 2.0


def devices() -> tuple[Any, Any]:
    ctrl = MockupController(
        "mockup",
        MockupController.Parameters.model_validate(
            {"instant": True, "axes": [{"name": "m1", "velocity": 1000, "acceleration": 1e5}]}
        ),
    )
    m1 = ctrl.child("m1")
    simct = SimCounterController(
        "simct",
        SimCounterController.Parameters.model_validate(
            {
                "sampling_period": 0.001,
                "seed": 12345,
                "counters": [
                    {"name": "diode", "motor": m1, "center": CENTER, "fwhm": FWHM,
                     "height": HEIGHT, "background": BACKGROUND, "noise": NOISE, "nsamples": 1},
                ],
            }
        ),
    )  # fmt: skip
    return m1, simct


@pytest.fixture
async def ctx(redis_urls: RedisUrls, tmp_path: Path) -> Any:
    async with redis_scan_context(
        redis_urls, tmp_path / "data", session="wf", collection="peaks"
    ) as context:
        yield context


async def test_a_scan_triggers_the_demo_fit_which_finds_the_peak(ctx, redis_urls):
    m1, simct = devices()
    async with JobManager(redis_urls, session="wf") as jobs:
        scan = await ascan(m1, 0.0, 2.0, 80, 0, simct, workflow="fit_peak")
        assert scan.state == "done" and scan.key
        [job] = jobs.jobs_of_scan(scan.key)
        result = await job
    assert job.state is JobState.SUCCEEDED and job.name == "fit_peak"
    # 81 points 0.025 apart, noise 2 on a peak of 1000: the fit is far better than a step.
    assert result["position"] == pytest.approx(CENTER, abs=0.01)
    assert result["fwhm"] == pytest.approx(FWHM, abs=0.02)
    assert result["height"] == pytest.approx(HEIGHT, abs=10 * NOISE)
    assert result["background"] == pytest.approx(BACKGROUND, abs=5 * NOISE)
    assert f"workflow fit_peak submitted as job {job.id}" in ctx.output.getvalue()
    client = async_client(redis_urls.data)
    try:
        doc = await read_job(client, job.id)
        assert doc is not None and doc["scan"] == scan.key and doc["state"] == "succeeded"
        assert doc["inputs"] == {"scan": scan.key, "redis_url": redis_urls.data}
        assert doc["result"]["position"] == pytest.approx(result["position"])
    finally:
        await client.aclose()


async def test_request_with_inputs_and_a_failing_fit_names_the_node(ctx, redis_urls):
    m1, simct = devices()
    request = {"workflow": "fit_peak", "inputs": {"fit": {"y": "nosuchcounter"}}}
    async with JobManager(redis_urls, session="wf") as jobs:
        scan = await ascan(m1, 0.0, 2.0, 10, 0, simct, workflow=request)
        [job] = jobs.jobs_of_scan(scan.key)
        with pytest.raises(JobFailed) as info:
            await job
    assert info.value.node == "fit"
    assert "nosuchcounter" in str(info.value) and "simct:diode" in str(info.value)


async def test_scans_of_other_sessions_and_without_workflow_submit_nothing(ctx, redis_urls):
    m1, simct = devices()
    async with JobManager(redis_urls, session="another") as others:
        async with JobManager(redis_urls, session="wf") as jobs:
            await ascan(m1, 0.0, 1.0, 5, 0, simct)
            scan = await ascan(m1, 0.0, 1.0, 5, 0, simct, workflow="fit_peak")
            assert len(jobs.jobs) == 1
            await jobs.jobs[0]
        assert not others.jobs
    assert [j.scan for j in jobs.jobs] == [scan.key]


async def test_a_scan_triggered_fit_on_the_celery_worker(ctx, redis_urls, celery_worker):
    """The Celery worker reads the scan from the data Redis itself (same machine: its socket)."""
    m1, simct = devices()
    request = {"workflow": "fit_peak", "executor": "celery", "timeout": 120}
    async with JobManager(
        redis_urls, celery_worker.settings(executor="local"), session="wf"
    ) as jobs:
        scan = await ascan(m1, 0.0, 2.0, 40, 0, simct, workflow=request)
        [job] = jobs.jobs_of_scan(scan.key)
        result = await job
    assert job.executor == "celery" and job.worker == celery_worker.hostname
    assert result["position"] == pytest.approx(CENTER, abs=0.02)
