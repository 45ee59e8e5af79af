"""Scan commands on the in-process simulated motors and gaussian counters: positions and point
counts of each command, counters from controllers and measurement groups, relative scans
returning, abort (Ctrl-C) with cleanup, pause conditions, slave errors, a dead controller at the
position snapshot, hooks, and a command called from a worker thread."""

from __future__ import annotations

import io
import re
import time
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import pytest

from blissng.acquisition import AcquisitionError, PauseCondition, ScanState
from blissng.errors import Aborted
from blissng.scans import (
    MeasurementGroup,
    ScanArgumentError,
    ScanContext,
    ScanEvent,
    a2scan,
    amesh,
    anscan,
    ascan,
    cen,
    com,
    ct,
    d2scan,
    dmesh,
    dnscan,
    dscan,
    goto_cen,
    goto_peak,
    lookupscan,
    loopscan,
    peak,
    pointscan,
    sct,
    timescan,
    use_context,
)
from blissng.sim import MockupController, SimCounterController
from blissng.testing import wait_until

pytestmark = pytest.mark.anyio


def make_devices(instant: bool = True, velocity: float = 1000.0) -> SimpleNamespace:
    axes = [
        {"name": n, "velocity": velocity, "acceleration": velocity * 100}
        for n in ("m1", "m2", "m3")
    ]
    ctrl = MockupController(
        "mockup", MockupController.Parameters.model_validate({"instant": instant, "axes": axes})
    )
    m1, m2, m3 = (ctrl.child(n) for n in ("m1", "m2", "m3"))
    sim = SimCounterController(
        "sim",
        SimCounterController.Parameters.model_validate(
            {
                "sampling_period": 0.001,
                "counters": [
                    {"name": "diode", "motor": m1, "center": 2.0, "fwhm": 1.0, "height": 100,
                     "nsamples": 1},
                    {"name": "diode2", "motor": m2, "center": -1.0, "fwhm": 0.5, "height": 10,
                     "nsamples": 1},
                ],
            }
        ),
    )  # fmt: skip
    return SimpleNamespace(ctrl=ctrl, m1=m1, m2=m2, m3=m3, sim=sim)


@pytest.fixture
def dev() -> SimpleNamespace:
    return make_devices()


@pytest.fixture
def ctx(dev: SimpleNamespace) -> Any:
    context = ScanContext(
        session="t", output=io.StringIO(), motors=lambda: [dev.m1, dev.m2, dev.m3]
    )
    with use_context(context):
        yield context


async def test_ascan_positions_points_and_alignment(dev, ctx) -> None:
    scan = await ascan(dev.m1, 0, 4, 8, 0, dev.sim)
    assert scan.state == "done" and scan.number == 1 and scan.npoints == 9
    data = await scan.get_data()
    np.testing.assert_allclose(data["axis:m1"], np.linspace(0, 4, 9))
    assert len(data["sim:diode"]) == len(data["sim:diode2"]) == len(data["timer:elapsed_time"]) == 9
    assert data["sim:diode"].argmax() == 4
    assert await peak() == pytest.approx(2.0)
    centre, fwhm = await cen("diode")
    assert centre == pytest.approx(2.0, abs=1e-6) and fwhm == pytest.approx(1.0, rel=0.05)
    assert await com("diode") == pytest.approx(2.0, abs=1e-6)
    assert dev.m1.position == 4.0
    await goto_peak("diode")
    assert dev.m1.position == pytest.approx(2.0)
    await dev.m1.move(0)
    await goto_cen()
    assert dev.m1.position == pytest.approx(2.0, abs=1e-6)
    # The table was printed: header and every point.
    text = ctx.output.getvalue()
    assert "ascan m1 0 4 8 0" in text and "Finished: 9/9" in text


async def test_stab_time_scan_info_and_title(dev, ctx) -> None:
    scan = await ascan(dev.m1, 0, 1, 3, 0, dev.sim, stab_time=0.005, title="settle",
                       scan_info={"sample": "lyso"})  # fmt: skip
    epochs = await scan.get_data("epoch")
    assert np.all(np.diff(epochs) >= 0.005 * 0.99)  # each point waits after its move
    assert scan.title == "settle" and scan.scan_info == {"sample": "lyso"}
    with pytest.raises(ScanArgumentError, match="stab_time must be >= 0"):
        await ascan(dev.m1, 0, 1, 3, 0, dev.sim, stab_time=-1)


async def test_dscan_is_relative_and_returns(dev, ctx) -> None:
    await dev.m1.move(1.0)
    scan = await dscan(dev.m1, -1, 1, 4, 0, dev.sim)
    np.testing.assert_allclose((await scan.get_data())["axis:m1"], np.linspace(0, 2, 5))
    assert dev.m1.position == 1.0
    assert scan.motors[0]["start"] == 0.0 and scan.motors[0]["stop"] == 2.0


async def test_two_and_n_motor_scans(dev, ctx) -> None:
    scan = await a2scan(dev.m1, 0, 1, dev.m2, 10, 20, 2, 0, dev.sim)
    data = await scan.get_data()
    np.testing.assert_allclose(data["axis:m1"], [0, 0.5, 1])
    np.testing.assert_allclose(data["axis:m2"], [10, 15, 20])
    await dev.m3.move(5)
    scan = await d2scan(dev.m2, -1, 1, dev.m3, 0, 2, 4, 0, dev.sim)
    data = await scan.get_data()
    np.testing.assert_allclose(data["axis:m2"], np.linspace(19, 21, 5))
    np.testing.assert_allclose(data["axis:m3"], np.linspace(5, 7, 5))
    assert (dev.m2.position, dev.m3.position) == (20, 5)
    scan = await anscan([(dev.m1, 0, 3), (dev.m2, 0, 6), (dev.m3, 1, 0)], 3, 0, dev.sim)
    data = await scan.get_data()
    np.testing.assert_allclose(data["axis:m3"], [1, 2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(data["axis:m2"], [0, 2, 4, 6])
    scan = await dnscan([(dev.m1, 1, 2), (dev.m2, -1, 0)], 1, 0, dev.sim)
    data = await scan.get_data()
    np.testing.assert_allclose(data["axis:m1"], [4, 5])
    np.testing.assert_allclose(data["axis:m2"], [5, 6])
    assert (dev.m1.position, dev.m2.position) == (3, 6)


async def test_mesh_with_and_without_backnforth(dev, ctx) -> None:
    scan = await amesh(dev.m1, 0, 2, 2, dev.m2, 0, 1, 1, 0, dev.sim)
    data = await scan.get_data()
    np.testing.assert_allclose(data["axis:m1"], [0, 1, 2, 0, 1, 2])
    np.testing.assert_allclose(data["axis:m2"], [0, 0, 0, 1, 1, 1])
    assert scan.scan_info["mesh"]["shape"] == [2, 3]
    await dev.m1.move(10)
    await dev.m2.move(20)
    scan = await dmesh(dev.m1, 0, 2, 2, dev.m2, 0, 2, 2, 0, dev.sim, backnforth=True)
    data = await scan.get_data()
    np.testing.assert_allclose(data["axis:m1"], [10, 11, 12, 12, 11, 10, 10, 11, 12])
    np.testing.assert_allclose(data["axis:m2"], [20, 20, 20, 21, 21, 21, 22, 22, 22])
    assert (dev.m1.position, dev.m2.position) == (10, 20)


async def test_lookupscan_and_pointscan(dev, ctx) -> None:
    scan = await lookupscan([(dev.m1, [0, 3, 1]), (dev.m2, [5, 5, 6])], 0, dev.sim)
    data = await scan.get_data()
    np.testing.assert_allclose(data["axis:m1"], [0, 3, 1])
    np.testing.assert_allclose(data["axis:m2"], [5, 5, 6])
    scan = await pointscan(dev.m3, [2, -2], 0, dev.sim)
    np.testing.assert_allclose((await scan.get_data("m3")), [2, -2])
    with pytest.raises(ScanArgumentError, match="same, non-zero number of positions"):
        await lookupscan([(dev.m1, [0, 1]), (dev.m2, [0])], 0, dev.sim)


async def test_counting_commands(dev, ctx) -> None:
    scan = await ct(0.01, dev.sim)
    assert scan.save is False and len(await scan.get_data("diode")) == 1
    shown = ctx.output.getvalue()
    assert re.search(r"\n +diode = +[0-9.e-]+\n +diode2 = ", shown)  # BLISS's ct layout
    assert (await sct(0, dev.sim)).save is True
    scan = await ct(dev.sim, run=False)  # ct(diode): 1 s on it
    assert scan.chain.top.count_time == 1.0 and "sim:diode" in scan.channels
    scan = await loopscan(5, 0.002, dev.sim, sleep_time=0.001)
    elapsed = await scan.get_data("elapsed_time")
    assert len(elapsed) == 5 and np.all(np.diff(elapsed) >= 0.003 * 0.99)
    scan = await timescan(0, dev.sim, npoints=3)
    assert len(await scan.get_data("diode")) == 3
    # timescan with npoints 0 runs until stopped.
    scan = await timescan(0.001, dev.sim, run=False)
    five = anyio.Event()
    scan.control.add_point_callback(lambda i, _: five.set() if i >= 4 else None)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_run_expecting_abort, scan)
        await five.wait()
        scan.abort()
    assert scan.state == "aborted" and len(await scan.get_data("diode")) >= 5


async def _run_expecting_abort(scan: Any) -> None:
    with pytest.raises(Aborted):
        await scan.run()


async def test_counters_from_controllers_groups_and_the_active_group(dev, ctx) -> None:
    diode2 = dev.sim.counters[1]
    scan = await ascan(dev.m1, 0, 1, 1, 0, diode2)
    assert set(await scan.get_data()) == {"axis:m1", "timer:elapsed_time", "timer:epoch",
                                          "sim:diode2"}  # fmt: skip
    mg = MeasurementGroup("MG1", [dev.sim])
    await mg.disable("diode2")
    ctx.active_mg = lambda: mg
    scan = await ascan(dev.m1, 0, 1, 1, 0)
    assert "sim:diode" in scan.channels and "sim:diode2" not in scan.channels
    await mg.disable("*")
    with pytest.raises(ScanArgumentError, match="every counter disabled"):
        await ascan(dev.m1, 0, 1, 1, 0)
    ctx.active_mg = lambda: None
    with pytest.raises(ScanArgumentError, match="no counters given and no active measurement"):
        await ct(0.1)


async def test_bad_arguments_are_named(dev, ctx) -> None:
    with pytest.raises(ScanArgumentError, match="intervals must be an integer"):
        await ascan(dev.m1, 0, 1, 2.5, 0.1, dev.sim)
    with pytest.raises(ScanArgumentError, match="count_time must be >= 0"):
        await ascan(dev.m1, 0, 1, 2, -1, dev.sim)
    with pytest.raises(ScanArgumentError, match="is not a motor"):
        await ascan("m1", 0, 1, 2, 0.1, dev.sim)
    with pytest.raises(ScanArgumentError, match="given twice"):
        await a2scan(dev.m1, 0, 1, dev.m1, 0, 1, 2, 0.1, dev.sim)
    with pytest.raises(ScanArgumentError, match="unknown keyword"):
        await ascan(dev.m1, 0, 1, 2, 0.1, dev.sim, sleeptime=1)
    with pytest.raises(TypeError, match="not a counter"):
        await ct(0.1, dev.m1)


async def test_run_false_builds_then_runs(dev, ctx) -> None:
    scan = await ascan(dev.m1, 0, 1, 2, 0, dev.sim, run=False, title="my scan")
    assert scan.state == "idle" and scan.number is None and scan.title == "my scan"
    await scan.run()
    assert scan.state == "done" and len(await scan.get_data("m1")) == 3


async def test_blocking_call_from_a_worker_thread(dev, ctx) -> None:
    def user_function() -> Any:
        scan = ascan(dev.m1, 0, 2, 2, 0, dev.sim)  # blocks this thread, runs on the loop
        return scan, scan.get_data("m1"), peak()

    scan, positions, top = await anyio.to_thread.run_sync(user_function)
    assert scan.state == "done"
    np.testing.assert_allclose(positions, [0, 1, 2])
    assert top == 2.0


@pytest.mark.timeout(30)
async def test_cancel_aborts_within_100_ms_and_cleans_up(ctx) -> None:
    dev = make_devices(instant=True)
    scan = await loopscan(10_000, 0.05, dev.sim, run=False)
    three = anyio.Event()
    scan.control.add_point_callback(lambda i, _: three.set() if i >= 2 else None)
    cancelled_at = 0.0
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scan.run)
            await three.wait()
            cancelled_at = time.perf_counter()
            scope.cancel()
    took = time.perf_counter() - cancelled_at
    assert scan.state == "aborted"
    assert scan.control.state is ScanState.ABORTED
    assert took < 0.5, f"abort took {took * 1000:.0f} ms"  # target 100 ms, 5x margin
    assert 3 <= len(await scan.get_data("diode")) < 10


@pytest.mark.timeout(30)
async def test_cancelled_dscan_stops_the_motor_and_returns_it(ctx) -> None:
    dev = make_devices(instant=False, velocity=20.0)  # 1 unit takes 50 ms
    await dev.m1.move(1.0)
    scan = await dscan(dev.m1, 0, 10, 5, 0, dev.sim, run=False)
    first = anyio.Event()
    scan.control.add_point_callback(lambda i, _: first.set())
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scan.run)
            await first.wait()
            # the move to point 1 has started
            await wait_until(lambda: dev.m1.is_moving, timeout=5, interval=0.001)
            scope.cancel()
    assert scan.state == "aborted"
    assert not dev.m1.is_moving
    assert dev.m1.position == pytest.approx(1.0)


class FailingController(SimCounterController):
    """A counter controller whose read fails at its fourth point (a device error)."""

    async def read_all(self, counters: Any) -> Any:
        if self.reads == 3:
            raise OSError("detector overheated")
        return await super().read_all(counters)


async def test_slave_error_aborts_with_a_clear_message(dev, ctx) -> None:
    bad = FailingController(
        "hot", SimCounterController.Parameters.model_validate({"counters": [{"name": "c"}]})
    )
    with pytest.raises(AcquisitionError) as info:
        await ascan(dev.m1, 0, 9, 9, 0, dev.sim, bad)
    message = str(info.value)
    assert "hot" in message and "detector overheated" in message
    scan = ctx.get_last_scan()
    assert scan.state == "failed" and "detector overheated" in scan.error
    assert len(await scan.get_data("diode")) == 3
    assert not dev.m1.is_moving


async def test_pause_condition_pauses_and_repeats_without_duplicates(dev, ctx) -> None:
    beam = {"current": 200.0}
    condition = PauseCondition.below("beam", lambda: beam["current"], 10.0, poll_interval=0.001)
    scan = await ascan(dev.m1, 0, 9, 9, 0, dev.sim, run=False, pause_conditions=[condition])
    states: list[ScanState] = []

    def on_point(index: int, _: Any) -> None:
        if index == 3:
            beam["current"] = 0.0  # beam lost during point 4

    def on_state(state: ScanState) -> None:
        states.append(state)
        if state is ScanState.PAUSED:
            beam["current"] = 200.0  # refill: the scan resumes

    scan.control.add_point_callback(on_point)
    scan.control.add_state_callback(on_state)
    await scan.run()
    assert ScanState.PAUSED in states
    data = await scan.get_data()
    np.testing.assert_allclose(data["axis:m1"], np.arange(10))
    assert len(data["sim:diode"]) == 10


class DeadMotor:
    """A motor on a controller that stopped answering."""

    name = "dead"
    unit = None
    position = 0.0

    async def read_position(self) -> float:
        await anyio.sleep_forever()
        return 0.0

    async def move(self, target: float, wait: bool = True) -> None:
        await anyio.sleep_forever()

    async def wait_move(self) -> None: ...

    async def stop(self) -> None: ...


async def test_position_snapshot_survives_a_dead_controller(dev, ctx) -> None:
    ctx.motors = lambda: [dev.m1, DeadMotor(), dev.m2]
    ctx.snapshot_timeout = 0.05
    await dev.m2.move(3)
    scan = await ascan(dev.m1, 0, 1, 1, 0, dev.sim)
    assert scan.state == "done"
    assert scan.positions == {"m1": 0.0, "dead": None, "m2": 3.0}
    assert "position of dead not recorded" in ctx.output.getvalue()


async def test_hooks_see_start_end_and_the_workflow_keyword(dev, ctx) -> None:
    events: list[ScanEvent] = []

    async def on_end(event: ScanEvent) -> None:
        events.append(event)

    def broken(event: ScanEvent) -> None:
        raise RuntimeError("hook bug")

    removers = [
        ctx.hooks.add_scan_start_hook(events.append),
        ctx.hooks.add_scan_end_hook(on_end),
        ctx.hooks.add_scan_end_hook(broken),
    ]
    try:
        scan = await ascan(dev.m1, 0, 1, 1, 0, dev.sim, workflow="fit.json")
    finally:
        for remove in removers:
            remove()
    assert [(e.phase, e.state, e.workflow) for e in events] == [
        ("start", "running", "fit.json"),
        ("end", "done", "fit.json"),
    ]
    assert events[1].scan is scan and events[1].number == scan.number
    assert "broken failed: RuntimeError: hook bug" in ctx.output.getvalue()
    assert scan.state == "done"


async def test_beam_monitor_counter_pauses_and_resumes_the_scan(dev, ctx) -> None:
    from blissng.scans import counter_below

    machine = SimCounterController(
        "machine",
        SimCounterController.Parameters.model_validate(
            {"counters": [{"name": "current", "height": 0, "background": 200, "nsamples": 1}]}
        ),
    )
    current = machine.counters[0]
    beam = counter_below(current, 10, poll_interval=0.001)
    scan = await ascan(dev.m1, 0, 5, 5, 0, dev.sim, run=False, pause_conditions=[beam])
    paused = []

    def on_point(index: int, _: Any) -> None:
        if index == 2:
            machine.peak("current").background = 0.0  # beam lost

    def on_state(state: ScanState) -> None:
        if state is ScanState.PAUSED:
            paused.append(scan.control.point_index)
            machine.peak("current").background = 200.0  # beam back

    scan.control.add_point_callback(on_point)
    scan.control.add_state_callback(on_state)
    await scan.run()
    assert paused and scan.state == "done"
    np.testing.assert_allclose(await scan.get_data("m1"), np.arange(6))
    with pytest.raises(ScanArgumentError, match="counts too"):
        await ascan(
            dev.m1, 0, 1, 1, 0, dev.sim, pause_conditions=[counter_below(dev.sim.counters[0], 1)]
        )
