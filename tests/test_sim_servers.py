"""The simulated instruments behave like instruments (through the real pty and TCP transports)."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import anyio.to_thread
import h5py
import numpy as np
import pytest

from blissng.comm import Connection, connection_from_url
from blissng.sim import (
    GoodDeviceSpec,
    HostSpec,
    ScalerSpec,
    SimControlError,
    SimHost,
    open_demo_simulators,
    open_sim_host,
    start_sim_host,
)

pytestmark = pytest.mark.anyio


def connect(sims: SimHost, name: str, timeout: float = 2.0) -> Connection:
    return connection_from_url(sims.url(name), name=name, timeout=timeout)


async def wait_reply(conn: Connection, command: str, wanted: str, timeout: float = 10.0) -> float:
    """Poll a status until it reads ``wanted``; returns the time it took."""
    start = time.monotonic()
    with anyio.fail_after(timeout):
        while await conn.write_readline(command) != wanted:
            await anyio.sleep(0.005)
    return time.monotonic() - start


# -- motor controller ------------------------------------------------------------------------


async def test_motion_takes_the_time_of_its_trapezoidal_profile(sims: SimHost) -> None:
    async with connect(sims, "motors") as motors:
        # 2000 steps/s, 20000 steps/s2: 0.1 s ramps (100 steps each) + 800 steps at 2000/s.
        assert await motors.write_readline("MOV 1 1000") == "OK"
        assert await motors.write_readline("?STA 1") == "MOVING"
        mid = int(await motors.write_readline("?POS 1"))
        assert 0 <= mid < 1000
        took = await wait_reply(motors, "?STA 1", "READY")
        assert 0.45 <= took < 0.6 * 5
        assert await motors.write_readline("?POS 1") == "1000"
        assert await motors.write_readline("?ENC 1") == "1000"


async def test_group_move_starts_together_and_a_bad_axis_refuses_the_whole_request(
    sims: SimHost,
) -> None:
    async with connect(sims, "motors") as motors:
        assert (await motors.write_readline("MOV 1 200 9 100")).startswith("ERR 3 unknown axis 9")
        assert await motors.write_readline("?STA") == " ".join(["READY"] * 6)
        assert await motors.write_readline("MOV 1 200 2 -200") == "OK"
        assert (await motors.write_readline("?STA")).split()[:2] == ["MOVING", "MOVING"]
        assert (await motors.write_readline("MOV 1 5")).startswith("ERR 4")
        await wait_reply(motors, "?STA", " ".join(["READY"] * 6))
        assert (await motors.write_readline("?POS")).split()[:2] == ["200", "-200"]


async def test_limit_switch_stops_the_motion_and_refuses_moves_beyond(sims: SimHost) -> None:
    await sims.call("motors", "configure_axis", axis=1, high_limit=300)
    async with connect(sims, "motors") as motors:
        assert await motors.write_readline("MOV 1 1000") == "OK"
        await wait_reply(motors, "?STA 1", "LIMPOS")
        assert await motors.write_readline("?POS 1") == "300"
        assert (await motors.write_readline("MVR 1 10")).startswith("ERR 5")
        assert await motors.write_readline("MOV 1 100") == "OK"
        await wait_reply(motors, "?STA 1", "READY")
        assert await motors.write_readline("?LIM 1") == "-1e+06 300"


async def test_encoder_slip_makes_the_encoder_disagree(sims: SimHost) -> None:
    await sims.call("motors", "configure_axis", axis=2, slip=0.1)
    async with connect(sims, "motors") as motors:
        await motors.write_readline("MOV 2 1000")
        await wait_reply(motors, "?STA 2", "READY")
        assert await motors.write_readline("?POS 2") == "1000"
        assert await motors.write_readline("?ENC 2") == "900"
        assert await motors.write_readline("ENC 2 1000") == "OK"
        assert await motors.write_readline("?ENC 2") == "1000"


async def test_stop_home_power_and_fault(sims: SimHost) -> None:
    async with connect(sims, "motors") as motors:
        await motors.write_readline("MOV 3 100000")
        with anyio.fail_after(5):  # under way at full speed, then stop
            while int(await motors.write_readline("?POS 3")) < 300:
                await anyio.sleep(0.005)
        await motors.write_readline("STP 3")
        await wait_reply(motors, "?STA 3", "READY", timeout=2)
        assert 0 < int(await motors.write_readline("?POS 3")) < 100000
        await sims.call("motors", "configure_axis", axis=4, position=3000, home_position=200)
        assert await motors.write_readline("HOME 4") == "OK"
        assert await motors.write_readline("?STA 4") == "HOMING"
        await wait_reply(motors, "?STA 4", "READY")
        assert await motors.write_readline("?POS 4") == "0"
        assert await motors.write_readline("OFF 5") == "OK"
        assert await motors.write_readline("?STA 5") == "DISABLED"
        assert (await motors.write_readline("MOV 5 10")).startswith("ERR 6")
        await sims.call("motors", "axis_fault", axis=6)
        assert await motors.write_readline("?STA 6") == "FAULT"
        assert (await motors.write_readline("MOV 6 10")).startswith("ERR 7")
        assert await motors.write_readline("RST 6") == "OK"
        assert await motors.write_readline("?STA 6") == "READY"


async def test_motor_errors_are_clear_replies(sims: SimHost) -> None:
    async with connect(sims, "motors") as motors:
        assert await motors.write_readline("VEL 1 -5") == "ERR 8 velocity must be > 0, got -5"
        assert await motors.write_readline("?POS x") == "ERR 2 axis 'x' is not a number"
        assert await motors.write_readline("MOV 1") == "ERR 2 expected <axis> <steps> pairs"
        assert await motors.write_readline("JUMP 1") == "ERR 1 unknown command 'JUMP'"
        assert await motors.write_readline("VEL 1 500") == "OK"
        assert await motors.write_readline("?VEL 1") == "500"
    with pytest.raises(SimControlError, match="unknown axis field 'speed'"):
        await sims.call("motors", "configure_axis", axis=1, speed=3)
    with pytest.raises(SimControlError, match="no simulator 'nope'"):
        await sims.call("nope", "stats")


# -- scaler, trigger box, MCA, camera --------------------------------------------------------


async def read_scaler(scaler: Connection, nchan: int = 4, limit: int = 1000) -> np.ndarray:
    values = (await scaler.write_readline(f"READ {limit}")).split()
    n = int(values[0])
    return np.array(values[1:], dtype=np.int64).reshape(n, nchan)


async def test_scaler_counts_a_peak_that_depends_on_the_motor_position(sims: SimHost) -> None:
    await sims.call("scaler", "configure_channel", channel="det", center=1000, width=200, noise=0)
    async with connect(sims, "scaler") as scaler, connect(sims, "motors") as motors:
        counts = {}
        for position in (0, 1000):
            await motors.write_readline(f"MOV 1 {position}")
            await wait_reply(motors, "?STA 1", "READY")
            assert await scaler.write_readline("PREP 1 0.05 INT") == "OK"
            assert await scaler.write_readline("START") == "OK"
            await wait_reply(scaler, "?STA", "IDLE")
            (timer, _mon, det, _diode), *_ = await read_scaler(scaler)
            assert timer == 50000  # 1 MHz clock for 0.05 s
            counts[position] = det
        # background 10 cps, height 1e4 cps, 0.05 s; 5 widths off-peak: background only.
        assert counts[1000] == pytest.approx((10 + 1e4) * 0.05, abs=1)
        assert counts[0] == pytest.approx(10 * 0.05 + 1e4 * 0.05 * np.exp(-0.5 * 25), abs=1)
        rates = [float(v) for v in (await scaler.write_readline("?RATE")).split()]
        assert rates[0] == 1e6 and rates[2] == pytest.approx(10 + 1e4)


async def test_software_triggered_points(sims: SimHost) -> None:
    async with connect(sims, "scaler") as scaler:
        assert await scaler.write_readline("PREP 2 0.4 SOFT") == "OK"
        assert (await scaler.write_readline("TRIG")).startswith("ERR 10")
        assert await scaler.write_readline("START") == "OK"
        assert await scaler.write_readline("?STA") == "ARMED"
        for point in (1, 2):
            assert await scaler.write_readline("TRIG") == "OK"
            assert (await scaler.write_readline("TRIG")).startswith("ERR 10")  # busy for 0.4 s
            await wait_reply(scaler, "?NPT", str(point))
        await wait_reply(scaler, "?STA", "IDLE")
        assert (await read_scaler(scaler))[:, 0].tolist() == [400000, 400000]


async def test_trigger_box_pulses_reach_scaler_mca_and_camera(
    sims: SimHost, tmp_path: Path
) -> None:
    async with (
        connect(sims, "trigger") as trigger,
        connect(sims, "scaler") as scaler,
        connect(sims, "mca") as mca,
        connect(sims, "camera") as camera,
    ):
        assert await camera.write_readline(f"SAVE {tmp_path} frames") == "OK"
        for detector in (scaler, mca, camera):
            assert await detector.write_readline("PREP 5 0.01 EXT") == "OK"
            assert await detector.write_readline("START") == "OK"
        assert await trigger.write_readline("?OUT") == "scaler:ON mca:ON camera:ON"
        assert await trigger.write_readline("PULSES 5 0.15 0.01") == "OK"
        assert await trigger.write_readline("START") == "OK"
        await wait_reply(trigger, "?STA", "IDLE")
        assert await trigger.write_readline("?CNT") == "5"
        for detector in (scaler, mca, camera):
            await wait_reply(detector, "?STA", "IDLE")
            assert await detector.write_readline("?NPT") == "5"
            assert await detector.write_readline("?MISS") == "0"
        assert (await read_scaler(scaler))[:, 0].tolist() == [10000] * 5

        async with mca.locked():
            header = (await mca.write_readline("READ 100")).split()
            assert header == ["DATA", "5", "1024", "u4"]
            spectra = np.frombuffer(await mca.read(5 * 1024 * 4), "<u4").reshape(5, 1024)
        assert spectra[:, 350].mean() > 10 * spectra[:, 50].mean()  # a line at bin 350

        n, first, dataset, file = (await camera.write_readline("READ 100")).split(" ", 3)
        assert (n, first, dataset) == ("5", "0", "/entry/data/data")
        assert file == str(tmp_path / "frames_0001.h5")
        assert await camera.write_readline("READ 100") == f"0 5 /entry/data/data {file}"

        def frames() -> np.ndarray:
            with h5py.File(file, "r") as h5:
                return h5[dataset][()]

        data = await anyio.to_thread.run_sync(frames)
        assert data.shape == (5, 96, 128) and data.dtype == np.uint16
        assert data[:, 48, 64].min() > data[:, 5, 5].max()  # the spot is in the middle


async def test_pulses_to_a_disabled_output_or_a_busy_detector_are_missed(sims: SimHost) -> None:
    async with connect(sims, "trigger") as trigger, connect(sims, "scaler") as scaler:
        assert await trigger.write_readline("OUT mca OFF") == "OK"
        assert (await trigger.write_readline("OUT xyz OFF")).startswith("ERR 3")
        assert await scaler.write_readline("PREP 0 0.3 EXT") == "OK"
        assert await scaler.write_readline("START") == "OK"
        # Pulses at 0, 0.2, 0.4, 0.6 s, each point counts 0.3 s: the 2nd and 4th find it busy.
        await trigger.write_readline("PULSES 4 0.2 0.01")
        await trigger.write_readline("START")
        await wait_reply(trigger, "?STA", "IDLE")
        await wait_reply(scaler, "?STA", "ARMED")
        assert await scaler.write_readline("?NPT") == "2"
        assert await scaler.write_readline("?MISS") == "2"
        assert await scaler.write_readline("STOP") == "OK"
        assert await scaler.write_readline("?STA") == "IDLE"


# -- the trigger box follows the motors (continuous scans) --------------------------------------


async def read_latched(trigger: Connection) -> np.ndarray:
    """The trigger box's latched values: per pulse, its time and the latched encoders."""
    async with trigger.locked():
        _, n, columns, dtype = (await trigger.write_readline("READ 100000")).split()
        assert dtype == "f8"
        payload = await trigger.read(int(n) * int(columns) * 8)
    return np.frombuffer(payload, "<f8").reshape(int(n), int(columns))


async def test_position_pulses_fire_where_the_encoder_passes_the_grid(sims: SimHost) -> None:
    async with connect(sims, "trigger") as trigger, connect(sims, "motors") as motors:
        assert await trigger.write_readline("?INP") == "6"
        assert await trigger.write_readline("LATCH 1 2") == "OK"
        # 50 pulses every 20 counts from 1000, on input 1 (axis 1: 2000 steps/s, ramps of
        # 100 steps): the motion starts at 0, so every position is passed at full speed
        assert await trigger.write_readline("PPULSES 50 1 1000 20 0.001") == "OK"
        assert await trigger.write_readline("START") == "OK"
        assert await trigger.write_readline("?STA") == "ARMED"
        assert await motors.write_readline("MOV 1 2500") == "OK"
        await wait_reply(trigger, "?STA", "IDLE")
        assert await trigger.write_readline("?CNT") == "50"
        latched = await read_latched(trigger)
    assert latched.shape == (50, 3)
    np.testing.assert_array_equal(latched[:, 1], 1000 + 20 * np.arange(50))
    assert set(latched[:, 2]) == {0.0}  # axis 2 did not move
    # 20 counts at 2000 counts/s: a pulse every 10 ms (on the box's clock, not the host's
    # wake-ups: exact whatever the load)
    np.testing.assert_allclose(np.diff(latched[:, 0]), 0.01, atol=1e-9)


async def test_a_time_train_starts_when_the_encoder_passes_the_start(sims: SimHost) -> None:
    await sims.call("motors", "configure_axis", axis=2, slip=0.1)  # latched = the encoder
    async with connect(sims, "trigger") as trigger, connect(sims, "motors") as motors:
        assert await trigger.write_readline("LATCH 2") == "OK"
        # input 2 counts 0.9 per step: 1800 counts/s at full speed
        assert await trigger.write_readline("PULSES 40 0.002 0.001 2 -900") == "OK"
        assert await trigger.write_readline("START") == "OK"
        assert await motors.write_readline("MOV 2 -2000") == "OK"
        await wait_reply(trigger, "?STA", "IDLE")
        latched = await read_latched(trigger)
    # the first pulse where the encoder passes -900, then one every 2 ms = 3.6 counts
    np.testing.assert_allclose(latched[:, 1], np.rint(-900 - 3.6 * np.arange(40)), atol=1)
    np.testing.assert_allclose(np.diff(latched[:, 0]), 0.002, atol=1e-9)


async def test_a_start_exactly_where_the_ramp_ends_is_passed(sims: SimHost) -> None:
    """1000 steps/s reached after exactly 1 step: the start position is where one phase of the
    motion ends and the next begins (once lost between the two)."""
    async with connect(sims, "trigger") as trigger, connect(sims, "motors") as motors:
        for command in ("VEL 1 1000", "ACC 1 500000", "MOV 1 -1"):
            assert await motors.write_readline(command) == "OK"
        await wait_reply(motors, "?STA 1", "READY")
        assert await trigger.write_readline("PULSES 100 0.0001 0.00005 1 0") == "OK"
        assert await trigger.write_readline("START") == "OK"
        assert await motors.write_readline("MOV 1 30") == "OK"
        await wait_reply(trigger, "?STA", "IDLE")
        assert await trigger.write_readline("?CNT") == "100"


async def test_detectors_count_a_10_khz_train_in_batches_and_miss_nothing(sims: SimHost) -> None:
    async with (
        connect(sims, "trigger") as trigger,
        connect(sims, "scaler") as scaler,
        connect(sims, "mca") as mca,
    ):
        for detector in (scaler, mca):  # exposure = period: no dead time at all
            assert await detector.write_readline("PREP 2000 0.0001 EXT") == "OK"
            assert await detector.write_readline("START") == "OK"
        assert await trigger.write_readline("PULSES 2000 0.0001 0.00005") == "OK"
        assert await trigger.write_readline("START") == "OK"
        for detector in (scaler, mca):
            await wait_reply(detector, "?STA", "IDLE")
            assert await detector.write_readline("?NPT") == "2000"
            assert await detector.write_readline("?MISS") == "0"
        timer = (await read_scaler(scaler, limit=5000))[:, 0]
        assert timer.tolist() == [100] * 2000  # 100 us at 1 MHz
        async with mca.locked():
            assert (await mca.write_readline("READ 5000")).split() == ["DATA", "2000", "1024", "u4"]
            spectra = np.frombuffer(await mca.read(2000 * 1024 * 4), "<u4").reshape(2000, 1024)
    # 5e3 counts/s at bin 350 for 100 us: 0.5 counts per spectrum on average
    assert spectra[:, 350].mean() == pytest.approx(0.5, rel=0.2)


async def test_stopping_the_motor_stops_position_pulses(sims: SimHost) -> None:
    async with connect(sims, "trigger") as trigger, connect(sims, "motors") as motors:
        assert await trigger.write_readline("PPULSES 1000 3 100 10 0.001") == "OK"
        assert await trigger.write_readline("START") == "OK"
        assert await motors.write_readline("MOV 3 20000") == "OK"
        with anyio.fail_after(5):
            while int(await trigger.write_readline("?CNT")) < 20:
                await anyio.sleep(0.005)
        assert await motors.write_readline("STP 3") == "OK"
        await wait_reply(motors, "?STA 3", "READY")
        stopped_at = (await sims.stats("motors"))["axes"]["3"]["encoder"]  # not rounded
        count = int(await trigger.write_readline("?CNT"))
        assert count == (stopped_at - 100) // 10 + 1 < 1000  # the positions passed, no more
        assert await trigger.write_readline("?STA") == "RUNNING"  # waits for the rest
        assert await trigger.write_readline("STOP") == "OK"
        assert await trigger.write_readline("?STA") == "IDLE"


async def test_trigger_box_refuses_bad_trains_clearly(sims: SimHost) -> None:
    async with connect(sims, "trigger") as trigger:
        assert (await trigger.write_readline("PPULSES 10 9 0 1 0.001")).startswith(
            "ERR 3 unknown input 9 (inputs are 1..6)"
        )
        assert (await trigger.write_readline("PPULSES 10 1 0 0 0.001")).startswith("ERR 8")
        assert (await trigger.write_readline("PULSES 10 0.01 0.001 1")).startswith("ERR 2")
        assert (await trigger.write_readline("START")).startswith("ERR 10 START before")
        assert await trigger.write_readline("PPULSES 10 1 100 1 0.001") == "OK"
        assert await trigger.write_readline("START") == "OK"
        assert (await trigger.write_readline("LATCH 1")).startswith("ERR 10")


async def test_good_device_returns_many_points_per_request_in_order(sims: SimHost) -> None:
    async with connect(sims, "good") as good:
        assert await good.write_readline("START 200000") == "OK"
        received: list[np.ndarray] = []
        while sum(len(r) for r in received) < 50000:
            with anyio.fail_after(5):  # let the device's buffer fill up
                while int(await good.write_readline("?NPT")) < 8192:
                    await anyio.sleep(0.005)
            async with good.locked():
                n = int((await good.write_readline("READ 8192")).split()[1])
                received.append(np.frombuffer(await good.read(n * 8), "<f8"))
        values = np.concatenate(received)
        assert np.array_equal(values, np.arange(len(values), dtype=float))
        assert {len(r) for r in received} == {8192}  # buffered: full blocks per request
        assert await good.write_readline("?OVR") == "0"


async def test_reset_restores_every_simulator(sims: SimHost) -> None:
    await sims.call("motors", "configure_axis", axis=1, position=42)
    await sims.fault("scaler", "silent")
    async with connect(sims, "motors") as motors:
        assert await motors.write_readline("?POS 1") == "42"
    await sims.reset()
    async with connect(sims, "motors") as motors, connect(sims, "scaler") as scaler:
        assert await motors.write_readline("?POS 1") == "0"
        assert await scaler.write_readline("*IDN?") == "SIMSCALER 4 1.0"


async def test_a_private_host_with_a_single_client_scaler(tmp_path: Path) -> None:
    spec = HostSpec(directory=tmp_path, simulators={"box": ScalerSpec(motors=None, max_clients=1)})
    async with open_sim_host(spec) as host:
        first = connection_from_url(host.url("box"), name="box")
        second = connection_from_url(host.url("box"), name="box2")
        async with first, second:
            assert await first.write_readline("*IDN?") == "SIMSCALER 4 1.0"
            assert await second.readline() == "ERR 9 busy: another client is connected"
        assert (await host.stats("box"))["refused"] == 1
    assert not host.alive


async def test_demo_simulators_start_in_two_processes_and_answer(tmp_path: Path) -> None:
    async with open_demo_simulators(tmp_path) as demo:
        urls = demo.urls
        assert set(urls) == {"motors", "scaler", "trigger", "mca", "camera", "good", "bad"}
        assert urls["motors"].startswith("serial://") and urls["bad"].startswith("unix://")
        assert demo.host_of("bad") is demo.bad and demo.bad.pid != demo.main.pid
        for name, url in urls.items():
            async with connection_from_url(url, name=name) as conn:
                assert (await conn.write_readline("*IDN?")).startswith("SIM")
    assert not demo.main.alive and not demo.bad.alive


def test_a_sim_host_exits_when_its_parent_goes_away(tmp_path: Path) -> None:
    with start_sim_host(HostSpec(directory=tmp_path, simulators={"g": GoodDeviceSpec()})) as host:
        assert host.call_sync(None, "ping") == "pong"
        assert host.process.stdin is not None
        host.process.stdin.close()  # what the kernel does when the parent dies
        assert host.process.wait(timeout=10) == 0
        assert not (tmp_path / "control.sock").exists()
