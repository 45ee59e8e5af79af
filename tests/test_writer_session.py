"""Scans a user runs in a session, written by the real writer process, read back with h5py
and nexusformat: dataset names users typed, the default plot of a counter against the scanned
motor(s), and the alignment helpers reading the same mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from nexusformat.nexus import nxload

from beamlines import MOCKUP_BEAMLINE
from blissng.config import Config
from blissng.redisdb import RedisUrls, SettingsStore, async_client
from blissng.scans import AlignmentError, close_shared_clients
from blissng.session import Session
from blissng.testing import wait_until
from writer_process import is_written, writer_process

pytestmark = pytest.mark.anyio

# A second controller with a counter also named "diode": a collision only a prefix resolves.
CONFIG = (
    MOCKUP_BEAMLINE
    + """\
- name: other
  class: SimCounterController
  sampling_period: 0.001
  counters:
    - name: diode
      motor: $m2
      nsamples: 1
"""
)


@pytest.fixture
async def session(write_config, config_dir: Path, redis_urls: RedisUrls, tmp_path: Path) -> Any:
    write_config("beamline.yml", CONFIG)
    client = async_client(redis_urls.settings)
    try:
        config = Config(config_dir, settings=SettingsStore(client))
        scan_saving = {"base_path": str(tmp_path / "data")}
        async with Session("w1", config=config, redis=redis_urls, scan_saving=scan_saving) as s:
            yield s
    finally:
        await client.aclose()
        await close_shared_clients()


async def written_file(session: Session, scan: Any) -> Path:
    client = async_client(session.redis.data)
    try:
        await wait_until(lambda: is_written(client, scan.scan_id), timeout=30)
    finally:
        await client.aclose()
    return Path(scan.path)


@pytest.mark.timeout(90)
async def test_ascan_file_names_what_users_typed_and_plots_counter_vs_motor(session, redis_urls):
    with writer_process(redis_urls.data):
        scan = await session.execute("ascan(m1, 0, 2, 20, 0, sim)")
        path = await written_file(session, scan)
        # cen() and peak() find the motor and the counter through the same mapping.
        assert await session.execute("peak()") == pytest.approx(1.0)
        centre, fwhm = await session.execute("cen()")
        assert centre == pytest.approx(1.0, abs=0.05) and fwhm == pytest.approx(0.5, abs=0.1)
        assert await session.execute("goto_peak()") == pytest.approx(1.0)
        assert session.namespace["m1"].position == pytest.approx(1.0)
    # What a NeXus viewer opens: the data set file, its default entry, its default plot.
    plottable = nxload(str(path), "r").get_default().get_default()
    assert plottable.nxsignal.nxname == "diode"
    assert [axis.nxname for axis in plottable.nxaxes] == ["m1"]
    np.testing.assert_allclose(plottable.nxaxes[0].nxdata, np.linspace(0, 2, 21))
    entry = f"{scan.number}.1"
    with h5py.File(path, "r", locking=False) as f:
        measurement = f[entry]["measurement"]
        assert sorted(measurement) == ["diode", "elapsed_time", "epoch", "m1"]
        assert measurement["m1"].attrs["channel"] == "axis:m1"
        assert measurement["diode"].attrs["channel"] == "sim:diode"
        np.testing.assert_allclose(measurement["m1"][()], np.linspace(0, 2, 21))
        plot = f[entry]["plot"]
        assert plot.attrs["signal"] == "diode"
        assert list(plot.attrs["axes"]) == ["m1"]


@pytest.mark.timeout(90)
async def test_colliding_counter_names_get_a_prefix_and_a_mesh_plots_a_map(session, redis_urls):
    with writer_process(redis_urls.data):
        scan = await session.execute(
            "amesh(m1, 0, 2, 2, m2, 0, 1, 1, 0, sim, other, backnforth=True)"
        )
        path = await written_file(session, scan)
        # The short name is ambiguous: the error says so and names the full names.
        with pytest.raises(AlignmentError, match="ambiguous"):
            await session.execute("cen(counter='diode')")
        assert await session.execute("peak(counter='sim:diode')") == pytest.approx(1.0)
    plottable = nxload(str(path), "r").get_default().get_default()
    assert plottable.nxsignal.nxname == "sim_diode"
    assert [axis.nxname for axis in plottable.nxaxes] == ["m2", "m1"]
    entry = f"{scan.number}.1"
    with h5py.File(path, "r", locking=False) as f:
        measurement = f[entry]["measurement"]
        assert sorted(measurement) == ["elapsed_time", "epoch", "m1", "m2", "other_diode",
                                       "sim_diode"]  # fmt: skip
        assert measurement["other_diode"].attrs["channel"] == "other:diode"
        plot = f[entry]["plot"]
        assert plot.attrs["signal"] == "sim_diode"
        assert list(plot.attrs["axes"]) == ["m2", "m1"]
        assert plot["sim_diode"].shape == (2, 3)
        # Back and forth: the second row was measured 2, 1, 0; the map puts it in order.
        np.testing.assert_allclose(measurement["m1"][()], [0, 1, 2, 2, 1, 0])
        np.testing.assert_allclose(plot["m1"][()], [0, 1, 2])
        np.testing.assert_allclose(plot["m2"][()], [0, 1])
        assert list(np.argmax(plot["sim_diode"][()], axis=1)) == [1, 1]  # the peak at m1 = 1
