"""Measurement groups: members from controllers and counters, patterns, clear errors, the
enabled/disabled choice persisted in the settings Redis; user pause and resume of a scan."""

from __future__ import annotations

import io
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import pytest

from blissng.acquisition import ScanState
from blissng.redisdb import RedisUrls, SettingsStore, async_client
from blissng.scans import (
    CounterSelectionError,
    MeasurementGroup,
    MeasurementGroupError,
    ScanContext,
    ascan,
    use_context,
)
from test_scans import make_devices

pytestmark = pytest.mark.anyio


async def test_members_patterns_and_errors() -> None:
    dev = make_devices()
    diode, diode2 = dev.sim.counters
    mg = MeasurementGroup("MG1", [dev.sim])
    assert mg.available == ["sim:diode", "sim:diode2"] and mg.enabled == mg.available
    assert await mg.disable("diode*") == []
    assert await mg.enable("sim:diode2") == ["sim:diode2"]
    assert mg.counters == [diode2] and mg.disabled == ["sim:diode"]
    assert await mg.enable(diode) == ["sim:diode", "sim:diode2"]  # a counter object works too
    with pytest.raises(MeasurementGroupError, match="no counter matching 'mon'.*sim:diode"):
        await mg.disable("mon")
    with pytest.raises(MeasurementGroupError, match="give counter names"):
        await mg.enable()
    # A counter listed twice (itself and through its controller) is one member.
    assert MeasurementGroup("MG2", [dev.sim, diode]).available == ["sim:diode", "sim:diode2"]
    with pytest.raises(CounterSelectionError, match="not a counter"):
        MeasurementGroup("MG3", [dev.m1])
    assert "Disabled" in mg.__info__()


async def test_disabled_members_persist_in_settings(redis_urls: RedisUrls) -> None:
    dev = make_devices()
    client = async_client(redis_urls.settings)
    try:
        store = SettingsStore(client)
        mg = MeasurementGroup("MG1", [dev.sim], settings=store)
        await mg.connect()
        await anyio.to_thread.run_sync(mg.disable, "diode2")  # from a console thread
        again = MeasurementGroup("MG1", [dev.sim], settings=store)
        await again.connect()
        assert again.disabled == ["sim:diode2"]
        other = MeasurementGroup("MG9", [dev.sim], settings=store)
        await other.connect()
        assert other.disabled == []
    finally:
        await client.aclose()


async def test_user_pause_holds_between_points_and_resume_goes_on() -> None:
    dev = make_devices()
    with use_context(ScanContext(output=io.StringIO())):
        scan = await ascan(dev.m1, 0, 5, 5, 0, dev.sim, run=False)

        def on_point(index: int, _: Any) -> None:
            if index == 1:
                scan.pause()

        scan.control.add_point_callback(on_point)
        async with anyio.create_task_group() as tg:
            tg.start_soon(scan.run)
            with anyio.fail_after(5):
                await scan.control.wait_paused()
            assert scan.control.state is ScanState.PAUSED
            held_at = scan.control.point_index
            await anyio.sleep(0.02)  # paused: no point is made meanwhile
            assert scan.control.point_index == held_at == 2
            scan.resume()
        assert scan.state == "done"
        np.testing.assert_allclose(await scan.get_data("m1"), np.arange(6))


async def test_counters_that_do_not_name_their_controller_are_read_by_the_one_listing_them() -> (
    None
):
    """A minimal Acquirable of another library whose counters know no controller: a scan of
    the controller, or of a measurement group of it, reads them through it. Nothing outside
    the selection remembers the pair: the bare counter, given alone later, is refused the
    same way whatever was counted before (it used to be found in a table keyed by id())."""
    import io

    from blissng.scans import ct
    from test_acquisition_chain import CounterController

    journal: list[str] = []
    foreign = CounterController("foreign", journal)
    with use_context(ScanContext(session="t", output=io.StringIO())):
        scan = await ct(0.01, foreign)
        data = await scan.get_data()
        assert (data["foreign:c0"].tolist(), data["foreign:c1"].tolist()) == ([0.0], [1.0])
        mg = MeasurementGroup("MG_FOREIGN", [foreign])
        assert mg.available == ["c0", "c1"]
        scan = await ct(0.01, mg)
        assert (await scan.get_data())["foreign:c1"].tolist() == [11.0]
        assert journal.count("foreign.read") >= 2
        with pytest.raises(CounterSelectionError, match="'c0' has no controller to read it"):
            await ct(0.01, foreign.counters[0])
