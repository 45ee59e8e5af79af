"""One scan mixing control systems, typed in a session as a user would, written by the real
writer process and read back with h5py: a serial motor (pty simulator) and a Tango motor
stepped together, counted by the TCP scaler, EPICS counters (Channel Access scalar and
waveform, a PV Access scalar) and Tango counters (scalar and spectrum)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from blissng.config import Config
from blissng.redisdb import RedisUrls, SettingsStore, async_client
from blissng.scans import close_shared_clients
from blissng.session import Session
from blissng.testing import wait_until
from writer_process import is_written, writer_process

pytestmark = pytest.mark.anyio


def beamline(sims: Any) -> str:
    return f"""
- name: motors
  class: SimSerialMotorController
  url: {sims.url("motors")}
  timeout: 3
  axes:
    - {{name: m1, channel: 1, steps_per_unit: 1000, velocity: 5, acceleration: 50}}
- name: scaler
  class: SimTcpScaler
  url: {sims.url("scaler")}
  counters: [{{name: det}}]
- name: tm1
  class: TangoMotor
  tango_name: sim/motor/1
  tango_host: sim://tango
  velocity: 20
  acceleration: 200
- name: tcount
  class: TangoCounterController
  tango_name: sim/counter/1
  tango_host: sim://tango
  counters:
    - {{name: tcounts, attribute: Counts}}
    - {{name: tspectrum, attribute: Spectrum, length: 256}}
- name: ecount
  class: EpicsCounterController
  counters:
    - {{name: edet, pv: "SIM:sc:S3"}}
    - {{name: espectrum, pv: "SIM:spectrum", length: 256}}
    - {{name: pdet, pv: "pva://SIM:pva:det"}}
"""


@pytest.fixture
async def session(sims, tango_sim, epics_ioc, write_config, config_dir, redis_urls, tmp_path):
    write_config("beamline.yml", beamline(sims))
    client = async_client(redis_urls.settings)
    config = Config(config_dir, settings=SettingsStore(client))
    try:
        scan_saving = {"base_path": str(tmp_path / "data")}
        async with Session("cs", config=config, redis=redis_urls, scan_saving=scan_saving) as s:
            yield s
    finally:
        for obj in config.built().values():
            close = getattr(obj, "close", None)
            if close is not None:
                await close()
        await client.aclose()
        await close_shared_clients()


@pytest.mark.timeout(120)
async def test_a_scan_mixing_control_systems_is_written_to_one_file(
    session: Session, redis_urls: RedisUrls
) -> None:
    with writer_process(redis_urls.data):
        scan = await session.execute(
            "a2scan(m1, 0, 1, tm1, 0, 2, 10, 0.01, scaler, ecount, tcount)"
        )
        client = async_client(redis_urls.data)
        try:
            await wait_until(lambda: is_written(client, scan.scan_id), timeout=60)
        finally:
            await client.aclose()
    path = Path(scan.path)
    with h5py.File(path, "r", locking=False) as f:
        measurement = f[f"{scan.number}.1"]["measurement"]
        assert {"m1", "tm1", "det", "edet", "espectrum", "pdet", "tcounts", "tspectrum"} <= set(
            measurement
        )
        np.testing.assert_allclose(measurement["m1"][()], np.linspace(0, 1, 11), atol=1e-3)
        np.testing.assert_allclose(measurement["tm1"][()], np.linspace(0, 2, 11), atol=1e-6)
        assert measurement["espectrum"].shape == (11, 256)
        assert measurement["tspectrum"].shape == (11, 256)
        # The Tango counter peaks where the Tango motor passes 1 (point 5: tm1 = 1.0).
        tcounts = measurement["tcounts"][()]
        assert int(np.argmax(tcounts)) == 5 and tcounts[5] == pytest.approx(1010, rel=0.1)
        np.testing.assert_allclose(measurement["tspectrum"][:, 128], 1 + tcounts, rtol=0.1)
        # SIM:m1 stays at 0: the EPICS detector reads its flank (10 + 1000 e^-2) every point.
        np.testing.assert_allclose(measurement["edet"][()], 145.3, rtol=0.05)
        np.testing.assert_allclose(measurement["pdet"][()], 145.3, rtol=0.05)
        assert len(measurement["det"]) == 11 and measurement["det"][0] > measurement["det"][10]
