"""Scaler, MCA, camera and trigger box over TCP to the simulators (sims fixture): software and
hardware triggering, frames per trigger, references to frames in files, errors."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest

from blissng.comm import CommTimeout
from blissng.devices import (
    FRAME_REFERENCE_DTYPE,
    Acquirable,
    AcquisitionParameters,
    DetectorError,
    DeviceError,
    TriggerMode,
    TriggerSource,
)
from blissng.sim import (
    SimBadDevice,
    SimCamera,
    SimGoodDevice,
    SimMca,
    SimSerialMotorController,
    SimTcpScaler,
    SimTriggerBox,
)
from blissng.testing import wait_frames_accounted

pytestmark = pytest.mark.anyio


def build(cls, name: str, sims, **params):
    return cls(name, cls.Parameters.model_validate({"url": sims.url(name), **params}))


@pytest.fixture
async def devices(sims, tmp_path: Path):
    scaler = build(
        SimTcpScaler, "scaler", sims,
        counters=[{"name": "timer"}, {"name": "det"}, {"name": "monitor", "channel": "mon"}],
    )  # fmt: skip
    mca = build(SimMca, "mca", sims, nbins=1024, rois={"line1": [190, 210]})
    camera = build(SimCamera, "camera", sims, directory=str(tmp_path / "frames"))
    trigger = build(SimTriggerBox, "trigger", sims)
    yield {"scaler": scaler, "mca": mca, "camera": camera, "trigger": trigger}
    for device in (scaler, mca, camera, trigger):
        await device.close()


async def test_the_devices_implement_the_protocols(devices):
    for name in ("scaler", "mca", "camera"):
        assert isinstance(devices[name], Acquirable)
    assert isinstance(devices["trigger"], TriggerSource)
    image = devices["camera"].image
    assert (image.kind, image.shape, image.frame_dtype) == ("reference", (96, 128), "uint16")
    spectrum = devices["mca"].spectrum
    assert (spectrum.dtype, spectrum.shape) == ("uint32", (1024,))


async def test_scaler_integrates_over_the_count_time(devices):
    values = await devices["scaler"].count(0.1)
    assert values["timer"] == pytest.approx(1e5)  # the 1 MHz clock
    assert values["monitor"] == pytest.approx(1e4, rel=0.05)  # 1e5 counts/s
    assert values["det"] > 0


async def test_scaler_counts_depend_on_the_motor_position(sims, devices):
    params = SimSerialMotorController.Parameters.model_validate(
        {
            "url": sims.url("motors"),
            "axes": [{"name": "m1", "channel": 1, "velocity": 1e4, "acceleration": 1e5}],
        }
    )
    motors = SimSerialMotorController("motors", params)
    try:
        m1 = motors.child("m1")
        scaler = devices["scaler"]
        await m1.move(0)  # the det peak (centre 0 steps, width 500)
        at_peak = (await scaler.count(0.05))["det"]
        await m1.move(1500)
        off_peak = (await scaler.count(0.05))["det"]
    finally:
        await motors.close()
    assert at_peak > 20 * off_peak


async def test_software_triggering_with_frames_per_trigger(devices):
    params = AcquisitionParameters(0.01, 2, TriggerMode.SOFTWARE, frames_per_trigger=3)
    for name in ("scaler", "mca", "camera"):
        device = devices[name]
        await device.prepare(params)
        await device.start()
        await device.trigger()
        first = await device.read()
        await device.trigger()
        second = await device.read()
        await device.stop()
        key = {"scaler": "timer", "mca": "spectrum", "camera": "image"}[name]
        assert (len(first[key]), len(second[key])) == (3, 3), name
    assert list(second["image"]["index"]) == [3, 4, 5]


async def test_hardware_triggered_frame_counts_with_the_trigger_box(devices):
    trigger, scaler, mca, camera = (devices[n] for n in ("trigger", "scaler", "mca", "camera"))
    npoints = 7
    params = AcquisitionParameters(0.005, npoints, TriggerMode.HARDWARE)
    for device in (scaler, mca, camera):
        await device.prepare(params)
        await device.start()
        await device.trigger()  # a no-op in hardware mode: the pulses make the points
    await trigger.prepare_pulses(npoints, 0.1, 0.002)  # room for the camera's writes
    await trigger.start_pulses()
    await trigger.wait_done()
    assert await trigger.pulses_emitted() == npoints
    got: dict[str, dict[str, np.ndarray]] = {}
    frames: dict[str, int] = {}
    for device in (scaler, mca, camera):
        frames[device.name], missed = await wait_frames_accounted(device, npoints)
        assert frames[device.name] + missed == npoints, device.name
        assert missed <= 1, device.name  # 0 unless the machine stalled the simulator
        got[device.name] = await device.read()
        await device.stop()
    assert got["scaler"]["timer"] == pytest.approx([5000] * frames["scaler"])
    spectra = got["mca"]["spectrum"]
    assert spectra.shape == (frames["mca"], 1024) and spectra.dtype == np.uint32
    assert list(got["mca"]["line1"]) == list(spectra[:, 190:210].sum(axis=1))
    refs = got["camera"]["image"]
    assert refs.dtype == FRAME_REFERENCE_DTYPE
    assert list(refs["index"]) == list(range(frames["camera"]))
    frames_read = await camera.load_frames(refs[[0, -1]])
    assert frames_read.shape == (2, 96, 128) and frames_read.dtype == np.uint16
    assert frames_read.max() > 0


async def test_camera_files_go_to_its_saving_directory(devices, tmp_path: Path):
    camera = devices["camera"]
    await camera.set_saving(str(tmp_path / "scan1"), "pilatus")
    refs = (await camera.count(0.005))["image"]
    file = Path(bytes(refs["file"]).decode())
    assert file.parent == tmp_path / "scan1" and file.name.startswith("pilatus_")
    assert file.exists()


async def test_configuration_is_checked_against_the_instrument(sims):
    mca = build(SimMca, "mca", sims, nbins=512)
    camera = build(SimCamera, "camera", sims, width=64, height=64)
    scaler = build(SimTcpScaler, "scaler", sims, counters=[{"name": "xyz"}])
    try:
        with pytest.raises(DeviceError, match="mca: the instrument has 1024 bins .* nbins: 512"):
            await mca.count(0.01)
        with pytest.raises(DeviceError, match="camera: the camera's frames are 128 x 96"):
            await camera.count(0.01)
        with pytest.raises(DeviceError, match=r"scaler: has no channel xyz \(its channels: timer"):
            await scaler.count(0.01)
    finally:
        for device in (mca, camera, scaler):
            await device.close()
    with pytest.raises(DeviceError, match="mca: roi 'far' ends at 2000, beyond 1024 bins"):
        build(SimMca, "mca", sims, rois={"far": [1000, 2000]})


async def test_trigger_box_refuses_bad_pulses_and_a_silent_scaler_times_out(sims, devices):
    with pytest.raises(DeviceError, match="trigger: pulse width 0.2 s must be > 0 and < the"):
        await devices["trigger"].prepare_pulses(3, 0.1, 0.2)
    scaler = build(SimTcpScaler, "scaler", sims, counters=[{"name": "timer"}], timeout=0.2)
    try:
        await sims.fault("scaler", "silent")
        with pytest.raises(CommTimeout, match="device 'scaler'"):
            await scaler.count(0.01)
        await sims.fault("scaler", "none")
        assert (await scaler.count(0.01))["timer"] == pytest.approx(1e4)
    finally:
        await scaler.close()


async def test_missing_frames_are_an_error_naming_the_device(devices):
    mca = devices["mca"]
    mca.frame_timeout = 0.2
    await mca.prepare(AcquisitionParameters(0.01, 2, TriggerMode.HARDWARE))
    await mca.start()
    with pytest.raises(DetectorError, match=r"mca: has 0 frame\(s\) of 2 expected"):
        await mca.wait_frames(2)  # no trigger box pulses
    await mca.stop()


async def test_good_device_hands_over_many_points_per_read(sims):
    good = build(SimGoodDevice, "good", sims)
    try:
        await good.prepare(AcquisitionParameters(0.001, 0, TriggerMode.HARDWARE))
        await good.start()
        total: list[float] = []
        while len(total) < 50:
            total.extend((await good.read())["value"])
        await good.stop()
    finally:
        await good.close()
    assert total[:50] == [float(k) for k in range(50)]  # nothing lost, nothing repeated


async def test_bad_device_reader_sees_every_packet_when_served(bad_device):
    bad = SimBadDevice("bad", SimBadDevice.Parameters(url=bad_device.url("bad")))
    try:
        await bad.connect()
        await bad.start()
        while bad.received < 100:
            await bad.read_packets()
        produced, dropped = await bad.stop()
    finally:
        await bad.close()
    assert dropped == 0 and bad.gaps == 0
    assert bad.received == produced


async def test_a_cancelled_request_never_leaves_its_reply_to_the_next_one(sims, devices):
    scaler = devices["scaler"]
    await sims.fault("scaler", "slow", delay=0.3)
    with anyio.move_on_after(0.05):
        await scaler.client.ask("?CHAN")  # sent, cancelled before its reply
    await sims.fault("scaler", "none")
    await anyio.sleep(0.4)  # no event tells when the late reply is sent: give it its 0.3 s
    assert (await scaler.client.ask("*IDN?")).startswith("SIMSCALER")


async def test_scaler_rates_as_sampling_counters_over_tcp(sims):
    from blissng.sim import SimScalerRates

    rates = build(
        SimScalerRates, "scaler", sims, sampling_period=0.005,
        counters=[{"name": "mon_rate", "channel": "mon"},
                  {"name": "mon_stats", "channel": "mon", "mode": "STATS"}],
    )  # fmt: skip
    try:
        assert isinstance(rates, Acquirable)
        values = await rates.count(0.05)
    finally:
        await rates.close()
    assert values["mon_rate"] == pytest.approx(1e5, rel=0.05)  # 1e5 counts/s, 1 % noise
    mean, n, std, _var, low, high, p2v = values["mon_stats"]
    assert n >= 2 and std > 0 and low <= mean <= high and p2v == pytest.approx(high - low)
