"""Continuous scans (fscan, f2scan, fscan2d, ftimescan) over the simulator processes: the
motor controller on its pty, the trigger box following its motions, the scaler and the MCA
acquiring on each pulse; published into the test Redis and read back like any client.

What is checked: the latched positions match the requested grid within one encoder count;
points = pulses in every channel; zig-zag order; velocity and limit errors before anything
moves; missed pulses reported; Ctrl-C stops the pulses and the motor; pause between lines
(fscan2d) and refused in fscan."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import h5py
import numpy as np
import pytest

from blissng.acquisition import AcquisitionError
from blissng.client import Client
from blissng.comm import register_simulators, unregister_simulators
from blissng.config import Config
from blissng.data import DataStore
from blissng.data import keys as data_keys
from blissng.redisdb import RedisUrls, SettingsStore, async_client
from blissng.scans import (
    ScanArgumentError,
    ScanError,
    close_shared_clients,
    f2scan,
    fscan,
    fscan2d,
    ftimescan,
)
from blissng.session import Server
from blissng.sim import SimHost
from blissng.testing import redis_scan_context, wait_until
from blissng.web import WebOptions, web_runner
from blissng.writer import scan_file_path

pytestmark = pytest.mark.anyio

CONFIG = """
- name: motors
  class: SimSerialMotorController
  url: sim://motors
  axes:
    - name: m1
      channel: 1
      steps_per_unit: 1000
      velocity: 20
      velocity_high_limit: 40
      acceleration: 500
      low_limit: -50
      high_limit: 50
      unit: mm
      encoder: {steps_per_unit: 1000, tolerance: 0.01}
    - name: m2
      channel: 2
      steps_per_unit: 1000
      velocity: 20
      acceleration: 500
      low_limit: -50
      high_limit: 50
- name: trigger
  class: SimTriggerBox
  url: sim://trigger
  inputs: {m1: 1, m2: 2}
- name: scaler
  class: SimTcpScaler
  url: sim://scaler
  counters:
    - name: timer
    - name: det
- name: mca
  class: SimMca
  url: sim://mca
  nbins: 1024
- name: simct
  class: SimCounterController
  counters:
    - name: diode
      motor: $m1
"""

COUNT = 0.001  # one encoder count, user units


@pytest.fixture
def devices(sims: SimHost, config_dir: Path) -> Iterator[Config]:
    register_simulators(sims.urls)
    (config_dir / "fscan.yml").write_text(CONFIG.lstrip())
    try:
        yield Config(config_dir)
    finally:
        unregister_simulators(list(sims.urls))


@pytest.fixture
async def ctx(redis_urls: RedisUrls, tmp_path: Path, devices: Config) -> Any:
    async with redis_scan_context(
        redis_urls, tmp_path / "data", session="s1", collection="fly"
    ) as context:
        objects = {name: devices.get(name) for name in ("m1", "m2", "trigger", "scaler", "mca")}
        context.objects = lambda: objects
        yield context


def grid(start: float, step: float, n: int) -> np.ndarray:
    return start + step * np.arange(n)


async def assert_points_are_pulses(sims: SimHost, data: dict[str, np.ndarray], n: int) -> None:
    assert {name: len(values) for name, values in data.items()} == dict.fromkeys(data, n)
    assert (await sims.stats("trigger"))["count"] == n
    for name in ("scaler", "mca"):
        stats = await sims.stats(name)
        assert (stats["acquired"], stats["missed"]) == (n, 0), (name, stats)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scan_mode", ["TIME", "POSITION"])
async def test_fscan_latches_the_requested_grid_one_point_per_pulse(
    ctx, sims: SimHost, devices: Config, scan_mode: str
) -> None:
    m1, scaler, mca = devices.get("m1"), devices.get("scaler"), devices.get("mca")
    # 5 mm/s (0.01 mm every 2 ms), 200 points: 0.4 s at constant velocity
    scan = await fscan(
        m1, 1.0, 0.01, 200, 0.0015, scaler, mca, latency_time=0.0005, scan_mode=scan_mode
    )
    assert scan.state == "done"
    data = await scan.get_data()
    await assert_points_are_pulses(sims, data, 200)
    np.testing.assert_allclose(data["axis:m1"], grid(1.0, 0.01, 200), atol=COUNT)
    # each pulse 2 ms after the previous one, on the trigger box's clock
    np.testing.assert_allclose(np.diff(data["trigger:elapsed_time"]), 0.002, atol=1e-6)
    assert set(data["scaler:timer"]) == {1500.0}  # 1.5 ms counted by the 1 MHz clock
    assert data["mca:spectrum"].shape == (200, 1024)
    info = scan.scan_info["fscan"]
    assert info["scan_mode"] == scan_mode and info["velocity"] == {"m1": pytest.approx(5.0)}
    # the motor ends past the last point (its run-out), at the velocity it had before
    assert m1.position > 1.0 + 0.01 * 200 and m1.velocity == 20


@pytest.mark.timeout(60)
async def test_at_10_khz_the_table_prints_a_line_a_second_not_a_line_a_point(
    ctx, sims: SimHost, devices: Config
) -> None:
    m1, scaler, mca = devices.get("m1"), devices.get("scaler"), devices.get("mca")
    scan = await fscan(m1, 0.0, 0.0001, 5000, 0.0001, scaler, mca)  # 0.5 s at 10 kHz
    data = await scan.get_data()
    await assert_points_are_pulses(sims, data, 5000)
    np.testing.assert_allclose(data["axis:m1"], grid(0.0, 0.0001, 5000), atol=COUNT)
    text = ctx.output.getvalue()
    assert "(more than 200 points/s: one line per second)" in text
    assert "Finished: 5000/5000 points" in text
    assert len(text.splitlines()) < 50, text


@pytest.mark.timeout(60)
async def test_fscan2d_zigzag_runs_every_other_line_backwards(
    ctx, sims: SimHost, devices: Config
) -> None:
    m1, m2, scaler = devices.get("m1"), devices.get("m2"), devices.get("scaler")
    scan = await fscan2d(m2, 0.0, 0.1, 3, m1, 0.0, 0.01, 20, 0.002, scaler, zigzag=True)
    data = await scan.get_data()
    await_lines = data["axis:m1"].reshape(3, 20)
    forward = grid(0.0, 0.01, 20)
    np.testing.assert_allclose(await_lines[0], forward, atol=COUNT)
    np.testing.assert_allclose(await_lines[1], forward[::-1], atol=COUNT)
    np.testing.assert_allclose(await_lines[2], forward, atol=COUNT)
    np.testing.assert_allclose(data["axis:m2"], np.repeat([0.0, 0.1, 0.2], 20), atol=COUNT)
    assert len(data["scaler:det"]) == 60
    assert scan.scan_info["mesh"] == {"shape": [3, 20], "backnforth": True}


@pytest.mark.timeout(60)
async def test_f2scan_and_ftimescan(ctx, sims: SimHost, devices: Config) -> None:
    m1, m2, scaler = devices.get("m1"), devices.get("m2"), devices.get("scaler")
    scan = await f2scan(m1, 0.0, 0.01, m2, 1.0, -0.02, 50, 0.002, scaler)
    data = await scan.get_data()
    np.testing.assert_allclose(data["axis:m1"], grid(0.0, 0.01, 50), atol=COUNT)
    # both motors pass their first points together: m2's latched grid too
    np.testing.assert_allclose(data["axis:m2"], grid(1.0, -0.02, 50), atol=2 * COUNT)
    scan = await ftimescan(0.001, 100, scaler, latency_time=0.001)
    data = await scan.get_data()
    assert len(data["scaler:det"]) == 100
    np.testing.assert_allclose(np.diff(data["trigger:elapsed_time"]), 0.002, atol=1e-6)


@pytest.mark.timeout(60)
async def test_velocity_and_limits_are_checked_before_anything_moves(
    ctx, sims: SimHost, devices: Config
) -> None:
    m1, scaler = devices.get("m1"), devices.get("scaler")
    await m1.connect()
    before = (await sims.stats("motors"))["axes"]["1"]["position"]
    with pytest.raises(ScanArgumentError, match=r"m1 would move at 100 mm/s .* limit 40 mm/s"):
        await fscan(m1, 0, 0.1, 10, 0.001, scaler)
    with pytest.raises(ScanArgumentError, match=r"m1 needs 0.11 mm before the first point") as err:
        await fscan(m1, -49.99, 0.01, 10, 0.001, scaler)
    assert "run-up from -50.1 is outside its limits [-50, 50]" in str(err.value)
    assert "nothing moved" in str(err.value)
    with pytest.raises(ScanArgumentError, match="m1 needs .* after the last point"):
        await fscan(m1, 49.0, 0.01, 100, 0.001, scaler)
    with pytest.raises(ScanArgumentError, match="less than one encoder count"):
        await fscan(m1, 0, 0.0005, 10, 0.001, scaler, scan_mode="POSITION")
    with pytest.raises(ScanArgumentError, match="scan_mode must be TIME or POSITION"):
        await fscan(m1, 0, 0.01, 10, 0.001, scaler, scan_mode="CAMERA")
    with pytest.raises(ScanArgumentError, match="cannot trigger"):
        await fscan(m1, 0, 0.01, 10, 0.001, devices.get("diode"))
    assert (await sims.stats("motors"))["axes"]["1"]["position"] == before
    assert (await sims.stats("trigger"))["count"] == 0


@pytest.mark.timeout(60)
async def test_missed_pulses_fail_the_scan_naming_the_detector(
    ctx, sims: SimHost, devices: Config
) -> None:
    # m2's encoder counts two per step while the configuration says one (its steps): the
    # positions come twice as fast as planned, every other pulse finds the detector busy.
    await sims.call("motors", "configure_axis", axis=2, encoder_ratio=2)
    m2, scaler = devices.get("m2"), devices.get("scaler")
    with pytest.raises(AcquisitionError, match=r"scaler failed in reading: missed \d+ trigger"):
        await fscan(m2, 0.0, 0.01, 100, 0.002, scaler, scan_mode="POSITION")
    stats = await sims.stats("scaler")
    assert stats["missed"] > 0


@pytest.mark.timeout(60)
async def test_positions_the_motion_never_passes_fail_the_line_clearly(
    ctx, sims: SimHost, devices: Config
) -> None:
    # m2's encoder slips: it counts half the distance, so the motion ends half-way through
    # the positions
    await sims.call("motors", "configure_axis", axis=2, slip=0.5)
    m2, scaler = devices.get("m2"), devices.get("scaler")
    with pytest.raises(
        AcquisitionError,
        match=r"emitted \d+ of the 100 pulses, .* after the "
        "motion ended: the motion did not pass every position",
    ):
        await fscan(m2, 0.0, 0.01, 100, 0.002, scaler, scan_mode="POSITION")
    assert 0 < (await sims.stats("trigger"))["count"] < 100


@pytest.mark.timeout(60)
async def test_ctrl_c_stops_the_pulses_and_the_motor_and_aborts_the_scan(
    ctx, sims: SimHost, devices: Config, redis_urls: RedisUrls
) -> None:
    m1, scaler = devices.get("m1"), devices.get("scaler")
    scan = await fscan(m1, -20.0, 0.01, 3000, 0.002, scaler, run=False)  # 6 s
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scan.run)
            with anyio.fail_after(20):
                while (await sims.stats("trigger"))["count"] < 100:
                    await anyio.sleep(0.01)
            scope.cancel()
            cancelled = time.monotonic()
    took = time.monotonic() - cancelled
    trigger = await sims.stats("trigger")
    motor = (await sims.stats("motors"))["axes"]["1"]
    assert trigger["status"] == "IDLE" and motor["state"] == "READY"
    assert 100 <= trigger["count"] < 3000 and motor["position"] < 9000  # steps
    await anyio.sleep(0.1)
    assert (await sims.stats("trigger"))["count"] == trigger["count"]  # no pulse since
    assert took < 5, took  # the stop itself is measured by benchmarks/fscan.py
    assert scan.state == "aborted"
    async with DataStore(async_client(redis_urls.data)) as store:
        view = await store.get_scan(scan.scan_id)
        assert view.end_reason == "aborted"
    assert m1.velocity == 20  # the scan velocity was not kept


@pytest.mark.timeout(60)
async def test_fscan2d_pauses_at_the_end_of_a_line_and_fscan_refuses(
    ctx, sims: SimHost, devices: Config
) -> None:
    m1, m2, scaler = devices.get("m1"), devices.get("m2"), devices.get("scaler")
    scan = await fscan(m1, 0.0, 0.01, 10, 0.002, scaler, run=False)
    with pytest.raises(ScanError, match="fscan cannot pause"):
        scan.pause()
    scan = await fscan2d(m2, 0.0, 0.1, 3, m1, 0.0, 0.01, 100, 0.002, scaler, run=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(scan.run)
        with anyio.fail_after(20):
            while (await sims.stats("trigger"))["count"] < 10:
                await anyio.sleep(0.01)
        scan.pause()  # during the first line
        with anyio.fail_after(20):
            await scan.control.wait_paused()
        assert (await sims.stats("scaler"))["acquired"] == 100  # the line was finished
        assert (await sims.stats("trigger"))["status"] == "IDLE"
        await anyio.sleep(0.2)
        assert (await sims.stats("scaler"))["acquired"] == 100  # nothing while paused
        scan.resume()
    data = await scan.get_data()
    assert len(data["scaler:det"]) == 300 and scan.state == "done"


SESSIONS = """
sessions:
  - name: fly
    workflows: false
    scan_saving: {{base_path: {base}, proposal: ihr1, collection: sample}}
"""


@pytest.mark.timeout(120)
async def test_an_fscan_typed_through_the_api_is_written_whole_by_the_writer(
    sims: SimHost, write_config, config_dir: Path, redis_urls: RedisUrls, tmp_path: Path
) -> None:
    """The user's way: a running server (its supervised writer process), the command typed
    through the API, the file read back with h5py."""
    register_simulators(sims.urls)
    write_config("fscan.yml", CONFIG)
    write_config("server.yml", SESSIONS.format(base=tmp_path / "data"))
    settings = async_client(redis_urls.settings)
    data = async_client(redis_urls.data)
    config = Config(config_dir, settings=SettingsStore(settings))
    command = "fscan(m1, 0.5, 0.002, 2000, 0.0004, scaler, mca, latency_time=0.0001)"  # 2 kHz
    try:
        async with (
            Server(
                config, redis_urls, state_dir=tmp_path / "state", web=web_runner(WebOptions(port=0))
            ) as server,
            Client.from_connection_file(server.state_dir / "web.json", name="gui") as client,
        ):
            result = await client.run("fly", command, timeout=90)
            assert result["scan"]["state"] == "done"
            scan_id, number = result["scan"]["scan_id"], result["scan"]["number"]
            await wait_until(lambda: data.hget(data_keys.ack_key(scan_id), "written"), timeout=60)
            async with DataStore(data) as store:
                document = (await store.get_scan(scan_id)).info
    finally:
        unregister_simulators(list(sims.urls))
        await settings.aclose()
        await data.aclose()
        await close_shared_clients()

    def read() -> dict[str, np.ndarray]:
        with h5py.File(scan_file_path(document), "r", locking=False) as f:
            measurement = f[f"{number}.1"]["measurement"]
            return {name: measurement[name][()] for name in measurement}

    on_disk = await anyio.to_thread.run_sync(read)
    assert {name: len(values) for name, values in on_disk.items()} == dict.fromkeys(on_disk, 2000)
    np.testing.assert_allclose(on_disk["m1"], grid(0.5, 0.002, 2000), atol=COUNT)
    assert on_disk["spectrum"].shape == (2000, 1024)
    assert set(on_disk["timer"]) == {400.0}
