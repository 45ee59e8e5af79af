"""The acquisition chain with the real simulated instruments: the trigger box driving the MCA
and the camera (hardware triggering), a step scan over the pty motor controller and the TCP
scaler, a pause condition repeating a point, an abort, a device that stops answering.

The devices are the devices engineer's controllers, built from YAML like a beamline's; the
simulators are the real server processes (fixture ``sims``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from blissng.acquisition import (
    AcquirableSlave,
    AcquisitionChain,
    AcquisitionError,
    HardwareTriggerMaster,
    MotorStepMaster,
    PauseCondition,
    ScanControl,
    ScanState,
    SoftwareTimerMaster,
    TriggerType,
)
from blissng.comm import register_simulators, unregister_simulators
from blissng.config import Config
from blissng.errors import Aborted
from blissng.sim import SimHost
from blissng.testing import subscribe

pytestmark = pytest.mark.anyio

CONFIG = """
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
  timeout: 0.5
  counters:
    - name: mon
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


@pytest.fixture
def devices(sims: SimHost, config_dir: Path) -> Iterator[Config]:
    register_simulators(sims.urls)
    (config_dir / "sim.yml").write_text(CONFIG.lstrip())
    try:
        yield Config(config_dir)
    finally:
        unregister_simulators(list(sims.urls))


async def close(*objects: Any) -> None:
    with anyio.CancelScope(shield=True):
        for obj in objects:
            closer = getattr(obj, "close", None)
            if closer is not None:
                result = closer()
                if hasattr(result, "__await__"):
                    await result


@pytest.mark.timeout(60)
async def test_trigger_box_drives_mca_and_camera_frames_equal_pulses(
    devices: Config, sims: SimHost
) -> None:
    trigger, mca, camera = (devices.get(n) for n in ("trigger", "mca", "camera"))
    pulses = 15
    master = HardwareTriggerMaster(trigger, pulses, 0.1, width=0.01, count_time=0.01)
    chain = AcquisitionChain()
    chain.add(master, AcquirableSlave(mca, trigger_type=TriggerType.HARDWARE))
    chain.add(master, AcquirableSlave(camera, trigger_type=TriggerType.HARDWARE))
    sink = subscribe(chain)
    with anyio.fail_after(30):
        await chain.run()
    assert sink.indices("mca:spectrum") == list(range(pulses))
    assert sink.values("mca:spectrum").shape == (pulses, 1024)
    assert sink.indices("camera:image") == list(range(pulses))
    assert sink.values("camera:image")["index"].tolist() == list(range(pulses))
    assert (await sims.stats("trigger"))["count"] == pulses
    for name in ("mca", "camera"):
        stats = await sims.stats(name)
        assert stats["acquired"] == pulses and stats["missed"] == 0, stats


@pytest.mark.timeout(60)
async def test_step_scan_over_the_pty_motor_and_the_tcp_scaler(
    devices: Config, sims: SimHost
) -> None:
    m1, scaler = devices.get("m1"), devices.get("scaler")
    await m1.connect()
    positions = np.linspace(-0.2, 0.2, 5)
    chain = AcquisitionChain()
    motor = MotorStepMaster([(m1, positions)])
    timer = SoftwareTimerMaster(0.01, len(positions))
    chain.add(motor, timer)
    chain.add(timer, AcquirableSlave(scaler))
    sink = subscribe(chain)
    await chain.run()
    np.testing.assert_allclose(sink.values("axis:m1"), positions, atol=1e-3)
    assert sink.indices("scaler:det") == list(range(5))
    mon = sink.values("scaler:mon")
    assert np.all(mon > 0)  # 1e5 counts/s for 10 ms: about 1000 counts each
    det = sink.values("scaler:det")
    assert det[2] == det.max()  # the simulated peak is at m1 = 0


@pytest.mark.timeout(60)
async def test_pause_condition_repeats_a_point_with_real_devices(
    devices: Config, sims: SimHost
) -> None:
    m1, scaler = devices.get("m1"), devices.get("scaler")
    await m1.connect()
    beam = {"current": 200.0, "points_seen": 0, "losses": 0}
    control = ScanControl(
        pause_conditions=[
            PauseCondition.below("beam", lambda: beam["current"], 100.0, poll_interval=0.01)
        ]
    )

    def on_point(index: int, values: Any) -> None:
        beam["points_seen"] = index + 1

    control.add_point_callback(on_point)
    chain = AcquisitionChain()
    motor = MotorStepMaster([(m1, np.linspace(0, 0.05, 6))])
    timer = SoftwareTimerMaster(0.01, 6)
    slave = AcquirableSlave(scaler)
    chain.add(motor, timer)
    chain.add(timer, slave)
    sink = subscribe(chain)
    original_trigger = scaler.trigger

    async def trigger_losing_beam() -> None:
        await original_trigger()
        if beam["points_seen"] == 3 and not beam["losses"]:
            beam["losses"] += 1
            beam["current"] = 0.0  # the beam is lost during point 3 (once)

    scaler.trigger = trigger_losing_beam
    async with anyio.create_task_group() as tg:
        tg.start_soon(chain.run, control)
        with anyio.fail_after(20):
            await control.wait_paused()
        assert control.pause_reason == "beam" and control.point_index == 3
        beam["current"] = 150.0
    assert control.state is ScanState.DONE and control.repeated_points == 1
    for name in ("axis:m1", "scaler:det", "timer:elapsed_time"):
        assert sink.indices(name) == list(range(6)), name
    assert sink.ended["scaler:det"] == 6


@pytest.mark.timeout(60)
async def test_abort_of_a_counting_scan_stops_the_scaler_within_100_ms(
    devices: Config, sims: SimHost
) -> None:
    scaler = devices.get("scaler")
    chain = AcquisitionChain()
    timer = SoftwareTimerMaster(2.0, npoints=5)
    chain.add(timer, AcquirableSlave(scaler))
    sink = subscribe(chain)
    control = ScanControl()
    counting = anyio.Event()
    original_trigger = scaler.trigger

    async def trigger() -> None:
        await original_trigger()
        counting.set()

    scaler.trigger = trigger
    elapsed = 0.0
    aborted = False
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            nonlocal aborted, elapsed
            try:
                await chain.run(control)
            except Aborted:
                aborted = True
            elapsed = time.perf_counter() - t0

        tg.start_soon(run)
        with anyio.fail_after(10):
            await counting.wait()
        t0 = time.perf_counter()
        control.abort()
    assert aborted and control.state is ScanState.ABORTED
    assert elapsed < 0.5  # target 100 ms; margin for a loaded machine
    assert (await sims.stats("scaler"))["status"] == "IDLE"  # the count was stopped
    assert sink.ended["scaler:det"] == 0


@pytest.mark.timeout(60)
async def test_a_silent_scaler_fails_the_scan_naming_it(devices: Config, sims: SimHost) -> None:
    scaler = devices.get("scaler")
    await scaler.connect()
    chain = AcquisitionChain(stop_timeout=2.0)
    timer = SoftwareTimerMaster(0.01, npoints=3)
    chain.add(timer, AcquirableSlave(scaler))
    await sims.fault("scaler", "silent")
    with anyio.fail_after(20), pytest.raises(AcquisitionError) as info:
        await chain.run()
    assert info.value.device == "scaler"
    assert info.value.phase == "prepare"
    assert "CommTimeout" in str(info.value) and "scaler" in str(info.value)
