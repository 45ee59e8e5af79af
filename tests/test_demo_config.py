"""The demo beamline: its shipped configuration on the real simulator processes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

import blissng.demo as demo
from blissng.config import Config
from blissng.devices import (
    Acquirable,
    AcquisitionParameters,
    Axis,
    DeviceError,
    Movable,
    TriggerMode,
    TriggerSource,
)
from blissng.sim import resolve_address
from blissng.testing import wait_frames_accounted

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def demo_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with demo.run_simulators(tmp_path_factory.mktemp("demo-sims")) as urls:
        yield urls


@pytest.fixture
async def config(demo_urls: dict[str, str]) -> AsyncIterator[Config]:
    config = Config(demo.config_dir())
    try:
        yield config
    finally:
        for obj in config.built().values():
            close = getattr(obj, "close", None)
            if close is not None:
                await close()


def test_config_ships_inside_the_package_and_builds_without_hardware():
    directory = demo.config_dir()
    assert directory.is_dir() and (directory / "motors.yml").is_file()
    config = Config(directory)
    built = config.build_all()
    assert config.errors == []
    for name in ("m1", "m2", "s1g", "s1o", "roby", "diode", "scaler", "trigger", "mca", "camera"):
        assert name in built
    for name in ("m1", "s1g", "roby"):
        assert isinstance(built[name], Movable)
    for name in ("simct", "scaler", "mca", "camera", "norm"):
        assert isinstance(built[name], Acquirable)
    assert isinstance(built["trigger"], TriggerSource)


async def test_unresolved_simulator_address_says_what_to_do(monkeypatch):
    monkeypatch.delenv("BLISSNG_SIM_NOSUCH", raising=False)
    with pytest.raises(DeviceError, match="dev: address sim://nosuch .* BLISSNG_SIM_NOSUCH"):
        resolve_address("sim://nosuch", device="dev")
    monkeypatch.setenv("BLISSNG_SIM_NOSUCH", "tcp://127.0.0.1:1")
    assert resolve_address("sim://nosuch", device="dev") == "tcp://127.0.0.1:1"
    assert demo.simulator_environment({"motors": "serial:///x"}) == {
        "BLISSNG_SIM_MOTORS": "serial:///x"
    }


async def test_demo_simulators_are_registered(demo_urls):
    assert set(demo_urls) == set(demo.SIMULATORS)
    assert resolve_address("sim://motors", device="motors") == demo_urls["motors"]
    assert os.path.exists(demo_urls["motors"].removeprefix("serial://"))


async def scan(motor: Axis, positions: list[float], read) -> list[float]:
    values = []
    for position in positions:
        await motor.move(position)
        values.append(await read())
    return values


async def test_counters_peak_at_their_documented_positions(config):
    m1 = config.get("m1")
    simct, scaler = config.get("simct"), config.get("scaler")
    positions = [0.6, 0.8, 1.0, 1.2, 1.4]
    diode = await scan(m1, positions, lambda: _value(simct, "diode", 0))
    assert positions[int(np.argmax(diode))] == 1.0
    positions = [-1.0, -0.5, 0.0, 0.5, 1.0]
    det = await scan(m1, positions, lambda: _value(scaler, "det", 0.02))
    assert positions[int(np.argmax(det))] == 0.0
    assert det[2] > 5 * det[0]


async def _value(controller, counter: str, count_time: float) -> float:
    return float((await controller.count(count_time))[counter])


async def test_slit_gap_and_offset_move_the_blades(config):
    gap, offset = config.get("s1g"), config.get("s1o")
    await gap.move(1.0)
    await offset.move(0.25)
    low, high = config.get("s1l"), config.get("s1h")
    assert (await low.read_position(), await high.read_position()) == (-0.25, 0.75)
    assert gap.position == pytest.approx(1.0) and offset.position == pytest.approx(0.25)


async def test_hardware_triggered_detectors_of_the_demo(config, tmp_path: Path):
    trigger, mca, camera = config.get("trigger"), config.get("mca"), config.get("camera")
    await camera.set_saving(str(tmp_path), "demo")
    params = AcquisitionParameters(0.005, 4, TriggerMode.HARDWARE)
    for device in (mca, camera):
        await device.prepare(params)
        await device.start()
    await trigger.prepare_pulses(4, 0.1, 0.001)  # slow enough for a loaded machine
    await trigger.start_pulses()
    await trigger.wait_done()
    counts = {}
    for device in (mca, camera):
        counts[device.name] = await wait_frames_accounted(device, 4)
        assert sum(counts[device.name]) == 4 and counts[device.name][1] <= 1
    spectra = await mca.read()
    refs = (await camera.read())["image"]
    await mca.stop()
    await camera.stop()
    assert spectra["spectrum"].shape == (counts["mca"][0], 1024)
    assert list(refs["index"]) == list(range(counts["camera"][0]))
    assert bytes(refs[0]["file"]).decode().startswith(str(tmp_path))


async def test_control_system_devices_of_the_demo(config, epics_ioc):
    """The Tango and EPICS objects of control_systems.yml on the demo's simulated servers."""
    tm1, em1 = config.get("tm1"), config.get("em1")
    await tm1.move(1.0)
    await em1.move(1.0)
    tango = await config.get("tcount").count(0)
    epics = await config.get("ecount").count(0)
    assert tango["tcounts"] == pytest.approx(1010, rel=0.1)  # both peak at their motor = 1
    assert epics["edet"] == pytest.approx(1010, rel=0.1)
    assert tango["tspectrum"].shape == epics["espectrum"].shape == (256,)
    await tm1.move(0)
    await em1.move(0)
