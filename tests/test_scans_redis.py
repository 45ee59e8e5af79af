"""Scans published into the real test Redis and read back through the reader API (as another
session would), the saving path in the scan document, the live display read from Redis,
hardware-triggered acquisition with the simulator processes (trigger box -> MCA and camera),
and a step scan over the real transports (serial motor controller on a pty, TCP scaler)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import h5py
import numpy as np
import pytest

from blissng.comm import register_simulators, unregister_simulators
from blissng.config import Config
from blissng.data import DataStore
from blissng.errors import Aborted
from blissng.redisdb import RedisUrls, async_client
from blissng.scans import (
    ascan,
    ct,
    read_scan_data,
    triggerscan,
)
from blissng.sim import SimHost, standard_spec, start_sim_host
from blissng.testing import redis_scan_context
from test_scans import make_devices

pytestmark = pytest.mark.anyio

SIM_CONFIG = """
- name: trigger
  class: SimTriggerBox
  url: sim://trigger
- name: mca
  class: SimMca
  url: sim://mca
  nbins: 1024
- name: camera
  class: SimCamera
  url: sim://camera
- name: scaler
  class: SimTcpScaler
  url: sim://scaler
  counters:
    - name: det
- name: motors
  class: SimSerialMotorController
  url: sim://motors
  axes:
    - name: m1
      channel: 1
      steps_per_unit: 1000
      velocity: 100
      acceleration: 10000
"""


@pytest.fixture(scope="module")
def sim_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHost]:
    with start_sim_host(standard_spec(tmp_path_factory.mktemp("sim"))) as host:
        register_simulators(host.urls)
        try:
            yield host
        finally:
            unregister_simulators(list(host.urls))


@pytest.fixture
async def ctx(redis_urls: RedisUrls, tmp_path: Path) -> Any:
    async with redis_scan_context(
        redis_urls, tmp_path / "data", session="s1", collection="lyso"
    ) as context:
        yield context


async def test_scan_is_published_and_read_back_like_any_client(ctx, redis_urls) -> None:
    dev = make_devices()
    scan = await ascan(dev.m1, 0, 4, 8, 0, dev.sim)
    assert scan.state == "done" and scan.scan_id
    async with DataStore(async_client(redis_urls.data)) as store:
        view = await store.get_scan(scan.scan_id)
        info = view.info
        assert view.state == "closed" and view.end_reason == "success"
        assert info["path"] == ctx.scan_saving.filename == scan.path
        assert info["path"].endswith("lyso/lyso_0001/lyso_0001.h5")
        assert info["number"] == scan.number and info["npoints"] == 9
        assert info["metadata"]["entry"] == f"{scan.number}.1"
        assert info["motors"] == [
            {"name": "m1", "start": 0.0, "stop": 4.0, "unit": None, "channel": "axis:m1"}
        ]
        # Each channel says whose values it holds and the name users know it by.
        roles = {name: (ch["role"], ch["label"]) for name, ch in info["channels"].items()}
        assert roles == {"axis:m1": ("axis", "m1"), "timer:elapsed_time": ("time", "elapsed_time"),
                         "timer:epoch": ("time", "epoch"), "sim:diode": ("counter", "diode"),
                         "sim:diode2": ("counter", "diode2")}  # fmt: skip
    # What another session sees equals what this one reads.
    mine = await scan.get_data()
    theirs = await read_scan_data(redis_urls.data, scan.scan_id)
    assert set(mine) == set(theirs) == {"axis:m1", "timer:elapsed_time", "timer:epoch",
                                        "sim:diode", "sim:diode2"}  # fmt: skip
    for name in mine:
        np.testing.assert_array_equal(mine[name], theirs[name])
    np.testing.assert_allclose(mine["axis:m1"], np.linspace(0, 4, 9))
    # The live display followed the scan through Redis: every point is printed.
    text = ctx.output.getvalue()
    assert "Finished: 9/9" in text
    assert [line.split()[0] for line in text.splitlines() if line[:6].strip().isdigit()] == [
        str(i) for i in range(9)
    ]


async def test_ct_is_published_unsaved(ctx, redis_urls) -> None:
    dev = make_devices()
    scan = await ct(0.01, dev.sim)
    async with DataStore(async_client(redis_urls.data)) as store:
        view = await store.get_scan(scan.scan_id)
        assert view.info["save"] is False and view.info["path"] is None
    assert len(await scan.get_data("diode")) == 1


async def test_cancelled_scan_is_marked_aborted_in_redis(ctx, redis_urls) -> None:
    dev = make_devices()
    scan = await ascan(dev.m1, 0, 1000, 1000, 0.01, dev.sim, run=False)
    two = anyio.Event()
    scan.control.add_point_callback(lambda i, _: two.set() if i >= 1 else None)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scan.run)
            await two.wait()
            scope.cancel()
    assert scan.state == "aborted"
    async with DataStore(async_client(redis_urls.data)) as store:
        view = await store.get_scan(scan.scan_id)
        assert view.state == "closed" and view.end_reason == "aborted"
    positions = await scan.get_data("m1")
    assert 2 <= len(positions) < 1000
    # scan.abort() (a GUI's stop button) ends it the same way.
    scan = await ascan(dev.m1, 0, 1000, 1000, 0.01, dev.sim, run=False)
    scan.control.add_point_callback(lambda i, _: scan.abort() if i >= 1 else None)
    with pytest.raises(Aborted):
        await scan.run()
    async with DataStore(async_client(redis_urls.data)) as store:
        view = await store.get_scan(scan.scan_id)
        assert view.end_reason == "aborted" and scan.state == "aborted"


@pytest.mark.timeout(60)
async def test_trigger_box_drives_mca_and_camera(ctx, sim_host, write_config, config_dir) -> None:
    write_config("sim.yml", SIM_CONFIG)
    config = Config(config_dir)
    trigger, mca, camera, scaler = (config.get(n) for n in ("trigger", "mca", "camera", "scaler"))
    await sim_host.reset()
    pulses = 8
    # A period far above the count time: the simulator process shares 2 loaded cores and a
    # detector still busy when a pulse comes misses it (that is what real ones do too).
    scan = await triggerscan(trigger, pulses, 0.3, mca, camera, scaler, count_time=0.01)
    assert scan.state == "done"
    data = await scan.get_data()
    assert data["mca:spectrum"].shape == (pulses, 1024)
    assert data["scaler:det"].shape == (pulses,)
    frames = data["camera:image"]
    assert len(frames) == pulses
    assert (await sim_host.stats("trigger"))["count"] == pulses
    for name in ("mca", "camera", "scaler"):
        stats = await sim_host.stats(name)
        assert stats["acquired"] == pulses and stats["missed"] == 0
    # The references point at frames the camera saved.
    first = frames[0]
    path = first["file"].decode()

    def read_frame() -> Any:
        with h5py.File(path, "r") as f:
            return f[first["dataset"].decode()][int(first["index"])]

    frame = await anyio.to_thread.run_sync(read_frame)
    assert frame.ndim == 2


@pytest.mark.timeout(60)
async def test_ascan_over_the_real_transports(ctx, sim_host, write_config, config_dir) -> None:
    write_config("sim.yml", SIM_CONFIG)
    config = Config(config_dir)
    m1, scaler = config.get("m1"), config.get("scaler")
    await sim_host.reset()
    await m1.connect()
    scan = await ascan(m1, -1, 1, 8, 0.01, scaler)
    data = await scan.get_data()
    np.testing.assert_allclose(data["axis:m1"], np.linspace(-1, 1, 9), atol=1e-3)
    assert len(data["scaler:det"]) == 9
    assert abs(await scan.peak("det")) <= 0.25  # the simulated peak is at m1 = 0
    assert m1.position == pytest.approx(1.0, abs=1e-3)


async def test_a_full_data_redis_refuses_new_scans_with_its_message(ctx, redis_urls) -> None:
    from blissng.data import DataMemoryFull, keys

    dev = make_devices()
    client = async_client(redis_urls.data)
    try:
        message = "Redis holds 900 MB of unwritten scans: start the writer"
        await client.hset(keys.MEMORY_STATUS, mapping={"state": "full", "message": message})
        with pytest.raises(DataMemoryFull, match="start the writer"):
            await ascan(dev.m1, 0, 1, 1, 0, dev.sim)
        assert ctx.get_last_scan() is None  # refused before it got a number
        await client.hset(keys.MEMORY_STATUS, mapping={"state": "ok", "message": ""})
        assert (await ascan(dev.m1, 0, 1, 1, 0, dev.sim)).number == 1
    finally:
        await client.aclose()


async def test_another_session_displays_a_scan_live(ctx, redis_urls) -> None:
    from blissng.scans import follow_scan

    dev = make_devices()
    scan = await ascan(dev.m1, 0, 1, 30, 0.002, dev.sim, run=False, display=False)
    seen = io.StringIO()
    async with DataStore(async_client(redis_urls.data)) as store:

        async def watch() -> None:
            async for view in store.follow("s1"):  # discovers the scan as it starts
                await follow_scan(view, seen)
                return

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.sleep(0.05)  # let the follower block on the new-scans stream
            await scan.run()
    text = seen.getvalue()
    assert "ascan m1 0 1 30 0.002" in text and "Finished: 31/31" in text
    assert ctx.output.getvalue() == ""  # display=False: this session printed nothing
