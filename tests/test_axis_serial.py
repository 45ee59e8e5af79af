"""Axes on the simulated serial motor controller, through a real pty (sims fixture)."""

from __future__ import annotations

import time

import anyio
import pytest

from blissng.comm import CommTimeout
from blissng.devices import (
    AxisState,
    EncoderMismatchError,
    Group,
    LimitSwitchError,
    UnknownDeviceError,
)
from blissng.redisdb import SettingsStore, async_client
from blissng.sim import SimCommandError, SimSerialMotorController

pytestmark = pytest.mark.anyio

AXIS = {"steps_per_unit": 1000, "velocity": 2, "acceleration": 20, "polling_interval": 0.005}


def controller(sims, *axes: dict, settings=None, timeout: float = 3.0):
    params = SimSerialMotorController.Parameters.model_validate(
        {"url": sims.url("motors"), "timeout": timeout, "axes": [{**AXIS, **a} for a in axes]}
    )
    return SimSerialMotorController("motors", params, settings=settings)


@pytest.fixture
async def closing():
    opened: list[SimSerialMotorController] = []
    yield opened.append
    for ctrl in opened:
        await ctrl.close()


async def steps(sims, channel: int) -> float:
    return float((await sims.call("motors", "positions"))[str(channel)])


async def test_moves_through_the_pty(sims, closing):
    ctrl = controller(sims, {"name": "m1", "channel": 1})
    closing(ctrl)
    m1 = ctrl.child("m1")
    await m1.move(0.25)
    assert m1.position == 0.25
    assert await steps(sims, 1) == 250
    await m1.move_relative(-0.5)
    assert await m1.read_position() == -0.25
    assert m1.state is AxisState.READY


async def test_group_move_starts_and_stops_together(sims, closing):
    ctrl = controller(sims, {"name": "a", "channel": 1}, {"name": "b", "channel": 2})
    closing(ctrl)
    a, b = ctrl.child("a"), ctrl.child("b")
    group = Group(a, b)
    await group.move({a: 5, b: 5}, wait=False)  # 2.5 s at 2 mm/s
    await anyio.sleep(0.2)
    positions = await sims.call("motors", "positions")  # both read at one instant
    p1, p2 = positions["1"], positions["2"]
    assert p1 > 0 and abs(p1 - p2) <= 1  # one MOV command: started at the same instant
    await group.stop()
    assert not a.is_moving and not b.is_moving
    assert 0 < a.position < 5 and abs(a.position - b.position) < 0.02
    await anyio.sleep(0.05)
    assert (await a.read_position(), await b.read_position()) == (a.position, b.position)


async def test_encoder_mismatch_after_lost_steps(sims, closing):
    await sims.call("motors", "configure_axis", axis=3, slip=0.05)
    ctrl = controller(
        sims,
        {"name": "z", "channel": 3, "encoder": {"steps_per_unit": 1000, "tolerance": 0.005}},
    )
    closing(ctrl)
    z = ctrl.child("z")
    with pytest.raises(EncoderMismatchError, match=r"z: encoder reads 0\.95 .*tolerance 0\.005"):
        await z.move(1)
    assert z.state is AxisState.FAULT


async def test_hardware_limit_switch(sims, closing):
    await sims.call("motors", "configure_axis", axis=1, high_limit=100)
    ctrl = controller(sims, {"name": "m1", "channel": 1})
    closing(ctrl)
    m1 = ctrl.child("m1")
    with pytest.raises(LimitSwitchError, match="m1: stopped on its positive limit switch at 0.1"):
        await m1.move(1)
    assert m1.state is AxisState.LIMPOS


async def test_unknown_channel_is_refused_at_connection(sims, closing):
    ctrl = controller(sims, {"name": "m9", "channel": 9})
    closing(ctrl)
    with pytest.raises(UnknownDeviceError, match=r"motors: axis m9 uses channel 9, .* 6 axes"):
        await ctrl.child("m9").connect()


async def test_home_and_faults(sims, closing):
    await sims.call("motors", "configure_axis", axis=1, position=300)
    ctrl = controller(sims, {"name": "m1", "channel": 1})
    closing(ctrl)
    m1 = ctrl.child("m1")
    await m1.connect()
    assert m1.position == 0.3
    await m1.home()
    assert m1.position == 0 and m1.state is AxisState.READY
    await sims.call("motors", "axis_fault", axis=1, on=True)
    assert await m1.read_state() is AxisState.FAULT
    with pytest.raises(SimCommandError, match="ERR 7"):
        await m1.move(0.1)


async def test_cancelled_move_stops_the_motor(sims, closing):
    ctrl = controller(sims, {"name": "m1", "channel": 1})
    closing(ctrl)
    m1 = ctrl.child("m1")
    with anyio.move_on_after(0.2):
        await m1.move(10)
    assert not m1.is_moving
    first = await steps(sims, 1)
    await anyio.sleep(0.1)
    assert await steps(sims, 1) == first < 10_000


async def test_silent_controller_times_out_naming_it(sims, closing):
    # connecting has a long timeout (a loaded machine), far from the 0.2 s of the request
    ctrl = controller(sims, {"name": "m1", "channel": 1}, timeout=20.0)
    closing(ctrl)
    m1 = ctrl.child("m1")
    await m1.connect()
    ctrl.client.conn.timeout = 0.2  # short from now on
    await sims.fault("motors", "silent")
    start = time.perf_counter()
    with pytest.raises(CommTimeout, match="device 'motors'.*POS 1"):
        await m1.read_position()
    assert time.perf_counter() - start < 2.0  # the 0.2 s limit (10x margin), not the 20 s
    await sims.fault("motors", "none")
    ctrl.client.conn.timeout = 20.0
    start = time.perf_counter()
    assert await m1.read_position() == 0  # recovered on the next command
    # ... without waiting a whole timeout for the reply owed to the silent request (it
    # waited 20 s): that reply is already late by a timeout, it is given 0.1 s
    assert time.perf_counter() - start < 2.0


async def test_settings_persist_and_the_position_is_checked_at_start_up(sims, closing, redis_urls):
    client = async_client(redis_urls.settings)
    try:
        store = SettingsStore(client)
        ctrl = controller(sims, {"name": "m1", "channel": 1}, settings=store)
        m1 = ctrl.child("m1")
        await m1.move(0.5)
        await m1.set_velocity(4)
        await ctrl.close()
        # restart on the same hardware: no mismatch, the velocity comes back from Redis
        ctrl = controller(sims, {"name": "m1", "channel": 1}, settings=store)
        m1 = ctrl.child("m1")
        await m1.connect()
        assert m1.velocity == 4 and m1.position_mismatch is None and m1.position == 0.5
        await ctrl.close()
        # the controller lost its position (power cycle): reported, the controller kept
        await sims.call("motors", "configure_axis", axis=1, position=0)
        ctrl = controller(sims, {"name": "m1", "channel": 1}, settings=store)
        closing(ctrl)
        m1 = ctrl.child("m1")
        await m1.connect()
        assert m1.position == 0
        assert "differs from the stored 0.5" in (m1.position_mismatch or "")
        await ctrl.close()
        # resynchronise instead: the stored position (0 since the last start) goes back
        await m1.set_dial(0.7)  # reconnects, loads 700 steps into the controller, stores 0.7
        await ctrl.close()
        await sims.call("motors", "configure_axis", axis=1, position=0)
        ctrl = controller(
            sims, {"name": "m1", "channel": 1, "position_check": "resync"}, settings=store
        )
        closing(ctrl)
        m1 = ctrl.child("m1")
        await m1.connect()
        assert m1.position == 0.7 and await steps(sims, 1) == 700
        assert "resynchronised" in (m1.position_mismatch or "")
    finally:
        await client.aclose()
